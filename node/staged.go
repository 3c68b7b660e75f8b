package node

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/internal/loop"
)

// What the node keeps where, so that every state is read back from the
// kernel (the mount table, loop device status) after a restart:
//
//   - A volume staged for mount access is its filesystem mounted at the
//     staging path; each target is a bind of it, so every mount of the
//     volume shows the same device number.
//   - A volume staged for block access is its device node bound onto a file
//     inside the staging path, named for the volume (recordName): the record
//     that the volume is staged there, and the device it was staged with.
//   - A read-write block target is a bind of the device node; a read-only
//     one is a bind of a read-only loop device of its own over the volume's
//     device, labelled for the node and the target (roLoopName), since a
//     read-only bind of a writable device node does not stop writes.
//
// Device numbers come from the mount table, or from stat of a bound device
// node on devtmpfs or tmpfs, never from opening a device: a device node
// bound from devtmpfs may be anything (a watchdog, a tty) whose open blocks
// or has effects.

// recordName is the name of the file inside a block volume's staging path
// that its device is bound onto.
func recordName(volumeID string) string {
	h := sha256.Sum256([]byte(volumeID))
	return ".csi-libstorage-staged-" + hex.EncodeToString(h[:8])
}

// roLoopName labels the read-only loop device of one read-only block
// target of this node.
func roLoopName(nodeID, target string) string {
	h := sha256.Sum256([]byte(nodeID + "\x00" + target))
	return "csi-libstorage-ro " + hex.EncodeToString(h[:16])
}

// blockDevNum returns the device number of the block device node at path,
// following links, without opening it.
func blockDevNum(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, fmt.Errorf("%s is not a block device", path)
	}
	return st.Rdev, nil
}

// boundDevice reports the device number of m when m is a bind of one block
// device node. Only mounts of the filesystems that hold device nodes
// (devtmpfs, tmpfs) are looked at, and only with stat, which neither
// blocks on them nor opens anything.
func boundDevice(m Mount) (uint64, bool) {
	if m.Root == "/" || (m.FSType != "devtmpfs" && m.FSType != "tmpfs") {
		return 0, false
	}
	var st unix.Stat_t
	if err := unix.Lstat(m.Point, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, false
	}
	return st.Rdev, true
}

// loopBacking returns the device number of the block device that the loop
// device dev is backed by, read from sysfs; ok is false when dev is not a
// loop device over a block device.
func loopBacking(dev uint64) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/loop/backing_file", unix.Major(dev), unix.Minor(dev)))
	if err != nil {
		return 0, false
	}
	n, err := blockDevNum(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, false
	}
	return n, true
}

// topmost returns the last (uppermost) mount at point.
func topmost(ms []Mount, point string) (Mount, bool) {
	var found Mount
	ok := false
	for _, m := range ms {
		if m.Point == point {
			found, ok = m, true
		}
	}
	return found, ok
}

// showsDevice reports whether m shows the device dev (or, for a filesystem
// backend, the mount source src): a filesystem mounted from it or a bind of
// one, a bind of its device node, or a bind of a loop device over it (a
// read-only block target).
func showsDevice(m Mount, dev uint64, src string) bool {
	if dev != 0 && m.Dev() == dev {
		return true
	}
	if src != "" && m.Source == src {
		return true
	}
	if dev == 0 {
		return false
	}
	n, ok := boundDevice(m)
	if !ok {
		return false
	}
	if n == dev {
		return true
	}
	back, ok := loopBacking(n)
	return ok && back == dev
}

// holders returns the mount points, other than those in skip, where the
// device dev (or the mount source src) is mounted or bound, and the
// staging paths whose block records name the volume.
func holders(ms []Mount, volumeID string, dev uint64, src string, skip ...string) (points, records []string) {
	rec := recordName(volumeID)
	seen := map[string]bool{}
	for _, p := range skip {
		seen[p] = true
	}
	for _, m := range ms {
		if seen[m.Point] {
			continue
		}
		if filepath.Base(m.Point) == rec {
			// By name: a record covered by a later mount cannot be
			// stat'ed, but it is still there.
			seen[m.Point] = true
			records = append(records, filepath.Dir(m.Point))
			continue
		}
		if showsDevice(m, dev, src) {
			seen[m.Point] = true
			points = append(points, m.Point)
		}
	}
	return points, records
}

// readOnlyLoops returns the read-only loop devices over block devices that
// carry the label name. Only those that sysfs shows read-only and backed by
// a device node are opened to read their label.
func readOnlyLoops(name string) ([]loop.Info, error) {
	entries, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil, err
	}
	var out []loop.Info
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, "loop") {
			continue
		}
		back, err := os.ReadFile("/sys/block/" + n + "/loop/backing_file")
		if err != nil || !strings.HasPrefix(string(back), "/dev/") {
			continue
		}
		if ro, err := os.ReadFile("/sys/block/" + n + "/ro"); err != nil || strings.TrimSpace(string(ro)) != "1" {
			continue
		}
		info, err := loop.Status("/dev/" + n)
		if errors.Is(err, unix.ENXIO) || errors.Is(err, fs.ErrNotExist) {
			continue // detached between the two looks
		}
		if err != nil {
			return nil, err
		}
		if info.Name == name && info.ReadOnly {
			out = append(out, info)
		}
	}
	return out, nil
}

// readOnlyDevice returns the read-only loop device of a read-only block
// target over the device devPath (number dev): the one an earlier call made
// for this target if it is still right, else a new one. The caller binds
// it to the target, or gives it back with releaseReadOnly.
func (s *Service) readOnlyDevice(target, devPath string, dev uint64) (string, error) {
	name := roLoopName(s.opt.NodeID, target)
	found, err := readOnlyLoops(name)
	if err != nil {
		return "", err
	}
	for _, l := range found {
		if l.BackingRdev == dev {
			return l.Device, nil
		}
		if err := loop.Detach(l.Device); err != nil {
			return "", err
		}
	}
	// Direct I/O keeps reads through it coherent with a writer of the same
	// volume on this node; loop.Attach falls back to buffered I/O where
	// the device refuses.
	info, err := loop.Attach(devPath, loop.Options{ReadOnly: true, DirectIO: true, Name: name})
	if err != nil {
		return "", err
	}
	return info.Device, nil
}

// releaseReadOnly detaches the read-only loop devices made for target.
func (s *Service) releaseReadOnly(target string) error {
	found, err := readOnlyLoops(roLoopName(s.opt.NodeID, target))
	if err != nil {
		return err
	}
	for _, l := range found {
		if err := loop.Detach(l.Device); err != nil {
			return err
		}
		s.log.Info("read-only device of a target released", zap.String("target", target), zap.String("device", l.Device))
	}
	return nil
}

// devNode returns the device node under /dev of the device number dev, by
// the kernel's name for it.
func devNode(dev uint64) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", unix.Major(dev), unix.Minor(dev)))
	if err != nil {
		return "", fmt.Errorf("block device %d:%d: %w", unix.Major(dev), unix.Minor(dev), err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "DEVNAME="); ok {
			p := "/dev/" + name
			if n, err := blockDevNum(p); err != nil || n != dev {
				return "", fmt.Errorf("no device node for %d:%d at %s", unix.Major(dev), unix.Minor(dev), p)
			}
			return p, nil
		}
	}
	return "", fmt.Errorf("block device %d:%d has no name", unix.Major(dev), unix.Minor(dev))
}

// makeRecord creates the empty file a block volume's device is bound onto.
func makeRecord(rec string) error {
	fd, err := unix.Open(rec, unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// removeRecord removes the record file once nothing is bound onto it.
func removeRecord(rec string) error {
	fi, err := os.Lstat(rec)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Size() != 0 {
		return nil // not what the plugin made
	}
	if err := os.Remove(rec); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// elsewhere is the refusal of a second staging path for a volume.
func elsewhere(id string, points, records []string) error {
	if len(records) > 0 {
		return status.Errorf(codes.FailedPrecondition, "volume %s is already staged on this node at %s; a volume is staged at one staging path per node: unstage it there first", id, strings.Join(records, ", "))
	}
	return status.Errorf(codes.FailedPrecondition, "volume %s is already staged on this node at another staging path (it is mounted at %s); a volume is staged at one staging path per node: unstage it there first", id, strings.Join(points, ", "))
}

// blockSource returns the device that a block target at p shows the volume
// through: p itself, or for a read-only target the volume's device under
// the target's own read-only loop device.
func (s *Service) blockSource(p string) string {
	n, err := blockDevNum(p)
	if err != nil {
		return p
	}
	ls, err := readOnlyLoops(roLoopName(s.opt.NodeID, p))
	if err != nil {
		return p
	}
	for _, l := range ls {
		if d, err := blockDevNum(l.Device); err == nil && d == n {
			if under, err := devNode(l.BackingRdev); err == nil {
				return under
			}
		}
	}
	return p
}
