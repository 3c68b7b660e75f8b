package scaleio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// errRefused: the device cannot be proven to be the volume.
var errRefused = errors.New("refusing the device")

// LinkName returns the by-id link the SDC's udev rules create for a
// volume: emc-vol-<system id>-<volume id>.
func LinkName(systemID, volumeID string) string {
	return "emc-vol-" + systemID + "-" + volumeID
}

// queryGUID asks the SDC for its GUID (drv_cfg --query_guid).
func queryGUID(ctx context.Context, drvCfg string) (string, error) {
	if drvCfg != DefaultDrvCfg {
		return "", fmt.Errorf("drv_cfg is only run from %s; set sdcGUID to name the GUID otherwise", DefaultDrvCfg)
	}
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, "/opt/emc/scaleio/sdc/bin/drv_cfg", "--query_guid")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("drv_cfg --query_guid: %w: %s", err, strings.TrimSpace(errOut.String()))
	}
	g := strings.ToUpper(strings.TrimSpace(out.String()))
	if !sdcGUIDRE.MatchString(g) {
		return "", fmt.Errorf("drv_cfg --query_guid printed %q, not a GUID", g)
	}
	return g, nil
}

// rescanSDC asks the SDC to look for new mappings (drv_cfg --rescan); a
// host without drv_cfg relies on the SDC's own discovery.
func rescanSDC(ctx context.Context, drvCfg string) error {
	if drvCfg != DefaultDrvCfg {
		return nil
	}
	if _, err := os.Stat(drvCfg); err != nil {
		return nil
	}
	return exec.CommandContext(ctx, "/opt/emc/scaleio/sdc/bin/drv_cfg", "--rescan").Run()
}

// localGUID returns this node's SDC GUID, asked once.
func (b *Backend) localGUID(ctx context.Context) (string, error) {
	b.mu.Lock()
	g := b.guid
	b.mu.Unlock()
	if g != "" {
		return g, nil
	}
	g, err := b.guidFn(ctx)
	if err != nil {
		return "", fmt.Errorf("SDC GUID of this node: %w", err)
	}
	g = strings.ToUpper(g)
	b.mu.Lock()
	b.guid = g
	b.mu.Unlock()
	return g, nil
}

// Connect implements backends.Backend: the volume must be mapped to this
// node's SDC; it waits for the SDC's by-id link and proves it.
func (b *Backend) Connect(ctx context.Context, id string, _ map[string]string, _ bool) (backends.Device, error) {
	raw, _, err := b.get(ctx, id)
	if err != nil {
		return backends.Device{}, err
	}
	p, err := b.resolve(ctx)
	if err != nil {
		return backends.Device{}, err
	}
	guid, err := b.localGUID(ctx)
	if err != nil {
		return backends.Device{}, err
	}
	s, err := b.sdcOf(ctx, p.system, guid)
	if err != nil {
		return backends.Device{}, err
	}
	mapped := false
	for _, m := range raw.MappedSdcInfo {
		mapped = mapped || m.SdcID == s.ID
	}
	if !mapped {
		return backends.Device{}, fmt.Errorf("%w: volume %s is not mapped to this node's SDC %s (%s)", backends.ErrConflict, id, s.ID, guid)
	}
	link := filepath.Join(b.byID, LinkName(p.system, id))
	ctx, cancel := context.WithTimeout(ctx, b.wait)
	defer cancel()
	rescanned := time.Time{}
	for {
		if dev, err := b.prove(p.system, id, link); err == nil {
			b.log.Info("volume device found", zapVolume(id, raw.Name), zap.String("device", dev))
			return backends.Device{Path: dev}, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return backends.Device{}, err
		}
		if time.Since(rescanned) > 5*b.poll {
			if err := b.rescan(ctx); err != nil {
				b.log.Warn("SDC rescan failed", zap.Error(err))
			}
			rescanned = time.Now()
		}
		t := time.NewTimer(b.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return backends.Device{}, fmt.Errorf("%w: volume %s is mapped but %s did not appear: %v", backends.ErrUnavailable, id, link, ctx.Err())
		case <-t.C:
		}
	}
}

// prove resolves the volume's link to its device and checks that no other
// volume's link resolves to the same device. A missing link gives an error
// wrapping os.ErrNotExist.
func (b *Backend) prove(system, id, link string) (string, error) {
	dev, rdev, err := resolveBlock(link)
	if err != nil {
		return "", err
	}
	ents, err := os.ReadDir(b.byID)
	if err != nil {
		return "", fmt.Errorf("%w %s: read %s: %v", errRefused, dev, b.byID, err)
	}
	own := filepath.Base(link)
	for _, e := range ents {
		n := e.Name()
		if n == own || !strings.HasPrefix(n, "emc-vol-") {
			continue
		}
		if _, other, err := resolveBlock(filepath.Join(b.byID, n)); err == nil && other == rdev {
			return "", fmt.Errorf("%w %s: it is also %s, another volume's link; refusing to use it for volume %s of system %s", errRefused, dev, n, id, system)
		}
	}
	return dev, nil
}

// resolveBlock follows a link to a block device and returns the device's
// path and number.
func resolveBlock(p string) (string, uint64, error) {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", 0, err
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return "", 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", 0, fmt.Errorf("%w %s: not a block device", errRefused, real)
	}
	return real, st.Rdev, nil
}

// Verify implements backends.Backend: dev must be the device the volume's
// link resolves to now, and no other volume's link may claim it.
func (b *Backend) Verify(ctx context.Context, id string, dev backends.Device) error {
	if !volumeIDRE.MatchString(id) {
		return notFound(id)
	}
	p, err := b.resolve(ctx)
	if err != nil {
		return err
	}
	link := filepath.Join(b.byID, LinkName(p.system, id))
	want, err := b.prove(p.system, id, link)
	if err != nil {
		return fmt.Errorf("%w %s for volume %s: %v", errRefused, dev.Path, id, err)
	}
	var a, w unix.Stat_t
	if err := unix.Stat(dev.Path, &a); err != nil {
		return fmt.Errorf("%w %s: %v", errRefused, dev.Path, err)
	}
	if err := unix.Stat(want, &w); err != nil {
		return fmt.Errorf("%w %s: %v", errRefused, want, err)
	}
	if a.Rdev != w.Rdev || a.Mode&unix.S_IFMT != unix.S_IFBLK {
		return fmt.Errorf("%w %s: volume %s's link %s resolves to %s, another device", errRefused, dev.Path, id, link, want)
	}
	return nil
}

// Disconnect implements backends.Backend. The SDC device goes away when the
// volume is unmapped; nothing is held on the node.
func (b *Backend) Disconnect(ctx context.Context, id string) error { return nil }
