//go:build linux

package libstoragesim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/test/sim/simloop"
)

// LinkName returns the name, under /dev/disk/by-id, of the link udev makes
// for a volume of a block driver, or "" for drivers whose devices are
// named otherwise (ebs on Xen, rbd under /dev/rbd).
func LinkName(driver, volumeID string) string {
	switch driver {
	case "cinder":
		id := volumeID
		if len(id) > 20 {
			id = id[:20]
		}
		return "virtio-" + id
	case "gcepd":
		return "google-" + volumeID
	case "dobs":
		return "scsi-0DO_Volume_" + volumeID
	}
	return ""
}

// LoopDevices is a Devices implementation that gives each volume a sparse
// image ImageDir/<id>.img and, on attach, a loop device behind
// ByIDDir/<instance>/<link name of the driver's rule>. Each instance has
// its own link directory, so two simulated nodes on one host see only
// their own volumes.
type LoopDevices struct {
	ImageDir string
	ByIDDir  string

	mu       sync.Mutex
	attached map[string]loopAttachment // volume id → attachment
}

type loopAttachment struct{ loop, link string }

// LinkDir returns the directory of an instance's by-id links.
func (l *LoopDevices) LinkDir(instanceID string) string {
	return filepath.Join(l.ByIDDir, instanceID)
}

// Attach implements Devices.
func (l *LoopDevices) Attach(driver, instanceID, volumeID string, sizeBytes int64) error {
	name := LinkName(driver, volumeID)
	if name == "" {
		return fmt.Errorf("libstoragesim: no device rule for driver %s", driver)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.attached == nil {
		l.attached = map[string]loopAttachment{}
	}
	if _, ok := l.attached[volumeID]; ok {
		return nil
	}
	for _, d := range []string{l.ImageDir, l.LinkDir(instanceID)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	img := filepath.Join(l.ImageDir, volumeID+".img")
	if err := simloop.GrowImage(img, sizeBytes, true); err != nil {
		return err
	}
	loop, err := simloop.Attach(img)
	if err != nil {
		return err
	}
	link := filepath.Join(l.LinkDir(instanceID), name)
	if err := simloop.ReplaceSymlink(loop, link); err != nil {
		return errors.Join(err, simloop.Detach(loop, img))
	}
	l.attached[volumeID] = loopAttachment{loop: loop, link: link}
	return nil
}

// Detach implements Devices.
func (l *LoopDevices) Detach(driver, instanceID, volumeID string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.detachLocked(volumeID)
}

func (l *LoopDevices) detachLocked(volumeID string) error {
	a, ok := l.attached[volumeID]
	if !ok {
		return nil
	}
	delete(l.attached, volumeID)
	err := os.Remove(a.link)
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return errors.Join(err, simloop.Detach(a.loop, filepath.Join(l.ImageDir, volumeID+".img")))
}

// Delete implements Devices.
func (l *LoopDevices) Delete(volumeID string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.detachLocked(volumeID)
	if rerr := os.Remove(filepath.Join(l.ImageDir, volumeID+".img")); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// Close detaches every loop device and removes every link.
func (l *LoopDevices) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for id := range l.attached {
		errs = append(errs, l.detachLocked(id))
	}
	return errors.Join(errs...)
}

// Leaked lists the loop devices still backed by images in ImageDir.
func (l *LoopDevices) Leaked() ([]string, error) { return simloop.BackedBy(l.ImageDir) }

// Copy implements Copier: the image of src (a volume or snapshot) is
// copied to dst's image, data extents only, so copies stay sparse. A
// source that was never attached has no image and gives none.
func (l *LoopDevices) Copy(src, dst string) error {
	in, err := os.Open(filepath.Join(l.ImageDir, src+".img"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(l.ImageDir, 0o700); err != nil {
		return err
	}
	out, err := os.OpenFile(filepath.Join(l.ImageDir, dst+".img"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	st, err := in.Stat()
	if err == nil {
		err = copyExtents(in, out, st.Size())
	}
	if err == nil {
		err = out.Truncate(st.Size())
	}
	return errors.Join(err, out.Close())
}

func copyExtents(in, out *os.File, size int64) error {
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		for n := data; n < hole; {
			roff, woff := n, n
			c, err := unix.CopyFileRange(int(in.Fd()), &roff, int(out.Fd()), &woff, int(hole-n), 0)
			if err != nil {
				return err
			}
			if c == 0 {
				break
			}
			n += int64(c)
		}
		off = hole
	}
	return nil
}
