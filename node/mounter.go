package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"unsafe"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Mounter is what the node service needs from the operating system. The
// Linux implementation runs the real tools; tests of the service logic can
// swap it.
type Mounter interface {
	Mount(source, target, fsType string, options []string) error
	Unmount(target string) error
	// MountAt returns the topmost mount at target, if target is a mount
	// point.
	MountAt(target string) (Mount, bool, error)
	// Mounts returns the whole mount table of this mount namespace.
	Mounts() ([]Mount, error)
	// Probe reports every signature the device holds. A device that cannot
	// be read is an error, never an empty result.
	Probe(ctx context.Context, dev string) (Signature, error)
	Format(ctx context.Context, dev, fsType string, force bool) error
	// Magic reads the superblock magic of the filesystems the plugin makes
	// (ext2/3/4 as "ext4", xfs, btrfs) straight from the device; "" when
	// none is there. It is the cheap check of a volume already marked as
	// formatted; a never-formatted volume gets the full Probe.
	Magic(ctx context.Context, dev string) (string, error)
	// Grow extends the filesystem mounted at mountpoint from dev to the
	// size of the device.
	Grow(ctx context.Context, dev, mountpoint, fsType string) error
}

// Mount is one line of the mount table, with its paths unescaped (the
// kernel writes a space as \040, a tab as \011, a newline as \012 and a
// backslash as \134).
type Mount struct {
	Point  string
	Source string
	FSType string
	Root   string
	// Major and Minor are the st_dev of files on the mounted filesystem:
	// the block device of a filesystem mounted from one (btrfs reports an
	// anonymous number instead), and shared by every bind of it.
	Major, Minor int
	Options      []string
}

// Dev returns the mount's device number (Major, Minor) as stat reports it.
func (m Mount) Dev() uint64 { return unix.Mkdev(uint32(m.Major), uint32(m.Minor)) }

// ReadOnly reports whether the mount is read-only.
func (m Mount) ReadOnly() bool {
	for _, o := range m.Options {
		if o == "ro" {
			return true
		}
	}
	return false
}

// Signature is what a probe found on a device.
type Signature struct {
	// Type is the filesystem or container type (ext4, xfs, crypto_LUKS,
	// LVM2_member, swap, …); PTType a partition table (gpt, dos).
	Type   string
	PTType string
	// NonZero: no known signature, but the device's first or last MiB is
	// not all zeros, so something wrote to it. Nothing between those two
	// windows is read: data there, on a device with no signature blkid
	// knows, is not seen, and a stage of an unmarked volume formats over
	// it (TestStageNeverFormatsData pins both sides of this).
	NonZero bool
}

// Empty reports whether nothing at all was found.
func (s Signature) Empty() bool { return s.Type == "" && s.PTType == "" && !s.NonZero }

func (s Signature) String() string {
	var parts []string
	if s.Type != "" {
		parts = append(parts, "a "+s.Type+" signature")
	}
	if s.PTType != "" {
		parts = append(parts, "a "+s.PTType+" partition table")
	}
	if s.NonZero {
		parts = append(parts, "non-zero data")
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, " and ")
}

// LinuxMounter mounts and unmounts with the kernel's calls, reads the mount
// table through github.com/moby/sys/mountinfo (the project's one reader of
// it, which unescapes paths), and probes and
// formats with blkid and mkfs. It is safe for concurrent use.
type LinuxMounter struct{}

// NewLinuxMounter returns the mounter for this host.
func NewLinuxMounter() *LinuxMounter { return &LinuxMounter{} }

// mountFlags are the options mount(8) turns into flags; every other option
// is passed to the filesystem as data.
var mountFlags = map[string]struct {
	set   uintptr
	clear uintptr
}{
	"ro":          {unix.MS_RDONLY, 0},
	"rw":          {0, unix.MS_RDONLY},
	"nosuid":      {unix.MS_NOSUID, 0},
	"suid":        {0, unix.MS_NOSUID},
	"nodev":       {unix.MS_NODEV, 0},
	"dev":         {0, unix.MS_NODEV},
	"noexec":      {unix.MS_NOEXEC, 0},
	"exec":        {0, unix.MS_NOEXEC},
	"sync":        {unix.MS_SYNCHRONOUS, 0},
	"async":       {0, unix.MS_SYNCHRONOUS},
	"dirsync":     {unix.MS_DIRSYNC, 0},
	"noatime":     {unix.MS_NOATIME, 0},
	"atime":       {0, unix.MS_NOATIME},
	"nodiratime":  {unix.MS_NODIRATIME, 0},
	"diratime":    {0, unix.MS_NODIRATIME},
	"relatime":    {unix.MS_RELATIME, 0},
	"norelatime":  {0, unix.MS_RELATIME},
	"strictatime": {unix.MS_STRICTATIME, 0},
	"lazytime":    {unix.MS_LAZYTIME, 0},
	"nolazytime":  {0, unix.MS_LAZYTIME},
	"defaults":    {0, 0},
}

// Mount implements Mounter. A "bind" option makes a bind mount; with "ro"
// it is remounted read-only, as mount(8) does, since the kernel ignores
// MS_RDONLY on the first bind call.
func (l *LinuxMounter) Mount(source, target, fsType string, options []string) error {
	var flags uintptr
	var data []string
	bind := false
	for _, o := range options {
		if o == "bind" {
			bind = true
			continue
		}
		if f, ok := mountFlags[o]; ok {
			flags = flags&^f.clear | f.set
			continue
		}
		data = append(data, o)
	}
	if bind {
		if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s to %s: %w", source, target, err)
		}
		if flags != 0 {
			if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|flags, ""); err != nil {
				unix.Unmount(target, 0)
				return fmt.Errorf("remount %s with %v: %w", target, options, err)
			}
		}
		return nil
	}
	if err := unix.Mount(source, target, fsType, flags, strings.Join(data, ",")); err != nil {
		return fmt.Errorf("mount %s (%s) at %s with %v: %w", source, fsType, target, options, err)
	}
	return nil
}

// Unmount implements Mounter. The kernel call is made directly: umount(8)
// adds nothing here and costs a process.
func (l *LinuxMounter) Unmount(target string) error {
	if err := unix.Unmount(target, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// Mounts implements Mounter.
func (l *LinuxMounter) Mounts() ([]Mount, error) {
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, err
	}
	return fromMountinfo(infos), nil
}

// fromMountinfo converts the entries of github.com/moby/sys/mountinfo, in
// the order of the table.
func fromMountinfo(infos []*mountinfo.Info) []Mount {
	out := make([]Mount, 0, len(infos))
	for _, i := range infos {
		var opts []string
		for _, o := range []string{i.Options, i.VFSOptions} {
			if o != "" {
				opts = append(opts, strings.Split(o, ",")...)
			}
		}
		out = append(out, Mount{Point: i.Mountpoint, Source: i.Source, FSType: i.FSType, Root: i.Root, Major: i.Major, Minor: i.Minor, Options: opts})
	}
	return out
}

// MountAt implements Mounter.
func (l *LinuxMounter) MountAt(target string) (Mount, bool, error) {
	ms, err := l.Mounts()
	if err != nil {
		return Mount{}, false, err
	}
	var found Mount
	ok := false
	for _, m := range ms {
		if m.Point == target {
			found, ok = m, true // later lines are mounted on top
		}
	}
	return found, ok, nil
}

// Probe implements Mounter. blkid -p reads the device itself: its cache
// (/run/blkid/blkid.tab) keeps stale entries for reused loop devices.
func (l *LinuxMounter) Probe(ctx context.Context, dev string) (Signature, error) {
	// The edge read and blkid only read the device, so they run at once;
	// the result is put together only when both have finished.
	type edges struct {
		nonZero bool
		err     error
	}
	edge := make(chan edges, 1)
	go func() {
		nonZero, err := edgesNonZero(dev)
		edge <- edges{nonZero, err}
	}()
	cmd := exec.CommandContext(ctx, "blkid", "-p", "-c", "/dev/null", "-o", "export", dev)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	e := <-edge
	if e.err != nil {
		return Signature{}, e.err
	}
	nonZero := e.nonZero
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && exit.ExitCode() == 2:
		// Nothing was identified; the device itself was readable, as the
		// read above proved.
		return Signature{NonZero: nonZero}, nil
	case errors.As(err, &exit) && exit.ExitCode() == 8:
		return Signature{Type: "ambivalent (several signatures)"}, nil
	default:
		return Signature{}, fmt.Errorf("blkid -p %s: %v: %s", dev, err, strings.TrimSpace(stderr.String()))
	}
	var sig Signature
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "TYPE":
			sig.Type = v
		case "PTTYPE":
			sig.PTType = v
		}
	}
	if sig.Type == "" && sig.PTType == "" {
		sig.NonZero = nonZero
	}
	return sig, nil
}

// edgesNonZero reads the first and last MiB of dev with O_DIRECT, past any
// page cache, and reports whether they hold anything but zeros. It also
// proves that the device exists and can be read.
func edgesNonZero(dev string) (bool, error) {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("open %s for probing: %w", dev, err)
	}
	defer unix.Close(fd)
	size, err := blockSize(fd)
	if err != nil {
		return false, fmt.Errorf("size of %s: %w", dev, err)
	}
	const n = 1 << 20
	raw := make([]byte, n+4096)
	off := 4096 - int(uintptr(unsafe.Pointer(&raw[0]))%4096)
	buf := raw[off : off+n]
	for _, at := range []int64{0, max(0, (size-n)/4096*4096)} {
		m := min(int64(n), size-at)
		if m <= 0 {
			continue
		}
		got, err := unix.Pread(fd, buf[:m/512*512], at)
		if err != nil {
			return false, fmt.Errorf("read %s at %d: %w", dev, at, err)
		}
		for _, c := range buf[:got] {
			if c != 0 {
				return true, nil
			}
		}
	}
	return false, nil
}

func blockSize(fd int) (int64, error) {
	var size uint64
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); e != 0 {
		return 0, e
	}
	return int64(size), nil
}

// Magic implements Mounter.
func (l *LinuxMounter) Magic(ctx context.Context, dev string) (string, error) {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", dev, err)
	}
	defer unix.Close(fd)
	const n = 68 << 10 // btrfs's superblock ends below 68 KiB
	raw := make([]byte, n+4096)
	off := 4096 - int(uintptr(unsafe.Pointer(&raw[0]))%4096)
	buf := raw[off : off+n]
	got, err := unix.Pread(fd, buf, 0)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", dev, err)
	}
	buf = buf[:got]
	switch {
	case len(buf) >= 4 && string(buf[:4]) == "XFSB":
		return "xfs", nil
	case len(buf) >= 65608 && string(buf[65600:65608]) == "_BHRfS_M":
		return "btrfs", nil
	case len(buf) >= 1082 && binary.LittleEndian.Uint16(buf[1080:]) == 0xEF53:
		return "ext4", nil
	}
	return "", nil
}

// DeviceSize returns the size in bytes of the block device at path.
func DeviceSize(path string) (int64, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return blockSize(fd)
}

// Format implements Mounter. Without force no -f/-F is passed, so
// mkfs.xfs and mkfs.btrfs refuse a device holding a filesystem they
// recognise. mke2fs is no such guard: it looks for an existing filesystem
// only when its stdin and stdout are both terminals, and here neither is,
// so it formats over whatever the device holds. For ext2/3/4 the probe in
// prepare is the only check.
func (l *LinuxMounter) Format(ctx context.Context, dev, fsType string, force bool) error {
	var args []string
	switch fsType {
	case "ext4", "ext3", "ext2":
		args = []string{"-q"}
		if force {
			args = append(args, "-F")
		}
	case "xfs":
		args = []string{"-q"}
		if force {
			args = append(args, "-f")
		}
	case "btrfs":
		args = []string{"-q"}
		if force {
			args = append(args, "-f")
		}
	default:
		return fmt.Errorf("cannot format %s: unknown filesystem type %q", dev, fsType)
	}
	cmd := exec.CommandContext(ctx, "mkfs."+fsType, append(args, dev)...)
	cmd.Stdin = nil // /dev/null: no tool waits for an answer
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.%s %s: %v: %s", fsType, dev, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Grow implements Mounter.
func (l *LinuxMounter) Grow(ctx context.Context, dev, mountpoint, fsType string) error {
	var cmd *exec.Cmd
	switch fsType {
	case "ext4", "ext3", "ext2":
		if !HasCapability(unix.CAP_SYS_RESOURCE) {
			fsSize, block, err := ext4Size(dev)
			if err != nil {
				return err
			}
			devSize, err := DeviceSize(dev)
			if err != nil {
				return err
			}
			if fsSize+block > devSize {
				return nil // already fills the device: nothing to grow
			}
			return ErrNoOnlineResize
		}
		cmd = exec.CommandContext(ctx, "resize2fs", dev)
	case "xfs":
		cmd = exec.CommandContext(ctx, "xfs_growfs", mountpoint)
	case "btrfs":
		cmd = exec.CommandContext(ctx, "btrfs", "filesystem", "resize", "max", mountpoint)
	default:
		return fmt.Errorf("cannot grow a %s filesystem", fsType)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ext4Size reads the filesystem size and block size from an ext2/3/4
// superblock.
func ext4Size(dev string) (size, block int64, err error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil {
		return 0, 0, fmt.Errorf("read superblock of %s: %w", dev, err)
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xEF53 {
		return 0, 0, fmt.Errorf("%s has no ext2/3/4 superblock", dev)
	}
	block = 1024 << binary.LittleEndian.Uint32(sb[0x18:])
	count := uint64(binary.LittleEndian.Uint32(sb[0x04:]))
	if binary.LittleEndian.Uint32(sb[0x60:])&0x80 != 0 { // INCOMPAT_64BIT
		count |= uint64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
	}
	return int64(count) * block, block, nil
}

// ErrNoOnlineResize: the kernel lets only a process with CAP_SYS_RESOURCE
// grow a mounted ext4 filesystem.
var ErrNoOnlineResize = errors.New("growing a mounted ext4 filesystem needs CAP_SYS_RESOURCE, which this plugin process does not have; grant it to the plugin (its container), then retry the expansion")

// HasCapability reports whether the process has capability c in its
// effective set.
func HasCapability(c int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var mask uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &mask); err != nil {
				return false
			}
			return mask&(1<<uint(c)) != 0
		}
	}
	return false
}

// exists reports whether path exists, without following a final symlink.
func exists(path string) (os.FileInfo, bool, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	return fi, err == nil, err
}
