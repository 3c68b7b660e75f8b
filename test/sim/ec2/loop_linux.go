//go:build linux

package ec2sim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/csi-libstorage/csi-libstorage/test/sim/simloop"
	"golang.org/x/sys/unix"
)

// LoopDevices is a Devices implementation backed by Linux loop devices.
// It needs root (or CAP_SYS_ADMIN) and /dev/loop-control.
//
// Each volume has a sparse image ImageDir/<vol-id>.img, created on first
// attach at the volume's size and kept across detach (data persists) until
// Delete. Attach binds a free loop device to the image and creates the
// link udev creates on Nitro instances,
// ByIDDir/nvme-Amazon_Elastic_Block_Store_vol<id> → /dev/loopN
// (ByIDDir/<instance-id>/… when PerInstance is set). Detach removes the
// link and the loop device. Resize grows the image and, if attached,
// refreshes the loop device's capacity (LOOP_SET_CAPACITY).
//
// The zero value is not usable: set ImageDir and ByIDDir. Use a pointer.
type LoopDevices struct {
	ImageDir string
	ByIDDir  string
	// PerInstance puts each instance's links in ByIDDir/<instance-id>/, so
	// two simulated nodes on one host see only their own volumes.
	PerInstance bool

	mu       sync.Mutex
	attached map[string]*loopAttachment // volume id → attachment
	links    map[string]bool            // every link made, including stale ones
	closed   bool
}

type loopAttachment struct {
	instanceID, device string
	loop               string // /dev/loopN
	link               string
}

// ImagePath returns the path of a volume's backing image.
func (l *LoopDevices) ImagePath(volumeID string) string {
	return filepath.Join(l.ImageDir, volumeID+".img")
}

// LinkDir returns the directory holding an instance's by-id links.
func (l *LoopDevices) LinkDir(instanceID string) string {
	if l.PerInstance {
		return filepath.Join(l.ByIDDir, instanceID)
	}
	return l.ByIDDir
}

// LinkPath returns the by-id link path of a volume on an instance.
func (l *LoopDevices) LinkPath(instanceID, volumeID string) string {
	return filepath.Join(l.LinkDir(instanceID), ByIDName(volumeID))
}

// DevicePath returns the loop device (/dev/loopN) of an attached volume.
func (l *LoopDevices) DevicePath(volumeID string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.attached[volumeID]
	if !ok {
		return "", false
	}
	return a.loop, true
}

// Attach implements Devices.
func (l *LoopDevices) Attach(instanceID, volumeID, device string, sizeBytes int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("ec2sim: LoopDevices closed")
	}
	if l.ImageDir == "" || l.ByIDDir == "" {
		return errors.New("ec2sim: LoopDevices needs ImageDir and ByIDDir")
	}
	if l.attached == nil {
		l.attached = map[string]*loopAttachment{}
		l.links = map[string]bool{}
	}
	if a, ok := l.attached[volumeID]; ok {
		if a.instanceID == instanceID {
			return nil
		}
		return fmt.Errorf("ec2sim: %s already has a loop device on %s", volumeID, a.instanceID)
	}
	if err := os.MkdirAll(l.ImageDir, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(l.LinkDir(instanceID), 0o755); err != nil {
		return err
	}
	img := l.ImagePath(volumeID)
	if err := growImage(img, sizeBytes, true); err != nil {
		return err
	}
	loop, err := attachLoop(img)
	if err != nil {
		return fmt.Errorf("ec2sim: loop device for %s: %w", img, err)
	}
	link := l.LinkPath(instanceID, volumeID)
	if err := replaceSymlink(loop, link); err != nil {
		_ = detachLoop(loop, img)
		return err
	}
	l.links[link] = true
	l.attached[volumeID] = &loopAttachment{instanceID: instanceID, device: device, loop: loop, link: link}
	return nil
}

// Detach implements Devices. Detaching a volume that has no loop device is
// not an error. If the device is still open elsewhere (e.g. mounted), the
// kernel detaches it when it is last closed.
func (l *LoopDevices) Detach(instanceID, volumeID string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.detachLocked(volumeID)
}

func (l *LoopDevices) detachLocked(volumeID string) error {
	a, ok := l.attached[volumeID]
	if !ok {
		return nil
	}
	var errs []error
	if err := os.Remove(a.link); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	delete(l.links, a.link)
	if err := detachLoop(a.loop, l.ImagePath(volumeID)); err != nil {
		errs = append(errs, fmt.Errorf("ec2sim: detach %s: %w", a.loop, err))
	}
	delete(l.attached, volumeID)
	return errors.Join(errs...)
}

// Resize implements Devices: it grows the image (if it exists) and, if
// the volume is attached, makes the loop device pick up the new size.
func (l *LoopDevices) Resize(volumeID string, sizeBytes int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	img := l.ImagePath(volumeID)
	if err := growImage(img, sizeBytes, false); err != nil {
		return err
	}
	a, ok := l.attached[volumeID]
	if !ok {
		return nil
	}
	f, err := os.OpenFile(a.loop, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.IoctlSetInt(int(f.Fd()), unix.LOOP_SET_CAPACITY, 0)
}

// Delete implements Devices: it detaches the volume if needed and removes
// its image.
func (l *LoopDevices) Delete(volumeID string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.detachLocked(volumeID)
	if rerr := os.Remove(l.ImagePath(volumeID)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// Serial returns the NVMe-style serial ("vol0123…") of the simulated
// volume behind devicePath (a loop device or a symlink to one), read from
// /sys/block/loopN/loop/backing_file. It stands in for reading the NVMe
// serial in tests. It fails for a device not backed by an image in ImageDir.
func (l *LoopDevices) Serial(devicePath string) (string, error) {
	real, err := filepath.EvalSymlinks(devicePath)
	if err != nil {
		return "", err
	}
	name := filepath.Base(real)
	if !strings.HasPrefix(name, "loop") {
		return "", fmt.Errorf("ec2sim: %s (%s) is not a loop device", devicePath, real)
	}
	backing, err := loopBackingFile(name)
	if err != nil {
		return "", fmt.Errorf("ec2sim: %s: %w", devicePath, err)
	}
	dir, err := filepath.EvalSymlinks(l.ImageDir)
	if err != nil {
		return "", err
	}
	id, ok := strings.CutSuffix(filepath.Base(backing), ".img")
	if filepath.Dir(backing) != dir || !ok || !reVolumeID.MatchString(id) {
		return "", fmt.Errorf("ec2sim: %s is backed by %s, not a simulated EBS volume in %s", devicePath, backing, l.ImageDir)
	}
	return NVMeSerial(id), nil
}

// PlantStaleLink makes the by-id link of linkVolumeID on instanceID point
// at the loop device of targetVolumeID (which must be attached), the way a
// stale udev link can point at a device that now belongs to another
// volume. It returns the link path. Close removes it; a later Attach of
// linkVolumeID on that instance replaces it.
func (l *LoopDevices) PlantStaleLink(instanceID, linkVolumeID, targetVolumeID string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.attached[targetVolumeID]
	if !ok {
		return "", fmt.Errorf("ec2sim: %s has no loop device", targetVolumeID)
	}
	if err := os.MkdirAll(l.LinkDir(instanceID), 0o755); err != nil {
		return "", err
	}
	link := l.LinkPath(instanceID, linkVolumeID)
	if err := replaceSymlink(a.loop, link); err != nil {
		return "", err
	}
	l.links[link] = true
	return link, nil
}

// Close detaches every loop device this LoopDevices made and removes every
// link it made (stale ones included). Images are left in ImageDir. Close is
// idempotent; Attach fails after it.
func (l *LoopDevices) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	var errs []error
	for id := range l.attached {
		errs = append(errs, l.detachLocked(id))
	}
	for link := range l.links {
		if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	clear(l.links)
	return errors.Join(errs...)
}

// LoopsBackedBy lists the loop devices (/dev/loopN) whose backing file is
// in dir. Tests use it to check that nothing leaked.
func LoopsBackedBy(dir string) ([]string, error) { return simloop.BackedBy(dir) }

var (
	loopBackingFile = simloop.BackingFile
	growImage       = simloop.GrowImage
	replaceSymlink  = simloop.ReplaceSymlink
	attachLoop      = simloop.Attach
	detachLoop      = simloop.Detach
)
