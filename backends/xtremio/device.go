package xtremio

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// errRefused: the device cannot be proven to be the volume.
var errRefused = errors.New("refusing the device")

// rescan asks every SCSI host to scan all channels, targets and LUNs.
func (b *Backend) rescan() {
	hosts, _ := filepath.Glob(filepath.Join(b.sysfs, "class/scsi_host/host*/scan"))
	for _, h := range hosts {
		if err := os.WriteFile(h, []byte("- - -"), 0o200); err != nil {
			b.log.Debug("SCSI rescan", zap.String("host", h), zap.Error(err))
		}
	}
}

// linkNames are the by-id links udev makes for a LUN with this naa.
func linkNames(naa string) []string { return []string{"wwn-0x" + naa, "scsi-3" + naa} }

// Connect implements backends.Backend: it rescans, waits for the LUN's
// by-id link, prefers the dm-multipath device above it, and proves the
// device's WWID.
func (b *Backend) Connect(ctx context.Context, id string, publish map[string]string, _ bool) (backends.Device, error) {
	raw, _, err := b.get(ctx, id)
	if err != nil {
		return backends.Device{}, err
	}
	naa := strings.ToLower(raw.NAA)
	if !naaRE.MatchString(naa) {
		return backends.Device{}, fmt.Errorf("volume %s has no usable naa-name (%q)", id, raw.NAA)
	}
	if w := publish[PublishDeviceWWN]; w != "" && strings.ToLower(w) != naa {
		return backends.Device{}, fmt.Errorf("%w: publish context names WWN %s, the XMS says volume %s is %s", backends.ErrInvalid, w, id, naa)
	}
	if _, ok := raw.mappings()[b.groupOf(b.node)]; !ok {
		return backends.Device{}, fmt.Errorf("%w: volume %s is not mapped to this node's initiator group %s", backends.ErrConflict, id, b.groupOf(b.node))
	}
	ctx, cancel := context.WithTimeout(ctx, b.wait)
	defer cancel()
	for {
		b.rescan()
		dev, err := b.find(naa)
		if err == nil {
			b.log.Info("volume device found", zap.String("volume", id), zap.String("device", dev))
			return backends.Device{Path: dev}, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return backends.Device{}, err
		}
		t := time.NewTimer(b.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return backends.Device{}, fmt.Errorf("%w: volume %s is mapped but no device with WWN %s appeared: %v", backends.ErrUnavailable, id, naa, ctx.Err())
		case <-t.C:
		}
	}
}

// find resolves the LUN's link, moves up to a dm-multipath holder if
// there is one, and checks the WWID of what it found.
func (b *Backend) find(naa string) (string, error) {
	var real string
	var err error
	for _, n := range linkNames(naa) {
		if real, err = filepath.EvalSymlinks(filepath.Join(b.byID, n)); err == nil {
			break
		}
	}
	if err != nil {
		return "", err
	}
	name := filepath.Base(real)
	holders, _ := filepath.Glob(filepath.Join(b.sysfs, "block", name, "holders", "dm-*"))
	if len(holders) == 1 {
		name = filepath.Base(holders[0])
	} else if len(holders) > 1 {
		return "", fmt.Errorf("%w %s: several device-mapper holders %v", errRefused, real, holders)
	}
	if err := b.checkWWID(name, naa); err != nil {
		return "", err
	}
	if strings.HasPrefix(name, "dm-") {
		return filepath.Join(b.devDir, name), nil
	}
	return real, nil
}

// wwid reads the SCSI WWID of block device name from sysfs: device/wwid
// ("naa.514f…"), else the NAA designator of device/vpd_pg83; for a
// multipath device, dm/uuid ("mpath-3514f…").
func (b *Backend) wwid(name string) (string, error) {
	dir := filepath.Join(b.sysfs, "block", name)
	if strings.HasPrefix(name, "dm-") {
		data, err := os.ReadFile(filepath.Join(dir, "dm/uuid"))
		if err != nil {
			return "", err
		}
		u, ok := strings.CutPrefix(strings.TrimSpace(string(data)), "mpath-3")
		if !ok {
			return "", fmt.Errorf("%s is not a multipath device (uuid %q)", name, strings.TrimSpace(string(data)))
		}
		return strings.ToLower(u), nil
	}
	if data, err := os.ReadFile(filepath.Join(dir, "device/wwid")); err == nil {
		w := strings.TrimSpace(string(data))
		if v, ok := strings.CutPrefix(w, "naa."); ok {
			return strings.ToLower(v), nil
		}
		return "", fmt.Errorf("%s has WWID %q, not an NAA designator", name, w)
	}
	data, err := os.ReadFile(filepath.Join(dir, "device/vpd_pg83"))
	if err != nil {
		return "", err
	}
	return naaFromVPD83(data)
}

// naaFromVPD83 finds the NAA designator (type 3, code set binary) in a
// Device Identification VPD page.
func naaFromVPD83(p []byte) (string, error) {
	if len(p) < 4 || p[1] != 0x83 {
		return "", errors.New("not a VPD page 0x83")
	}
	end := min(4+(int(p[2])<<8|int(p[3])), len(p))
	for i := 4; i+4 <= end; {
		n := int(p[i+3])
		if i+4+n > end {
			break
		}
		if p[i]&0x0f == 1 && p[i+1]&0x0f == 3 && (n == 8 || n == 16) {
			return hex.EncodeToString(p[i+4 : i+4+n]), nil
		}
		i += 4 + n
	}
	return "", errors.New("VPD page 0x83 has no NAA designator")
}

func (b *Backend) checkWWID(name, naa string) error {
	got, err := b.wwid(name)
	if err != nil {
		return fmt.Errorf("%w %s: cannot read its WWID: %v", errRefused, name, err)
	}
	if got != naa {
		return fmt.Errorf("%w %s: its WWID is %s, not the volume's %s", errRefused, name, got, naa)
	}
	return nil
}

// Verify implements backends.Backend: dev's WWID in sysfs must be the
// volume's naa-name.
func (b *Backend) Verify(ctx context.Context, id string, dev backends.Device) error {
	raw, _, err := b.get(ctx, id)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(dev.Path)
	if err != nil {
		return fmt.Errorf("%w %s: %v", errRefused, dev.Path, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return fmt.Errorf("%w %s: not a block device", errRefused, dev.Path)
	}
	// dev may be a device node bind-mounted at a block target: the
	// kernel's name for its number says which device it is.
	kernel, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))))
	if err != nil {
		return fmt.Errorf("%w %s: %v", errRefused, dev.Path, err)
	}
	return b.checkWWID(filepath.Base(kernel), strings.ToLower(raw.NAA))
}

// Disconnect implements backends.Backend. The SCSI device goes away when
// the lun-map is removed and the host rescans; nothing is held here.
func (b *Backend) Disconnect(ctx context.Context, id string) error { return nil }
