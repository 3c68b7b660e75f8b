package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/grpcerr"
	"github.com/csi-libstorage/csi-libstorage/internal/health"
)

// sysRoot is where sysfs is mounted; the loop and ext4 views below it are
// what the health checks read.
const sysRoot = "/sys"

// NodeGetVolumeHealth implements csi.NodeServer (spec 1.13, alpha). Spec
// 1.13 removed VolumeCondition from NodeGetVolumeStats; this RPC is where
// a node now reports that a volume it serves is unwell. It looks at the
// volume's mounts on this node (the staging mount, or a target, when the
// CO names them; otherwise every mount of a device the backend proves is
// this volume), at the device behind them and at the filesystem, and adds
// what the backend itself knows. Nothing is changed or repaired.
func (s *Service) NodeGetVolumeHealth(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	id := req.GetVolumeId()
	b, native, err := s.resolve(id)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, path string }{
		{"volume_publish_path", req.GetVolumePublishPath()},
		{"staging_target_path", req.GetStagingTargetPath()},
	} {
		if f.path != "" {
			if err := checkPath(f.name, f.path); err != nil {
				return nil, err
			}
		}
	}
	v, err := b.Get(ctx, native)
	if err != nil {
		return nil, grpcerr.From(err, "health of volume "+id)
	}
	var conds []backends.Condition
	if r, ok := backends.As[backends.ConditionReporter](b); ok {
		if conds, err = r.Conditions(ctx, native); err != nil {
			return nil, grpcerr.From(err, "health of volume "+id)
		}
	}
	ms, err := s.m.Mounts()
	if err != nil {
		return nil, grpcerr.From(fmt.Errorf("read mount table: %w", err), "health of volume "+id)
	}
	h := healthCheck{s: s, b: b, native: native, id: id, v: v, mounts: ms, known: conds}
	conds = append(conds, h.run(ctx, req.GetStagingTargetPath(), req.GetVolumePublishPath())...)
	return &csi.NodeGetVolumeHealthResponse{VolumeHealth: health.Volume(id, conds)}, nil
}

// healthCheck examines one volume against one reading of the mount table.
type healthCheck struct {
	s      *Service
	b      backends.Backend
	native string
	id     string
	v      *backends.Volume
	mounts []Mount
	known  []backends.Condition // from the backend
}

func (h *healthCheck) run(ctx context.Context, staging, publish string) []backends.Condition {
	var out []backends.Condition
	var found []Mount
	for _, p := range []struct{ path, what string }{{staging, "staging path"}, {publish, "target"}} {
		if p.path == "" {
			continue
		}
		m, ok := h.mountAt(p.path)
		switch {
		case ok:
			found = append(found, m)
		case p.what == "staging path" && h.v.Block:
			// A raw block volume has nothing mounted at staging.
		default:
			out = append(out, backends.Condition{
				Kind:    backends.Inaccessible,
				Reason:  "NotMounted",
				Message: fmt.Sprintf("nothing is mounted at the %s %s, so volume %s is not reachable there on this node; if the CO believes it is, unpublish and unstage it and stage and publish it again", p.what, p.path, h.id),
			})
		}
	}
	if staging == "" && publish == "" {
		found = h.scan(ctx)
	}
	// Each device is examined once, at its first mount: the staging mount
	// comes before the binds made from it, and only the staging mount says
	// how the filesystem itself is mounted.
	seen := map[string]bool{}
	for _, m := range found {
		dev, block := deviceOf(m)
		if seen[dev] {
			continue
		}
		seen[dev] = true
		if !block {
			m = h.firstMountOf(m.Source)
		}
		out = append(out, h.examine(ctx, m, dev, block)...)
	}
	return out
}

// mountAt returns the topmost mount at path.
func (h *healthCheck) mountAt(path string) (Mount, bool) {
	var found Mount
	ok := false
	for _, m := range h.mounts {
		if m.Point == path {
			found, ok = m, true
		}
	}
	return found, ok
}

func (h *healthCheck) firstMountOf(source string) Mount {
	for _, m := range h.mounts {
		if m.Source == source && m.FSType != "devtmpfs" {
			return m
		}
	}
	return Mount{Source: source}
}

// scan finds the mounts of this volume when the CO named no path: mounts of
// a block device, or binds of a device node, that the backend proves are
// this volume. A device that vanished cannot be proven, so it is only
// found when the CO names a path.
func (h *healthCheck) scan(ctx context.Context) []Mount {
	if h.b.Capabilities().FilesystemTypes != nil {
		return nil // a filesystem backend has no device to prove
	}
	var out []Mount
	for _, m := range h.mounts {
		dev, _ := deviceOf(m)
		if !strings.HasPrefix(dev, "/dev/") {
			continue
		}
		if h.b.Verify(ctx, h.native, backends.Device{Path: dev}) == nil {
			out = append(out, m)
		}
	}
	return out
}

// deviceOf returns the device behind a mount: its source, or for the bind
// of a device node (a published raw block volume) the node itself.
func deviceOf(m Mount) (dev string, block bool) {
	if m.FSType == "devtmpfs" && len(m.Root) > 1 {
		return "/dev" + m.Root, true
	}
	return m.Source, false
}

// examine checks the device behind a mount and, for a filesystem, the
// filesystem.
func (h *healthCheck) examine(ctx context.Context, m Mount, dev string, block bool) []backends.Condition {
	where := m.Point
	if where == "" {
		where = "(unknown mount point)"
	}
	if c, ok := deviceGone(h.id, dev, where); ok {
		return []backends.Condition{c}
	}
	var out []backends.Condition
	if c, ok := loopState(h.id, dev); ok {
		out = append(out, c)
	}
	if len(out) == 0 && len(h.known) == 0 {
		// Only a device that looks fine is put to the proof; a missing
		// image or a detached device fails it for a reason already told.
		if err := h.b.Verify(ctx, h.native, backends.Device{Path: dev}); err != nil {
			out = append(out, backends.Condition{
				Kind:    backends.Inaccessible,
				Reason:  "DeviceMismatch",
				Message: fmt.Sprintf("the device %s mounted at %s is no longer provably volume %s (%v); do not write to it: unpublish and unstage the volume on this node and stage it again", dev, where, h.id, err),
			})
		}
	}
	if block || m.Point == "" {
		return out
	}
	return append(out, h.filesystem(m, dev)...)
}

// deviceGone reports a device node that is no longer there: the disk was
// removed, detached by the storage or hot-unplugged under the mount.
func deviceGone(id, dev, where string) (backends.Condition, bool) {
	fi, err := os.Stat(dev)
	if err == nil && fi.Mode()&os.ModeDevice != 0 {
		return backends.Condition{}, false
	}
	why := "it is not a device"
	if err != nil {
		why = err.Error()
	}
	return backends.Condition{
		Kind:    backends.Inaccessible,
		Reason:  "DeviceMissing",
		Message: fmt.Sprintf("the device %s behind volume %s at %s is gone (%s): I/O to the volume fails. Check that the storage still attaches it to this node, then unpublish and unstage the volume here and stage it again", dev, id, where, why),
	}, true
}

// loopState reports a loop device that lost its image: detached under the
// mount, or still attached to an image file that was deleted from the
// pool (the kernel shows the path with " (deleted)").
func loopState(id, dev string) (backends.Condition, bool) {
	name := filepath.Base(dev)
	if r, err := filepath.EvalSymlinks(dev); err == nil {
		name = filepath.Base(r)
	}
	if !strings.HasPrefix(name, "loop") {
		return backends.Condition{}, false
	}
	if _, err := os.Stat(filepath.Join(sysRoot, "block", name)); err != nil {
		return backends.Condition{}, false
	}
	raw, err := os.ReadFile(filepath.Join(sysRoot, "block", name, "loop", "backing_file"))
	if errors.Is(err, fs.ErrNotExist) {
		return backends.Condition{
			Kind:    backends.Inaccessible,
			Reason:  "DeviceDetached",
			Message: fmt.Sprintf("the loop device %s of volume %s has been detached from its image (someone ran losetup -d?): reads and writes fail. Unpublish and unstage the volume on this node and stage it again to attach it anew", dev, id),
		}, true
	}
	if err != nil {
		return backends.Condition{}, false
	}
	backing := strings.TrimSpace(string(raw))
	if img, ok := strings.CutSuffix(backing, " (deleted)"); ok {
		return backends.Condition{
			Kind:    backends.DataLoss,
			Reason:  "BackingImageDeleted",
			Message: fmt.Sprintf("the image %s of volume %s was deleted while loop device %s still holds it: the data lives on only until the device is released. Copy it off now (it is still readable at the volume's mounts); do not unstage the volume before that", img, id, dev),
		}, true
	}
	return backends.Condition{}, false
}

// filesystem checks the staging mount of a filesystem volume.
func (h *healthCheck) filesystem(m Mount, dev string) []backends.Condition {
	var out []backends.Condition
	// A filesystem the kernel shut down answers every lookup with EIO.
	// XFS shows nothing else cheaply (it keeps no error count in sysfs),
	// so this is its check; ext4 shut down the same way is caught too.
	var st unix.Stat_t
	if err := unix.Stat(m.Point, &st); errors.Is(err, unix.EIO) {
		out = append(out, backends.Condition{
			Kind:    backends.Inaccessible,
			Reason:  "FilesystemShutdown",
			Message: fmt.Sprintf("the %s filesystem of volume %s on %s (mounted at %s) has shut down after an error and answers every access with an I/O error; see the kernel log (dmesg) for %s, then unpublish and unstage the volume, repair it (xfs_repair or fsck) and stage it again", m.FSType, h.id, dev, m.Point, filepath.Base(dev)),
		})
	}
	if h.readOnlyAfterErrors(m) {
		out = append(out, backends.Condition{
			Kind:    backends.Degraded,
			Reason:  "ReadOnly",
			Message: fmt.Sprintf("the filesystem of volume %s on %s (staged at %s) was made read-only after it was staged read-write, usually by the kernel after I/O or filesystem errors: writes fail. See the kernel log (dmesg) for %s, then unpublish and unstage the volume, check it with fsck and stage it again", h.id, dev, m.Point, filepath.Base(dev)),
		})
	}
	if c, ok := ext4Errors(h.id, m, dev); ok {
		out = append(out, c)
	}
	return out
}

// readOnlyAfterErrors tells whether the staging mount went read-only after
// the volume was staged read-write. ext4 (since Linux 6.x) flags an
// errors=remount-ro stop with the superblock option emergency_ro instead of
// ro; a remount of the filesystem read-only shows ro while this node's
// attachment says read-write.
func (h *healthCheck) readOnlyAfterErrors(m Mount) bool {
	if slices.Contains(m.Options, "emergency_ro") {
		return true
	}
	return m.ReadOnly() && !h.stagedReadOnly()
}

// stagedReadOnly mirrors NodeStageVolume's choice of a read-only stage.
func (h *healthCheck) stagedReadOnly() bool {
	if a, ok := h.v.AttachedTo(h.s.opt.NodeID); ok && (a.ReadOnly || a.Mode.ReadOnly()) {
		return true
	}
	if len(h.v.Modes) == 0 {
		return false
	}
	for _, mode := range h.v.Modes {
		if !mode.ReadOnly() {
			return false
		}
	}
	return true
}

// ext4Errors reads the error count ext4 keeps in its superblock (and shows
// in sysfs): it is never reset by a remount, only by fsck.
func ext4Errors(id string, m Mount, dev string) (backends.Condition, bool) {
	if m.FSType != "ext4" && m.FSType != "ext3" && m.FSType != "ext2" {
		return backends.Condition{}, false
	}
	name := filepath.Base(dev)
	if r, err := filepath.EvalSymlinks(dev); err == nil {
		name = filepath.Base(r)
	}
	dir := filepath.Join(sysRoot, "fs", "ext4", name)
	read := func(f string) string {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		return strings.TrimSpace(string(b))
	}
	n, err := strconv.Atoi(read("errors_count"))
	if err != nil || n == 0 {
		return backends.Condition{}, false
	}
	first := ""
	if sec, err := strconv.ParseInt(read("first_error_time"), 10, 64); err == nil && sec > 0 {
		first = " first at " + time.Unix(sec, 0).UTC().Format(time.RFC3339)
		if fn := read("first_error_func"); fn != "" {
			first += " in " + fn
		}
		first += ","
	}
	return backends.Condition{
		Kind:    backends.Degraded,
		Reason:  "FilesystemErrors",
		Message: fmt.Sprintf("the ext4 filesystem of volume %s on %s (mounted at %s) has recorded %d error(s),%s so data or metadata may be damaged. See the kernel log (dmesg) for %s, then unpublish and unstage the volume and run fsck.ext4 -f on it before staging it again", id, dev, m.Point, n, first, name),
	}, true
}
