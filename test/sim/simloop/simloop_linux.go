//go:build linux

// Package simloop holds the loop-device primitives the storage simulators
// share: a simulated volume is a sparse image file, and attaching it binds a
// loop device to the image behind the link the real system's udev rules
// would create, so a node stages a real block device.
package simloop

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// BackedBy lists the loop devices (/dev/loopN) whose backing file is
// in dir, using /sys/block/loop*/loop/backing_file. Tests use it to check
// that nothing leaked.
func BackedBy(dir string) ([]string, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	ents, err := filepath.Glob("/sys/block/loop*")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		name := filepath.Base(e)
		b, err := BackingFile(name)
		if err != nil {
			continue // not bound
		}
		if filepath.Dir(b) == real {
			out = append(out, "/dev/"+name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// BackingFile returns the file behind loop device name (loopN), from sysfs.
func BackingFile(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/sys/block", name, "loop", "backing_file"))
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)"), nil
}

// GrowImage makes img at least size bytes (sparse). With create it creates
// a missing image; otherwise a missing image is left missing.
func GrowImage(img string, size int64, create bool) error {
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(img, flags, 0o600)
	if err != nil {
		if !create && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() < size {
		return f.Truncate(size)
	}
	return nil
}

// ReplaceSymlink makes link point at target, replacing what was there.
func ReplaceSymlink(target, link string) error {
	if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.Symlink(target, link)
}

// Attach binds a free loop device to img and returns its path.
func Attach(img string) (string, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer ctl.Close()
	backing, err := os.OpenFile(img, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer backing.Close()
	var lastErr error
	for range 50 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		path := fmt.Sprintf("/dev/loop%d", n)
		dev, err := openNode(path, n)
		if err != nil {
			return "", err
		}
		err = configure(int(dev.Fd()), int(backing.Fd()), img)
		if err == nil {
			// The block layer's read-only flag (BLKROSET) outlives the
			// loop binding: a device another test set read-only comes
			// back read-only. An attached volume is writable.
			if err = unix.IoctlSetPointerInt(int(dev.Fd()), unix.BLKROSET, 0); err != nil {
				_ = unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_CLR_FD, 0)
				err = fmt.Errorf("clear the read-only flag of %s: %w", path, err)
			}
		}
		dev.Close()
		if err == nil {
			return path, nil
		}
		lastErr = err
		if !errors.Is(err, unix.EBUSY) {
			return "", err
		}
		// Another process took this device between GET_FREE and
		// CONFIGURE: try again.
		time.Sleep(5 * time.Millisecond)
	}
	return "", fmt.Errorf("no free loop device after retries: %w", lastErr)
}

func configure(devFd, backingFd int, img string) error {
	cfg := unix.LoopConfig{Fd: uint32(backingFd)}
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], img)
	err := unix.IoctlLoopConfigure(devFd, &cfg)
	if !errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EINVAL) {
		return err
	}
	// Kernels before 5.8 have no LOOP_CONFIGURE.
	if err := unix.IoctlSetInt(devFd, unix.LOOP_SET_FD, backingFd); err != nil {
		return err
	}
	if err := unix.IoctlLoopSetStatus64(devFd, &cfg.Info); err != nil {
		_ = unix.IoctlSetInt(devFd, unix.LOOP_CLR_FD, 0)
		return err
	}
	return nil
}

// openNode opens /dev/loopN, waiting briefly for devtmpfs and creating
// the node itself if /dev is not devtmpfs.
func openNode(path string, n int) (*os.File, error) {
	for range 100 {
		f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := unix.Mknod(path, unix.S_IFBLK|0o660, int(unix.Mkdev(7, uint32(n)))); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	return os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
}

// Detach unbinds loop if (and only if) it is still backed by img, so a
// device that was auto-cleared and reused by someone else is left alone.
func Detach(loop, img string) error {
	backing, err := BackingFile(filepath.Base(loop))
	if err != nil {
		return nil // not bound any more
	}
	if realImg, err := filepath.EvalSymlinks(img); err == nil && backing != realImg {
		return nil
	}
	f, err := os.OpenFile(loop, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for range 50 {
		err = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
		if errors.Is(err, unix.ENXIO) {
			return nil // already unbound
		}
		if !errors.Is(err, unix.EBUSY) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}
