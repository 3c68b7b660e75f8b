//go:build linux

package scaleiosim

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	ec2sim "github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
	"github.com/csi-libstorage/csi-libstorage/test/sim/simloop"
)

// LoopDevices is a Devices implementation on real loop devices: it uses
// the EC2 test server's loop machinery for images and loop devices and
// adds the link the SDC's udev rules create,
// ByIDDir/<SDC GUID>/emc-vol-<system>-<volume> → /dev/loopN, one
// directory per SDC so two simulated nodes see only their own volumes.
// A volume is backed by one loop device at a time: a second SDC's mapping
// is recorded by the server but gets no device.
type LoopDevices struct {
	Loops    *ec2sim.LoopDevices
	ByIDDir  string
	SystemID string
}

// LinkDir returns the by-id directory of an SDC.
func (l *LoopDevices) LinkDir(guid string) string { return filepath.Join(l.ByIDDir, guid) }

// LinkPath returns a volume's link on an SDC.
func (l *LoopDevices) LinkPath(guid, volumeID string) string {
	return filepath.Join(l.LinkDir(guid), "emc-vol-"+l.SystemID+"-"+volumeID)
}

// Map implements Devices.
func (l *LoopDevices) Map(guid, volumeID string, size int64) error {
	if _, ok := l.Loops.DevicePath(volumeID); ok {
		return nil // another SDC holds the loop device; see the type's comment
	}
	if err := l.Loops.Attach(guid, volumeID, "", size); err != nil {
		return err
	}
	dev, ok := l.Loops.DevicePath(volumeID)
	if !ok {
		return fmt.Errorf("scaleiosim: no loop device for %s after attach", volumeID)
	}
	if err := os.MkdirAll(l.LinkDir(guid), 0o755); err != nil {
		return err
	}
	return simloop.ReplaceSymlink(dev, l.LinkPath(guid, volumeID))
}

// Unmap implements Devices.
func (l *LoopDevices) Unmap(guid, volumeID string) error {
	err := os.Remove(l.LinkPath(guid, volumeID))
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return errors.Join(err, l.Loops.Detach(guid, volumeID))
}

// Resize implements Devices.
func (l *LoopDevices) Resize(volumeID string, size int64) error {
	return l.Loops.Resize(volumeID, size)
}

// Delete implements Devices.
func (l *LoopDevices) Delete(volumeID string) error { return l.Loops.Delete(volumeID) }

// Copy implements Devices: a sparse copy of the image, if src has one.
func (l *LoopDevices) Copy(src, dst string) error {
	from := l.Loops.ImagePath(src)
	if _, err := os.Stat(from); errors.Is(err, os.ErrNotExist) {
		return nil // never mapped: nothing written yet
	}
	if err := os.MkdirAll(l.Loops.ImageDir, 0o700); err != nil {
		return err
	}
	out, err := exec.Command("cp", "--sparse=always", from, l.Loops.ImagePath(dst)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("scaleiosim: copy %s: %v: %s", from, err, out)
	}
	return nil
}

// Close releases every loop device.
func (l *LoopDevices) Close() error { return l.Loops.Close() }
