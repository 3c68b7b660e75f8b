//go:build linux

package xtremiosim

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	ec2sim "github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
	"github.com/csi-libstorage/csi-libstorage/test/sim/simloop"
)

// LoopDevices is a Devices implementation on real loop devices, using the
// EC2 test server's loop machinery. Per initiator group (one per simulated
// node) it keeps a by-id directory, ByIDDir/<group>/wwn-0x<naa> →
// /dev/loopN, and a fake sysfs tree, SysfsDir/<group>/, holding
// block/loopN/device/wwid ("naa.<naa>") and a writable
// class/scsi_host/host0/scan. A volume is backed by one loop device at a
// time: a second group's map gets no device.
type LoopDevices struct {
	Loops    *ec2sim.LoopDevices
	ByIDDir  string
	SysfsDir string
}

// LinkDir returns a group's by-id directory.
func (l *LoopDevices) LinkDir(group string) string { return filepath.Join(l.ByIDDir, group) }

// SysfsRoot returns a group's fake sysfs root, with its SCSI host made.
func (l *LoopDevices) SysfsRoot(group string) (string, error) {
	root := filepath.Join(l.SysfsDir, group)
	host := filepath.Join(root, "class/scsi_host/host0")
	if err := os.MkdirAll(host, 0o755); err != nil {
		return "", err
	}
	return root, os.WriteFile(filepath.Join(host, "scan"), nil, 0o644)
}

func id(index int) string { return "xio" + strconv.Itoa(index) }

// Map implements Devices.
func (l *LoopDevices) Map(group, naa string, index int, size int64) error {
	if _, ok := l.Loops.DevicePath(id(index)); ok {
		return nil
	}
	if err := l.Loops.Attach(group, id(index), "", size); err != nil {
		return err
	}
	dev, ok := l.Loops.DevicePath(id(index))
	if !ok {
		return fmt.Errorf("xtremiosim: no loop device for volume %d", index)
	}
	root, err := l.SysfsRoot(group)
	if err != nil {
		return err
	}
	wdir := filepath.Join(root, "block", filepath.Base(dev), "device")
	if err := os.MkdirAll(wdir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(wdir, "wwid"), []byte("naa."+naa+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(l.LinkDir(group), 0o755); err != nil {
		return err
	}
	return simloop.ReplaceSymlink(dev, filepath.Join(l.LinkDir(group), "wwn-0x"+naa))
}

// Unmap implements Devices.
func (l *LoopDevices) Unmap(group, naa string, index int) error {
	var errs []error
	if dev, ok := l.Loops.DevicePath(id(index)); ok {
		errs = append(errs, os.RemoveAll(filepath.Join(l.SysfsDir, group, "block", filepath.Base(dev))))
	}
	if err := os.Remove(filepath.Join(l.LinkDir(group), "wwn-0x"+naa)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(append(errs, l.Loops.Detach(group, id(index)))...)
}

// Resize implements Devices.
func (l *LoopDevices) Resize(index int, size int64) error { return l.Loops.Resize(id(index), size) }

// Delete implements Devices.
func (l *LoopDevices) Delete(index int) error { return l.Loops.Delete(id(index)) }

// Copy implements Devices: a sparse copy of the image, if src has one.
func (l *LoopDevices) Copy(src, dst int) error {
	from := l.Loops.ImagePath(id(src))
	if _, err := os.Stat(from); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.MkdirAll(l.Loops.ImageDir, 0o700); err != nil {
		return err
	}
	if out, err := exec.Command("cp", "--sparse=always", from, l.Loops.ImagePath(id(dst))).CombinedOutput(); err != nil {
		return fmt.Errorf("xtremiosim: copy %s: %v: %s", from, err, out)
	}
	return nil
}

// Close releases every loop device.
func (l *LoopDevices) Close() error { return l.Loops.Close() }
