package libstorage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// selfInstance computes this node's instance as its storage driver does:
// the configured instanceID; ebs: the IMDS instance id and zone; scaleio:
// the SDC GUID; vfs: the hostname; otherwise the CSI node id.
func (b *Backend) selfInstance(ctx context.Context) (instance, error) {
	b.mu.Lock()
	if b.self != nil {
		in := *b.self
		b.mu.Unlock()
		return in, nil
	}
	b.mu.Unlock()
	var in instance
	var err error
	switch {
	case b.cfg.InstanceID != "":
		in.id = b.cfg.InstanceID
	case b.driver == "ebs":
		in, err = b.imdsInstance(ctx)
	case b.driver == "scaleio":
		in.id, err = sdcGUID(ctx)
	case b.driver == "vfs":
		in.id, err = os.Hostname()
	default:
		in.id = b.node
	}
	if err != nil {
		return instance{}, fmt.Errorf("%w: this node's %s instance id: %v", backends.ErrUnavailable, b.driver, err)
	}
	if in.id == "" || strings.ContainsAny(in.id, ",=\n\r") {
		return instance{}, fmt.Errorf("%w: instance id %q cannot be sent to libStorage", backends.ErrInvalid, in.id)
	}
	b.mu.Lock()
	b.self = &in
	b.mu.Unlock()
	return in, nil
}

// imdsInstance reads the instance id and zone from EC2 instance metadata
// (IMDSv2).
func (b *Backend) imdsInstance(ctx context.Context) (instance, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	get := func(method, path, token string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, method, b.imds+path, nil)
		if err != nil {
			return "", err
		}
		if token == "" {
			req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
		} else {
			req.Header.Set("X-aws-ec2-metadata-token", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("%s %s: %s", method, path, resp.Status)
		}
		return strings.TrimSpace(string(raw)), nil
	}
	token, err := get(http.MethodPut, "/latest/api/token", "")
	if err != nil {
		return instance{}, err
	}
	id, err := get(http.MethodGet, "/latest/meta-data/instance-id", token)
	if err != nil {
		return instance{}, err
	}
	zone, err := get(http.MethodGet, "/latest/meta-data/placement/availability-zone", token)
	if err != nil {
		return instance{}, err
	}
	in := instance{id: id, fields: map[string]string{"availabilityZone": zone}}
	if len(zone) > 1 {
		in.fields["region"] = zone[:len(zone)-1]
	}
	return in, nil
}

// sdcGUID asks the ScaleIO data client for its GUID.
func sdcGUID(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "/opt/emc/scaleio/sdc/bin/drv_cfg", "--query_guid").Output()
	if err != nil {
		return "", fmt.Errorf("drv_cfg --query_guid: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// RegisterNode implements backends.NodeRegistrar: the node computes its
// instance id at start, so a node that cannot is found before it serves.
func (b *Backend) RegisterNode(ctx context.Context, node string) error {
	_, err := b.selfInstance(ctx)
	return err
}

// devicePath returns where the driver's udev rule puts the volume's device
// on this node, and whether the rule identifies the volume by name. It
// returns "" for drivers with no rule that can prove identity.
func (b *Backend) devicePath(w *wireVolume) (string, error) {
	byID := func(name string) string { return filepath.Join(b.cfg.ByIDDir, name) }
	switch b.driver {
	case "ebs":
		nvme := byID("nvme-Amazon_Elastic_Block_Store_" + strings.Replace(w.ID, "-", "", 1))
		if _, err := os.Lstat(nvme); err == nil {
			return nvme, nil
		}
		// Xen instances: the name the volume was attached as, which
		// the kernel may show as sdX or xvdX.
		a, ok := attachmentOf(w, b.selfID())
		if !ok || a.DeviceName == "" {
			return nvme, nil
		}
		dev := filepath.Join(b.cfg.DevDir, filepath.Base(a.DeviceName))
		if _, err := os.Lstat(dev); err != nil {
			alt := strings.Replace(filepath.Base(a.DeviceName), "sd", "xvd", 1)
			if alt == filepath.Base(a.DeviceName) {
				alt = strings.Replace(alt, "xvd", "sd", 1)
			}
			dev = filepath.Join(b.cfg.DevDir, alt)
		}
		return dev, nil
	case "scaleio":
		m, err := filepath.Glob(byID("emc-vol-*-" + w.ID))
		if err != nil || len(m) != 1 {
			return byID("emc-vol-<system>-" + w.ID), nil
		}
		return m[0], nil
	case "rbd":
		pool, image, ok := strings.Cut(w.ID, ".")
		if !ok {
			return "", fmt.Errorf("%w: rbd volume id %q is not pool.image", backends.ErrInvalid, w.ID)
		}
		return filepath.Join(b.cfg.RBDDir, pool, image), nil
	case "cinder":
		id := w.ID
		if len(id) > 20 {
			id = id[:20]
		}
		return byID("virtio-" + id), nil
	case "gcepd":
		return byID("google-" + w.Name), nil
	case "dobs":
		return byID("scsi-0DO_Volume_" + w.Name), nil
	}
	return "", fmt.Errorf("%w: the %s driver has no device rule that proves a device is the volume; this plugin will not format or mount its devices", backends.ErrUnsupported, b.driver)
}

// vfsDir is the volume's directory under the vfs root.
func (b *Backend) vfsDir(id string) (string, error) {
	if _, err := b.volPath(id); err != nil {
		return "", err
	}
	return filepath.Join(b.cfg.VFSRoot, "vol", id), nil
}

// Connect implements backends.Backend.
func (b *Backend) Connect(ctx context.Context, id string, publish map[string]string, readOnly bool) (backends.Device, error) {
	if b.isVFS() {
		dir, err := b.vfsDir(id)
		if err != nil {
			return backends.Device{}, err
		}
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() {
			return backends.Device{}, fmt.Errorf("%w: volume %s has no directory %s on this node (is vfsRoot the server's vfs root, shared with this node?): %v", backends.ErrNotFound, id, dir, err)
		}
		return backends.Device{Path: dir, Dir: true}, nil
	}
	if _, err := b.selfInstance(ctx); err != nil {
		return backends.Device{}, err
	}
	w, err := b.get(ctx, id)
	if err != nil {
		return backends.Device{}, err
	}
	a, ok := attachmentOf(w, b.selfID())
	if !ok {
		return backends.Device{}, fmt.Errorf("%w: volume %s is not attached to this node (instance %s)", backends.ErrUnavailable, id, b.selfID())
	}
	switch b.stype {
	case TypeNAS:
		if a.DeviceName == "" || !strings.Contains(a.DeviceName, ":") {
			return backends.Device{}, fmt.Errorf("volume %s: the server gave no NFS export (host:/path) for this node, only %q", id, a.DeviceName)
		}
		return backends.Device{Path: a.DeviceName, FSType: "nfs"}, nil
	case TypeObject:
		return backends.Device{}, fmt.Errorf("%w: %s object volumes are not mountable by this plugin", backends.ErrUnsupported, b.driver)
	}
	path, err := b.devicePath(w)
	if err != nil {
		return backends.Device{}, err
	}
	deadline := time.Now().Add(b.attachWait)
	for {
		dev, err := blockDevice(path)
		if err == nil {
			// Read-only means the device refuses writes (invariant 10),
			// and a device left read-only by an earlier read-only use
			// must take writes again.
			if err := setReadOnly(dev, readOnly); err != nil {
				return backends.Device{}, fmt.Errorf("volume %s: %w", id, err)
			}
			return backends.Device{Path: dev}, nil
		}
		if !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			return backends.Device{}, fmt.Errorf("%w: device of volume %s at %s: %v", backends.ErrUnavailable, id, path, err)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return backends.Device{}, ctx.Err()
		case <-t.C:
		}
	}
}

// blockDevice resolves path to a block device node.
func blockDevice(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", fmt.Errorf("%s (%s) is not a block device", path, real)
	}
	return real, nil
}

func rdev(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, fmt.Errorf("%s is not a block device", path)
	}
	return st.Rdev, nil
}

// Verify implements backends.Backend: the device must be the one the
// driver's rule names for this volume right now.
func (b *Backend) Verify(ctx context.Context, id string, dev backends.Device) error {
	if b.isVFS() {
		dir, err := b.vfsDir(id)
		if err != nil {
			return err
		}
		if dev.Path != dir {
			return fmt.Errorf("%s is not volume %s's directory %s", dev.Path, id, dir)
		}
		return nil
	}
	if b.stype != TypeBlock {
		return nil
	}
	w, err := b.get(ctx, id)
	if err != nil {
		return err
	}
	path, err := b.devicePath(w)
	if err != nil {
		return err
	}
	want, err := rdev(path)
	if err != nil {
		return fmt.Errorf("identity of volume %s: %s: %w", id, path, err)
	}
	got, err := rdev(dev.Path)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%s is not the device %s names for volume %s", dev.Path, path, id)
	}
	return nil
}

// Disconnect implements backends.Backend: the server's attach leaves
// nothing on the node to release.
func (b *Backend) Disconnect(ctx context.Context, id string) error { return nil }

// setReadOnly sets the kernel's read-only flag of a block device.
func setReadOnly(dev string, ro bool) error {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	v := 0
	if ro {
		v = 1
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.BLKROSET, v); err != nil {
		return fmt.Errorf("set read-only=%t on %s: %w", ro, dev, err)
	}
	return nil
}
