// Package loop attaches, finds and detaches Linux loop devices through the
// kernel's ioctls, and proves which file a loop device is backed by.
//
// A loop device is identified by the device and inode numbers of its backing
// file, never by path: a path can be replaced, and the kernel truncates long
// names in its status.
//
// Devices are set up with LOOP_CONFIGURE (Linux 5.8+), one ioctl that binds
// the file and sets its flags. Older kernels, which Mesos agents still run
// (CentOS 7, Ubuntu 18.04, RHEL 8), refuse it; there the package falls back
// to LOOP_SET_FD and LOOP_SET_STATUS64, then LOOP_SET_DIRECT_IO where the
// kernel has it (4.10+), else buffered I/O.
package loop

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Info describes one configured loop device.
type Info struct {
	Device string // /dev/loopN
	// BackingDev and BackingInode identify the backing file.
	BackingDev   uint64
	BackingInode uint64
	// BackingRdev is the device number of the backing file when it is
	// itself a device node (a loop device over a block device).
	BackingRdev uint64
	ReadOnly    bool
	DirectIO    bool
	// BackingFile is the kernel's idea of the backing path, for logs only.
	BackingFile string
	// Name is the name given at Attach (Options.Name), if any.
	Name string
}

// FileID returns the device and inode numbers of path, the identity a loop
// device's status reports for its backing file.
func FileID(path string) (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, err
	}
	return st.Dev, st.Ino, nil
}

// Status reads the status of one loop device. It returns an error wrapping
// unix.ENXIO when the device has no backing file.
func Status(dev string) (Info, error) {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Info{}, fmt.Errorf("open %s: %w", dev, err)
	}
	defer unix.Close(fd)
	st, err := unix.IoctlLoopGetStatus64(fd)
	if err != nil {
		return Info{}, fmt.Errorf("status of %s: %w", dev, err)
	}
	info := Info{
		Device:       dev,
		BackingDev:   st.Device,
		BackingInode: st.Inode,
		BackingRdev:  st.Rdevice,
		ReadOnly:     st.Flags&unix.LO_FLAGS_READ_ONLY != 0,
		DirectIO:     st.Flags&unix.LO_FLAGS_DIRECT_IO != 0,
		Name:         unix.ByteSliceToString(st.File_name[:]),
	}
	name := filepath.Base(dev)
	if b, err := os.ReadFile("/sys/block/" + name + "/loop/backing_file"); err == nil {
		info.BackingFile = strings.TrimSpace(string(b))
	}
	return info, nil
}

// List returns every configured loop device. It reads sysfs to learn which
// devices are bound, then asks each for its status.
func List() ([]Info, error) {
	entries, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "loop") {
			continue
		}
		if _, err := os.Stat("/sys/block/" + name + "/loop/backing_file"); err != nil {
			continue // unbound
		}
		info, err := Status("/dev/" + name)
		if err != nil {
			if errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENOENT) {
				continue // detached between the two looks
			}
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Find returns the loop devices whose backing file is the file at path.
func Find(path string) ([]Info, error) {
	dev, ino, err := FileID(path)
	if err != nil {
		return nil, err
	}
	all, err := List()
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, i := range all {
		if i.BackingDev == dev && i.BackingInode == ino {
			out = append(out, i)
		}
	}
	return out, nil
}

// Verify returns nil only if dev is a loop device backed by the file that
// has the given identity.
func Verify(dev string, backingDev, backingIno uint64) error {
	info, err := Status(dev)
	if err != nil {
		return err
	}
	if info.BackingDev != backingDev || info.BackingInode != backingIno {
		return fmt.Errorf("%s is backed by %q (dev %d inode %d), not by the expected file (dev %d inode %d)",
			dev, info.BackingFile, info.BackingDev, info.BackingInode, backingDev, backingIno)
	}
	return nil
}

// Options for Attach.
type Options struct {
	ReadOnly bool
	// DirectIO asks the kernel to bypass the page cache of the backing
	// file; it falls back to buffered I/O where the filesystem or the
	// kernel refuses.
	DirectIO bool
	// Name is kept by the kernel with the device (lo_file_name, at most
	// 63 bytes) and reported by Status: a label by which the device can be
	// found again after a restart.
	Name string

	// noConfigure answers LOOP_CONFIGURE as a kernel older than 5.8
	// would, without asking this one, so tests exercise the fallback on
	// any kernel.
	noConfigure bool
	// beforeBind, if set, runs just before the device is bound; tests use
	// it to let "another process" take the free device first.
	beforeBind func(dev string)
}

// Attach binds a free loop device to the file at path and returns the
// device, after proving from the device's status that it is backed by the
// file opened. It retries when another process takes the free device
// first.
func Attach(path string, opt Options) (Info, error) {
	flags := unix.O_RDWR
	if opt.ReadOnly {
		flags = unix.O_RDONLY
	}
	file, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return Info{}, fmt.Errorf("open backing file %s: %w", path, err)
	}
	defer unix.Close(file)
	if len(opt.Name) >= unix.LO_NAME_SIZE {
		return Info{}, fmt.Errorf("loop device name %q is longer than %d bytes", opt.Name, unix.LO_NAME_SIZE-1)
	}
	var st unix.Stat_t
	if err := unix.Fstat(file, &st); err != nil {
		return Info{}, fmt.Errorf("stat backing file %s: %w", path, err)
	}
	if st.Size%512 != 0 {
		return Info{}, fmt.Errorf("backing file %s: size %d is not a multiple of 512", path, st.Size)
	}
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return Info{}, fmt.Errorf("open /dev/loop-control: %w", err)
	}
	defer unix.Close(ctl)

	var lastErr error
	for attempt := 0; attempt < 50; attempt++ {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return Info{}, fmt.Errorf("find a free loop device: %w", err)
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		err = configure(dev, n, file, opt)
		if err == nil {
			// The same proof on either path: the device reports the
			// device and inode numbers of the file opened.
			info, err := Status(dev)
			if err != nil {
				return Info{}, fmt.Errorf("configure %s for %s: %w", dev, path, err)
			}
			if info.BackingDev != st.Dev || info.BackingInode != st.Ino {
				return Info{}, fmt.Errorf("configure %s for %s: the device reports backing file %q (dev %d inode %d), not the image (dev %d inode %d)",
					dev, path, info.BackingFile, info.BackingDev, info.BackingInode, st.Dev, st.Ino)
			}
			info.BackingFile = path
			return info, nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return Info{}, fmt.Errorf("configure %s for %s: %w", dev, path, err)
		}
		lastErr = err // another process won the race for this device
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
	return Info{}, fmt.Errorf("no loop device could be configured for %s: %w", path, lastErr)
}

func configure(dev string, n, file int, opt Options) error {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		// Without devtmpfs or udev the node may not exist yet.
		if err := unix.Mknod(dev, unix.S_IFBLK|0o660, int(unix.Mkdev(7, uint32(n)))); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create %s: %w", dev, err)
		}
		fd, err = unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if opt.beforeBind != nil {
		opt.beforeBind(dev)
	}
	err = unix.EINVAL // what a kernel before 5.8 answers LOOP_CONFIGURE
	if !opt.noConfigure {
		err = configureOnce(fd, file, opt)
	}
	if refused(err) {
		err = setFD(fd, file, opt)
	}
	if err != nil || opt.ReadOnly {
		return err
	}
	if err := clearStaleReadOnly(fd); err != nil {
		unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
		return fmt.Errorf("%s: %w", dev, err)
	}
	return nil
}

// clearStaleReadOnly makes a writer's device writable. A read-only policy
// set with BLKROSET (blockdev --setro) belongs to the block device, not to
// its binding: it survives LOOP_CLR_FD and would make the next user's
// writable device refuse every write. The device was free until we bound
// it, so such a policy is left over from its previous user.
func clearStaleReadOnly(fd int) error {
	ro, err := unix.IoctlGetInt(fd, unix.BLKROGET)
	if err != nil {
		return fmt.Errorf("read-only policy: %w", err)
	}
	if ro == 0 {
		return nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.BLKROSET, 0); err != nil {
		return fmt.Errorf("clear a stale read-only policy: %w", err)
	}
	return nil
}

// refused reports whether the kernel rejected an ioctl it does not know:
// EINVAL from the loop driver, ENOTTY from the block layer.
func refused(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY)
}

func configureOnce(fd, file int, opt Options) error {
	cfg := unix.LoopConfig{Fd: uint32(file)}
	copy(cfg.Info.File_name[:], opt.Name)
	if opt.ReadOnly {
		cfg.Info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	if opt.DirectIO {
		cfg.Info.Flags |= unix.LO_FLAGS_DIRECT_IO
	}
	err := unix.IoctlLoopConfigure(fd, &cfg)
	if err != nil && opt.DirectIO && errors.Is(err, unix.EINVAL) {
		// The backing filesystem cannot do O_DIRECT (tmpfs, some FUSE).
		cfg.Info.Flags &^= unix.LO_FLAGS_DIRECT_IO
		err = unix.IoctlLoopConfigure(fd, &cfg)
	}
	return err
}

// setFD binds the device the way kernels before 5.8 allow: in steps. The
// device is read-only when the backing file was opened read-only. A device
// bound here and not fully set up is unbound again, so a failed attach
// leaves nothing behind.
func setFD(fd, file int, opt Options) error {
	if err := unix.IoctlSetInt(fd, unix.LOOP_SET_FD, file); err != nil {
		return err // EBUSY: another process bound it first
	}
	info := unix.LoopInfo64{}
	copy(info.File_name[:], opt.Name) // the label Status reports, as LOOP_CONFIGURE sets it
	if err := unix.IoctlLoopSetStatus64(fd, &info); err != nil {
		unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
		return fmt.Errorf("set status: %w", err)
	}
	if opt.DirectIO {
		// Before 4.10 the ioctl does not exist, and a filesystem without
		// O_DIRECT refuses it: both leave buffered I/O, which is correct,
		// only slower.
		if err := unix.IoctlSetInt(fd, unix.LOOP_SET_DIRECT_IO, 1); err != nil && !refused(err) {
			unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
			return fmt.Errorf("set direct I/O: %w", err)
		}
	}
	return nil
}

// Detach unbinds dev from its backing file. The kernel defers the detach
// while the device is still open (mounted), so callers unmount first.
func Detach(dev string) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dev, err)
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("detach %s: %w", dev, err)
	}
	return nil
}

// InUse reports whether something holds dev exclusively: a mounted
// filesystem in any mount namespace, or another exclusive opener. The test
// is itself an exclusive open, so another process making the same test at
// that moment makes a free device look busy; callers that would act on
// "free" get no false answer from that, and callers that refuse on "busy"
// use InUseSettled.
func InUse(dev string) (bool, error) {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
		return false, nil
	}
	if errors.Is(err, unix.EBUSY) {
		return true, nil
	}
	return false, fmt.Errorf("open %s: %w", dev, err)
}

// InUseSettled is InUse, but calls a device busy only if it stays busy over
// a few tries (about 20 ms).
func InUseSettled(dev string) (bool, error) {
	for try := 0; ; try++ {
		busy, err := InUse(dev)
		if err != nil || !busy || try == 4 {
			return busy, err
		}
		time.Sleep(time.Duration(try+1) * 2 * time.Millisecond)
	}
}

// SetCapacity makes dev pick up a new size of its backing file.
func SetCapacity(dev string) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dev, err)
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, unix.LOOP_SET_CAPACITY, 0); err != nil {
		return fmt.Errorf("resize %s: %w", dev, err)
	}
	return nil
}

// SetReadOnly sets dev's block-device read-only flag (BLKROSET, as
// blockdev --setro does): writes through the device node fail and no new
// read-write mount is allowed. A filesystem already mounted from it keeps
// writing through the block layer, which only warns (see
// fsutil.Shutdown). Attach clears the flag when the device number is
// used again.
func SetReadOnly(dev string) error { return SetReadOnlyFlag(dev, true) }

// SetReadOnlyFlag sets or clears dev's block-device read-only flag.
func SetReadOnlyFlag(dev string, ro bool) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dev, err)
	}
	defer unix.Close(fd)
	v := 0
	if ro {
		v = 1
	}
	if err := unix.IoctlSetPointerInt(fd, unix.BLKROSET, v); err != nil {
		return fmt.Errorf("set the read-only flag of %s to %t: %w", dev, ro, err)
	}
	return nil
}

// BlockReadOnly reports dev's block-device read-only flag (BLKROGET).
func BlockReadOnly(dev string) (bool, error) {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", dev, err)
	}
	defer unix.Close(fd)
	ro, err := unix.IoctlGetInt(fd, unix.BLKROGET)
	if err != nil {
		return false, fmt.Errorf("read-only flag of %s: %w", dev, err)
	}
	return ro != 0, nil
}
