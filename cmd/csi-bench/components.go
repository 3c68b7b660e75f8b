package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
	"unsafe"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/internal/fsutil"
	"github.com/csi-libstorage/csi-libstorage/internal/loop"
)

// A component is one piece of work the plugin does on the node path that
// the raw sequence does not; timing each in the same run attributes the
// plugin's overhead.
type component struct {
	name, how string
	run       func(dev, staging, target, dir string) error
}

var componentList = []component{
	{"blkid -p -c /dev/null -o export", "the probe the plugin runs before formatting and again on every re-stage, timed on the raw side's mounted ext4 device (fork+exec included)",
		func(dev, _, _, _ string) error {
			_, err := run("blkid", "-p", "-c", "/dev/null", "-o", "export", dev)
			return err
		}},
	{"mount -o bind,remount", "the second mount(8) that k8s.io/mount-utils ran after every bind mount (before the node called mount(2) itself), timed on the raw side's bind mount",
		func(_, staging, target, _ string) error {
			_, err := run("mount", "-o", "bind,remount", staging, target)
			return err
		}},
	{"fork+exec of /bin/true", "the floor of any external command started from Go",
		func(_, _, _, _ string) error { return exec.Command("/bin/true").Run() }},
	{"mount(2) bind without mount(8)", "unix.Mount(staging, target2, MS_BIND) + unix.Unmount, the system call NodePublish could make itself",
		func(_, staging, _, dir string) error {
			t := filepath.Join(dir, "target2")
			if err := os.MkdirAll(t, 0o750); err != nil {
				return err
			}
			if err := unix.Mount(staging, t, "", unix.MS_BIND, ""); err != nil {
				return err
			}
			return unix.Unmount(t, 0)
		}},
	{"atomic metadata write", "internal/fsutil.WriteFileAtomic of a 400-byte meta.json (temp, fsync, rename, dir fsync): MarkFormatted on a fresh stage",
		func(_, _, _, dir string) error {
			return fsutil.WriteFileAtomic(filepath.Join(dir, "meta.json"), make([]byte, 400), 0o600)
		}},
	{"O_DIRECT read of first+last MiB", "what the plugin's probe reads itself besides blkid",
		func(dev, _, _, _ string) error { return edges(dev) }},
	{"loop.List (all loop devices)", "internal/loop.List: the scan Connect and Disconnect make of every loop device on the host to find the volume's",
		func(_, _, _, _ string) error { _, err := loop.List(); return err }},
	{"parse /proc/self/mountinfo", "github.com/moby/sys/mountinfo GetMounts, the node's one reader of the mount table, done 1-2× per node call",
		func(_, _, _, _ string) error { _, err := mountinfo.GetMounts(nil); return err }},
}

// components times every component once, outside the timed windows.
func (h *harness) components(s *nodeSamples, dev, staging, target string) error {
	dir := filepath.Dir(staging)
	for _, c := range componentList {
		t := time.Now()
		if err := c.run(dev, staging, target, dir); err != nil {
			return fmt.Errorf("component %s: %w", c.name, err)
		}
		s.parts[c.name] = append(s.parts[c.name], time.Since(t))
	}
	return nil
}

func edges(dev string) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var size uint64
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); e != 0 {
		return e
	}
	const n = 1 << 20
	raw := make([]byte, n+4096)
	off := 4096 - int(uintptr(unsafe.Pointer(&raw[0]))%4096)
	buf := raw[off : off+n]
	for _, at := range []int64{0, int64(size) - n} {
		if _, err := unix.Pread(fd, buf, at); err != nil {
			return err
		}
	}
	return nil
}
