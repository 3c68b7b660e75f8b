// Package node implements the CSI Node service: it connects a volume's
// device, proves the device is that volume, formats it only if it has never
// held data, mounts it at the staging path and bind-mounts it to each
// target. The server runs one call per volume at a time (internal/server),
// so the code here reads as if it ran alone.
package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/capability"
	"github.com/csi-libstorage/csi-libstorage/internal/fault"
	"github.com/csi-libstorage/csi-libstorage/internal/grpcerr"
	"github.com/csi-libstorage/csi-libstorage/internal/loop"
	"github.com/csi-libstorage/csi-libstorage/internal/metrics"
	"github.com/csi-libstorage/csi-libstorage/internal/params"
)

// Options configure the node service.
type Options struct {
	NodeID string
	// MaxVolumes is reported in NodeGetInfo; 0 means no limit.
	MaxVolumes int64
	// AllowOverwrite is the operator's switch that lets a volume created
	// with overwritefs=true be formatted over a foreign filesystem.
	AllowOverwrite bool
	// AllowedRoots, when set, are the directories staging and target paths
	// must lie in, after symbolic links in their parents are resolved. When
	// empty, paths may lie anywhere but no parent may be a symbolic link.
	AllowedRoots []string
	Mounter      Mounter
	Logger       *zap.Logger
	Formats      *metrics.Formats // counts formats made and refused; nil counts nothing
}

// Service is the unlocked node service.
type Service struct {
	csi.UnimplementedNodeServer
	set *backends.Set
	opt Options
	m   Mounter
	log *zap.Logger

	// described holds the volumes this process staged from a publish
	// context that described them (backends.PublishDescriber): a
	// ControllerPublish attached them, so unstage has nothing of its own
	// to detach and need not ask the backend.
	describedMu sync.Mutex
	described   map[string]bool
}

// New returns the node service for the backends in set.
func New(set *backends.Set, opt Options) *Service {
	s := &Service{set: set, opt: opt, m: opt.Mounter, log: opt.Logger, described: map[string]bool{}}
	if s.m == nil {
		s.m = NewLinuxMounter()
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	return s
}

// Start prepares the node before it serves: it announces this node to the
// backends that must know it before they attach volumes to it, starts
// renewing its leases (until ctx is done), and lets each backend release
// what an earlier run left behind.
func (s *Service) Start(ctx context.Context) error {
	for _, b := range s.set.All() {
		if r, ok := backends.As[backends.NodeRegistrar](b); ok {
			if err := r.RegisterNode(ctx, s.opt.NodeID); err != nil {
				return fmt.Errorf("register node %s with backend %s: %w", s.opt.NodeID, b.Name(), err)
			}
		}
		// The lease is held for as long as the service runs (ctx), so
		// that its volumes can be taken over only once it is gone.
		if k, ok := backends.As[backends.LeaseKeeper](b); ok {
			if err := k.KeepLease(ctx); err != nil {
				return fmt.Errorf("lease of node %s on backend %s: %w", s.opt.NodeID, b.Name(), err)
			}
		}
		if r, ok := backends.As[backends.Reconciler](b); ok {
			done, err := r.Reconcile(ctx)
			if err != nil {
				return fmt.Errorf("reconcile backend %s: %w", b.Name(), err)
			}
			if len(done) > 0 {
				s.log.Info("reconciled node state left by an earlier run", zap.String("backend", b.Name()), zap.Strings("actions", done))
			}
		}
	}
	return nil
}

func invalid(format string, a ...any) error {
	return status.Errorf(codes.InvalidArgument, format, a...)
}

func (s *Service) resolve(id string) (backends.Backend, string, error) {
	return grpcerr.Resolve(s.set, id)
}

// checkPath accepts only absolute, clean paths, so that a caller's path
// cannot climb out of where the CO keeps its mounts.
func checkPath(field, p string) error {
	switch {
	case p == "":
		return invalid("%s is required", field)
	case !filepath.IsAbs(p):
		return invalid("%s %q must be an absolute path", field, p)
	case filepath.Clean(p) != p:
		return invalid("%s %q must be a clean path (no //, . or .. elements, no trailing /)", field, p)
	case len(p) > 4096:
		return invalid("%s is longer than PATH_MAX", field)
	}
	for _, c := range p {
		if c == 0 || c == '\n' {
			return invalid("%s contains a NUL or newline", field)
		}
	}
	return nil
}

// realPath checks a staging or target path and resolves it: the path the
// plugin mounts at and looks for in the mount table, the same every time.
// The last element must not be a symbolic link (a link there could send
// the mount anywhere). A link among the parents is accepted only when the
// operator configured allowed roots and the resolved path lies in one;
// otherwise a path that is not what it says is refused.
func (s *Service) realPath(field, p string) (string, error) {
	if err := checkPath(field, p); err != nil {
		return "", err
	}
	// Resolve the longest existing prefix of the parent; the rest will be
	// created by the plugin and cannot hold links yet.
	dir, rest := filepath.Dir(p), filepath.Base(p)
	for {
		r, err := filepath.EvalSymlinks(dir)
		if err == nil {
			dir = r
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", status.Errorf(codes.Internal, "%s %s: %v", field, p, err)
		}
		if dir == "/" {
			break
		}
		rest = filepath.Join(filepath.Base(dir), rest)
		dir = filepath.Dir(dir)
	}
	real := filepath.Join(dir, rest)
	if fi, err := os.Lstat(real); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return "", invalid("%s %s is a symbolic link; refusing to mount through it", field, p)
	}
	if len(s.opt.AllowedRoots) == 0 {
		if real != p {
			return "", invalid("%s %s passes through a symbolic link (it is really %s); refused unless the plugin's allowedRoots contain the real location", field, p, real)
		}
		return real, nil
	}
	for _, root := range s.opt.AllowedRoots {
		if real == root || strings.HasPrefix(real, strings.TrimSuffix(root, "/")+"/") {
			return real, nil
		}
	}
	return "", invalid("%s %s is really %s, outside the allowed roots %s", field, p, real, strings.Join(s.opt.AllowedRoots, ", "))
}

// ensureAttached attaches the volume to this node when the CO did not call
// ControllerPublish first, as the Mesos volume/csi isolator never does.
// The attachment is marked as the node's own, so unstage undoes it.
func (s *Service) ensureAttached(ctx context.Context, b backends.Backend, native string, v *backends.Volume, c capability.Cap) error {
	if !b.Capabilities().AttachRequired {
		return nil
	}
	if _, ok := v.AttachedTo(s.opt.NodeID); ok {
		return nil
	}
	_, err := b.Attach(ctx, native, backends.AttachRequest{Node: s.opt.NodeID, Mode: c.Mode, ReadOnly: c.Mode.ReadOnly(), ByNode: true})
	if err != nil {
		return grpcerr.From(err, "attach volume to this node")
	}
	s.log.Info("volume attached by the node (no ControllerPublish came first)", zap.String("volume", volIDOf(b, native)), zap.String("node", s.opt.NodeID))
	return nil
}

func volIDOf(b backends.Backend, native string) string { return b.Name() + "/" + native }

// lookup finds the volume of a stage or publish request and checks the
// requested capability against its backend and against the volume. Checks
// of the request's own fields come first, so a malformed request is
// INVALID_ARGUMENT even when the volume does not exist.
//
// A publish context that describes the volume (backends.PublishDescriber)
// is used instead of asking the backend, and described says so: the node
// of a CO that calls ControllerPublish then needs no access to the
// storage's API.
func (s *Service) lookup(ctx context.Context, id string, vc *csi.VolumeCapability, publish map[string]string, what string) (b backends.Backend, native string, v *backends.Volume, c capability.Cap, described bool, err error) {
	if id == "" {
		return nil, "", nil, c, false, invalid("volume_id is required")
	}
	if vc == nil {
		return nil, "", nil, c, false, invalid("volume_capability is required")
	}
	b, native, err = s.resolve(id)
	if err != nil {
		return nil, "", nil, c, false, err
	}
	if c, err = capability.Parse(vc, b.Capabilities().FilesystemTypes...); err != nil {
		return nil, "", nil, c, false, invalid("volume_capability: %v", err)
	}
	if d, ok := backends.As[backends.PublishDescriber](b); ok {
		v, described = d.DescribedVolume(native, publish)
	}
	if !described {
		if v, err = b.Get(ctx, native); err != nil {
			return nil, "", nil, c, false, grpcerr.From(err, what+" volume "+id)
		}
	}
	if c.Block != v.Block {
		return nil, "", nil, c, false, invalid("volume %s is for %s access, not %s", id, access(v.Block), access(c.Block))
	}
	return b, native, v, c, described, nil
}

// setDescribed records whether the staging of volume id came from a
// publish context that described it.
func (s *Service) setDescribed(id string, described bool) {
	s.describedMu.Lock()
	defer s.describedMu.Unlock()
	if described {
		s.described[id] = true
	} else {
		delete(s.described, id)
	}
}

// takeDescribed reports and forgets whether volume id was staged from a
// describing publish context.
func (s *Service) takeDescribed(id string) bool {
	s.describedMu.Lock()
	defer s.describedMu.Unlock()
	d := s.described[id]
	delete(s.described, id)
	return d
}

// NodeStageVolume implements csi.NodeServer.
func (s *Service) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	staging, err := s.realPath("staging_target_path", req.GetStagingTargetPath())
	if err != nil {
		return nil, err
	}
	b, native, v, c, described, err := s.lookup(ctx, req.GetVolumeId(), req.GetVolumeCapability(), req.GetPublishContext(), "stage")
	if err != nil {
		return nil, err
	}
	s.setDescribed(req.GetVolumeId(), described)
	if err := s.ensureAttached(ctx, b, native, v, c); err != nil {
		return nil, err
	}
	// A read-only access mode, or a ControllerPublish with readonly set,
	// gives this node a read-only device: nothing on it is written, the
	// filesystem included.
	readOnly := c.Mode.ReadOnly()
	if a, ok := v.AttachedTo(s.opt.NodeID); ok && a.ReadOnly {
		readOnly = true
	}
	dev, err := b.Connect(ctx, native, req.GetPublishContext(), readOnly)
	if err != nil {
		return nil, grpcerr.From(err, "connect volume "+req.GetVolumeId())
	}
	fault.Point("node.stage.connected")
	if dev.Dir {
		return s.stageDir(ctx, b, native, staging, dev, readOnly)
	}
	id := req.GetVolumeId()
	ms, err := s.m.Mounts()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read mount table: %v", err)
	}
	var devNo uint64
	if dev.FSType == "" {
		if devNo, err = blockDevNum(dev.Path); err != nil {
			return nil, status.Errorf(codes.Internal, "device of volume %s: %v", id, err)
		}
	}
	if c.Block {
		if v.Formatted == "" {
			if err := b.MarkFormatted(ctx, native, backends.FormattedRaw); err != nil {
				return nil, grpcerr.From(err, "mark volume as raw block")
			}
		}
		return s.stageBlock(ctx, b, native, id, staging, dev, devNo, ms)
	}

	if m, ok := topmost(ms, staging); ok {
		if (devNo != 0 && m.Dev() == devNo) || m.Source == dev.Path {
			return &csi.NodeStageVolumeResponse{}, nil
		}
		return nil, status.Errorf(codes.AlreadyExists, "staging path %s already has %s mounted, not volume %s (%s)", staging, m.Source, id, dev.Path)
	}
	for _, m := range ms {
		if strings.HasPrefix(m.Point, staging+"/") {
			return nil, status.Errorf(codes.AlreadyExists, "staging path %s has %s mounted below it; mounting volume %s over it would hide that", staging, m.Point, id)
		}
	}
	if points, records := holders(ms, id, devNo, dev.Path, staging); len(points)+len(records) > 0 {
		return nil, elsewhere(id, points, records)
	}

	fsType, marking, err := s.prepare(ctx, b, native, v, dev, c, readOnly, described)
	if err != nil {
		return nil, err
	}
	// The format mark of a filesystem made just now is recorded (an fsync'd
	// write) while the filesystem is mounted: nothing about the mount
	// depends on it, and it gates only later formats. The stage answers
	// only once both are done, and undoes the mount if the record failed.
	marked := func() error {
		if marking == nil {
			return nil
		}
		err := <-marking
		marking = nil
		return err
	}
	defer marked()
	if err := os.MkdirAll(staging, 0o750); err != nil {
		return nil, status.Errorf(codes.Internal, "create staging path: %v", err)
	}
	if err := s.verify(ctx, b, native, dev); err != nil {
		return nil, err
	}
	opts := append([]string{}, c.Flags...)
	opts = append(opts, dev.MountOptions...)
	if readOnly {
		opts = append(opts, "ro")
	}
	if err := s.m.Mount(dev.Path, staging, fsType, opts); err != nil {
		if readOnly && errors.Is(err, unix.EROFS) {
			return nil, status.Errorf(codes.FailedPrecondition, "volume %s needs journal recovery (its last writer did not unmount it cleanly), which a read-only stage cannot do: stage it once read-write on one node, then unstage it, and the readers can mount it", req.GetVolumeId())
		}
		return nil, mountFailed(dev, staging, err)
	}
	if err := marked(); err != nil {
		if uerr := s.m.Unmount(staging); uerr != nil {
			s.log.Error("unmount after failing to record the format", zap.String("staging", staging), zap.Error(uerr))
		}
		return nil, grpcerr.From(err, "record format of "+id)
	}
	fault.Point("node.stage.mounted")
	s.log.Info("volume staged", zap.String("volume", req.GetVolumeId()), zap.String("device", dev.Path), zap.String("fsType", fsType), zap.String("staging", staging))
	return &csi.NodeStageVolumeResponse{}, nil
}

// stageBlock records a block volume as staged at staging: its device node
// bound onto a file inside the staging path, named for the volume.
func (s *Service) stageBlock(ctx context.Context, b backends.Backend, native, id, staging string, dev backends.Device, devNo uint64, ms []Mount) (*csi.NodeStageVolumeResponse, error) {
	rec := filepath.Join(staging, recordName(id))
	if m, ok := topmost(ms, rec); ok {
		if n, ok := boundDevice(m); ok && n == devNo {
			return &csi.NodeStageVolumeResponse{}, nil
		}
		// A record of a device that is no longer the volume's (detached
		// and attached again behind the plugin): record the current one.
		if err := s.unmountAll(rec); err != nil {
			return nil, err
		}
	}
	if m, ok := topmost(ms, staging); ok {
		return nil, status.Errorf(codes.AlreadyExists, "staging path %s already has %s mounted; a block volume is staged in a plain directory", staging, m.Source)
	}
	if points, records := holders(ms, id, devNo, "", rec); len(points)+len(records) > 0 {
		return nil, elsewhere(id, points, records)
	}
	if err := os.MkdirAll(staging, 0o750); err != nil {
		return nil, status.Errorf(codes.Internal, "create staging path: %v", err)
	}
	if err := makeRecord(rec); err != nil {
		return nil, status.Errorf(codes.Internal, "create %s: %v", rec, err)
	}
	if err := s.verify(ctx, b, native, dev); err != nil {
		removeRecord(rec)
		return nil, err
	}
	if err := s.m.Mount(dev.Path, rec, "", []string{"bind"}); err != nil {
		removeRecord(rec)
		return nil, status.Errorf(codes.Internal, "bind %s to %s: %v", dev.Path, rec, err)
	}
	fault.Point("node.stage.mounted")
	s.log.Info("block volume staged", zap.String("volume", id), zap.String("device", dev.Path), zap.String("staging", staging))
	return &csi.NodeStageVolumeResponse{}, nil
}

func access(block bool) string {
	if block {
		return "block"
	}
	return "mount"
}

func (s *Service) verify(ctx context.Context, b backends.Backend, native string, dev backends.Device) error {
	if err := b.Verify(ctx, native, dev); err != nil {
		return status.Errorf(codes.Internal, "refusing to use %s: it is not provably volume %s: %v", dev.Path, volIDOf(b, native), err)
	}
	return nil
}

// prepare returns the filesystem to mount, formatting the device first only
// when the volume has never been formatted (DESIGN.md invariant 1): the
// backend holds no mark for it, blkid -p finds no signature of any kind,
// and the device's first and last MiB are all zeros. Those two windows are
// all the probe reads of the data itself: bytes elsewhere on a volume with
// no mark and no signature are formatted over. A probe that fails stops
// the stage.
//
// A volume described by its publish context (described) gets no format
// mark from the node: the node of a CO that calls ControllerPublish has no
// credentials for the storage. The backend's PublishDescriber says which
// guards remain (for EBS: the access type pinned at create, so only a
// filesystem mkfs made can be on an unmarked mount volume, and the probe
// above, which finds it and adopts it on every later stage).
//
// When it formats, the mark is recorded in the background and the middle
// result is the channel that delivers the outcome of that record (nil when
// nothing is recorded); the caller must receive from it.
func (s *Service) prepare(ctx context.Context, b backends.Backend, native string, v *backends.Volume, dev backends.Device, c capability.Cap, readOnly, described bool) (string, <-chan error, error) {
	id := volIDOf(b, native)
	want := c.FSType
	if want == "" {
		want = params.FSType(v.Parameters)
	}
	if dev.FSType != "" { // a filesystem backend: nothing to format
		return dev.FSType, nil, nil
	}
	switch v.Formatted {
	case backends.FormattedRaw:
		return "", nil, status.Errorf(codes.FailedPrecondition, "volume %s has been used as a raw block device; mounting it as a filesystem could destroy that data", id)
	case "":
	default:
		if want != "" && want != v.Formatted {
			return "", nil, status.Errorf(codes.FailedPrecondition, "volume %s holds a %s filesystem, not %s; it is never reformatted", id, v.Formatted, want)
		}
		magic, err := s.m.Magic(ctx, dev.Path)
		if err != nil {
			return "", nil, status.Errorf(codes.Internal, "probe %s: %v", dev.Path, err)
		}
		if magic != extFamily(v.Formatted) {
			found := "no filesystem"
			if magic != "" {
				found = "a " + magic + " filesystem"
			}
			return "", nil, status.Errorf(codes.FailedPrecondition, "volume %s was formatted %s but %s shows %s; refusing to mount or format it", id, v.Formatted, dev.Path, found)
		}
		return v.Formatted, nil, nil
	}
	if want == "" {
		want = capability.DefaultFSType
	}
	if readOnly {
		return "", nil, status.Errorf(codes.FailedPrecondition, "volume %s has never been formatted, and it is attached read-only here (access mode %s), so no filesystem can be written; stage it once read-write first", id, c.Mode)
	}
	if err := s.verify(ctx, b, native, dev); err != nil {
		return "", nil, err
	}
	sig, err := s.m.Probe(ctx, dev.Path)
	if err != nil {
		return "", nil, status.Errorf(codes.Internal, "probe %s before formatting: %v", dev.Path, err)
	}
	force := false
	switch {
	case sig.Empty():
	case sig.Type == want && sig.PTType == "":
		// Formatted by an earlier stage that died before it could record
		// the mark (or, described, by an earlier stage that records
		// none): the filesystem is ours, record it and use it.
		if described {
			s.log.Info("volume holds a filesystem of the requested type from an earlier stage; using it", zap.String("volume", id), zap.String("fsType", want))
			return want, nil, nil
		}
		s.log.Warn("found an unrecorded filesystem of the requested type; adopting it", zap.String("volume", id), zap.String("fsType", want))
		if err := b.MarkFormatted(ctx, native, want); err != nil {
			return "", nil, grpcerr.From(err, "record format of "+id)
		}
		return want, nil, nil
	case params.Overwrite(v.Parameters) && s.opt.AllowOverwrite:
		s.log.Warn("overwriting existing content as the volume's overwritefs parameter and the plugin's allowOverwrite ask",
			zap.String("volume", id), zap.String("found", sig.String()))
		force = true
	default:
		s.opt.Formats.Refused(b.Name())
		return "", nil, status.Errorf(codes.FailedPrecondition, "volume %s has never been formatted by this plugin but %s holds %s; refusing to format it. Inspect the device; to overwrite it, create the volume with overwritefs=true and set allowOverwrite: true in the plugin configuration",
			id, dev.Path, sig)
	}
	if err := s.m.Format(ctx, dev.Path, want, force); err != nil {
		return "", nil, status.Errorf(codes.Internal, "format volume %s: %v", id, err)
	}
	s.opt.Formats.Performed(b.Name())
	fault.Point("node.stage.formatted")
	if described {
		s.log.Info("volume formatted; its mark is the filesystem itself (the node records none when the publish context describes the volume)",
			zap.String("volume", id), zap.String("device", dev.Path), zap.String("fsType", want))
		return want, nil, nil
	}
	s.log.Info("volume formatted", zap.String("volume", id), zap.String("device", dev.Path), zap.String("fsType", want))
	marking := make(chan error, 1)
	go func() { marking <- b.MarkFormatted(ctx, native, want) }()
	return want, marking, nil
}

// extFamily names ext2 and ext3 as Magic does: all three share one magic.
func extFamily(fs string) string {
	if fs == "ext2" || fs == "ext3" {
		return "ext4"
	}
	return fs
}

// NodeUnstageVolume implements csi.NodeServer. A volume unknown to the
// backends is fine as long as nothing is mounted at the staging path.
func (s *Service) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, invalid("volume_id is required")
	}
	staging, err := s.existingPath("staging_target_path", req.GetStagingTargetPath())
	if err != nil {
		return nil, err
	}
	if staging == "" {
		return &csi.NodeUnstageVolumeResponse{}, nil
	}
	b, native, err := s.resolve(id)
	notFound := status.Code(err) == codes.NotFound
	if err != nil && !notFound {
		return nil, err
	}
	rec := filepath.Join(staging, recordName(id))
	if notFound {
		if err := s.unmountAll(rec); err != nil {
			return nil, err
		}
		removeRecord(rec)
		if err := s.unmountAll(staging); err != nil {
			return nil, err
		}
		return &csi.NodeUnstageVolumeResponse{}, nil
	}
	ms, err := s.m.Mounts()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read mount table: %v", err)
	}
	// What is staged here, by device number: the record of a block
	// volume, or the filesystem mounted at the staging path.
	var dev uint64
	var src, root string
	staged := false
	if m, ok := topmost(ms, rec); ok {
		if n, ok := boundDevice(m); ok {
			dev, staged = n, true
		}
	}
	if m, ok := topmost(ms, staging); ok && !staged {
		if b.Capabilities().FilesystemTypes == nil {
			if err := b.Verify(ctx, native, backends.Device{Path: m.Source}); err != nil {
				return nil, status.Errorf(codes.FailedPrecondition, "staging path %s holds %s, which is not volume %s; refusing to unmount it: %v", staging, m.Source, id, err)
			}
		}
		dev, src, root, staged = m.Dev(), m.Source, m.Root, true
	}
	if staged {
		// Unstaging under a published target would pull the device from
		// under it (and a loop device number freed here can be reused by
		// another volume that the target would then show).
		points, _ := holders(ms, id, dev, src, staging, rec)
		if points = withinRoot(ms, points, root); len(points) > 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "volume %s is still published at %s; unpublish it first", id, points[0])
		}
		if err := s.unmountAll(rec); err != nil {
			return nil, err
		}
		if err := removeRecord(rec); err != nil {
			return nil, status.Errorf(codes.Internal, "remove %s: %v", rec, err)
		}
		if err := s.unmountAll(staging); err != nil {
			return nil, err
		}
		fault.Point("node.unstage.unmounted")
	}
	// A volume staged at another path of this node (possible only before
	// the plugin refused that) keeps its device for that staging.
	if _, records := holders(ms, id, 0, "", staging, rec); len(records) > 0 {
		s.log.Info("volume is staged at another path of this node; its device stays", zap.String("volume", id), zap.String("staging", staging), zap.Strings("stagedAt", records))
		return &csi.NodeUnstageVolumeResponse{}, nil
	}
	if !staged {
		removeRecord(rec) // a stage that died before binding its record
	}
	if err := b.Disconnect(ctx, native); err != nil {
		if !staged && errors.Is(err, backends.ErrInUse) {
			// Not staged here, and its device is in use: by the
			// volume's filesystem mounted at another path of this node.
			s.log.Info("volume is not staged at this path and its device is in use; it stays", zap.String("volume", id), zap.String("staging", staging), zap.Error(err))
			return &csi.NodeUnstageVolumeResponse{}, nil
		}
		return nil, grpcerr.From(err, "disconnect volume "+id)
	}
	fault.Point("node.unstage.disconnected")
	if s.takeDescribed(id) {
		// Attached by a ControllerPublish, which ControllerUnpublish undoes.
		s.log.Info("volume unstaged", zap.String("volume", id), zap.String("staging", staging))
		return &csi.NodeUnstageVolumeResponse{}, nil
	}
	v, err := b.Get(ctx, native)
	switch code := grpcerr.Code(err); {
	case err == nil:
		if a, ok := v.AttachedTo(s.opt.NodeID); ok && a.ByNode {
			if err := b.Detach(ctx, native, s.opt.NodeID); err != nil {
				return nil, grpcerr.From(err, "detach volume "+id)
			}
		}
	case code == codes.PermissionDenied:
		// Staged before this process started, by a node without
		// credentials for the storage: such a node cannot have attached
		// the volume itself (attaching needs more than looking), so the
		// attachment is a ControllerPublish's and not unstage's to undo.
		s.log.Info("the storage refuses this node a look at the volume; a node without access cannot have attached it itself, so nothing is detached",
			zap.String("volume", id), zap.Error(err))
	case code != codes.NotFound:
		return nil, grpcerr.From(err, "unstage volume "+id)
	}
	s.log.Info("volume unstaged", zap.String("volume", id), zap.String("staging", staging))
	return &csi.NodeUnstageVolumeResponse{}, nil
}

// existingPath resolves the staging or target path of an undo call
// (unstage, unpublish) as realPath does. A path that does not resolve is
// an error naming it, unless nothing exists there: then the call has
// nothing to undo at it, and existingPath returns "" and no error. A
// symbolic link as the last element is never a mount point and the plugin
// never mounts through one, so the link alone is removed.
func (s *Service) existingPath(field, p string) (string, error) {
	if err := checkPath(field, p); err != nil {
		return "", err
	}
	real, err := s.realPath(field, p)
	if err == nil {
		return real, nil
	}
	fi, lerr := os.Lstat(p)
	switch {
	case errors.Is(lerr, fs.ErrNotExist):
		return "", nil
	case lerr != nil:
		return "", status.Errorf(codes.Internal, "%s %s: %v", field, p, lerr)
	case fi.Mode()&os.ModeSymlink != 0:
		// Only a link in a directory the path really names: one reached
		// through another link may be anyone's.
		parent, perr := s.realPath(field, filepath.Dir(p))
		if perr != nil {
			return "", err
		}
		link := filepath.Join(parent, filepath.Base(p))
		if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", status.Errorf(codes.Internal, "%s %s is a symbolic link that cannot be removed: %v", field, p, err)
		}
		s.log.Warn("removed a symbolic link the plugin never mounts through", zap.String(field, p))
		return "", nil
	}
	return "", err
}

// unmountAll unmounts path until nothing is mounted there.
func (s *Service) unmountAll(path string) error {
	for i := 0; i < 16; i++ {
		_, ok, err := s.m.MountAt(path)
		if err != nil {
			return status.Errorf(codes.Internal, "read mount table: %v", err)
		}
		if !ok {
			return nil
		}
		if err := s.m.Unmount(path); err != nil {
			return status.Errorf(codes.Internal, "%v", err)
		}
	}
	return status.Errorf(codes.Internal, "%s still has mounts after 16 unmounts", path)
}

// NodePublishVolume implements csi.NodeServer.
func (s *Service) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	target, err := s.realPath("target_path", req.GetTargetPath())
	if err != nil {
		return nil, err
	}
	staging, err := s.realPath("staging_target_path", req.GetStagingTargetPath())
	if err != nil {
		return nil, err
	}
	b, native, _, c, _, err := s.lookup(ctx, req.GetVolumeId(), req.GetVolumeCapability(), req.GetPublishContext(), "publish")
	if err != nil {
		return nil, err
	}
	readOnly := req.GetReadonly() || c.Mode.ReadOnly()
	id := req.GetVolumeId()
	ms, err := s.m.Mounts()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read mount table: %v", err)
	}

	// The volume must be staged at the staging path: publish takes no
	// resource of its own from the backend, so unpublish has none to give
	// back.
	var dev uint64
	var src, from string
	skip := []string{staging, target}
	if c.Block {
		rec := filepath.Join(staging, recordName(id))
		m, ok := topmost(ms, rec)
		n, bound := boundDevice(m)
		if !ok || !bound {
			return nil, status.Errorf(codes.FailedPrecondition, "volume %s is not staged at %s; call NodeStageVolume first", id, staging)
		}
		path, err := devNode(n)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "device staged at %s: %v", staging, err)
		}
		if err := b.Verify(ctx, native, backends.Device{Path: path}); err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "volume %s is not staged at %s: the device staged there (%s) is not that volume; unstage and stage it again: %v", id, staging, path, err)
		}
		dev, from = n, path
		skip = append(skip, rec)
	} else {
		m, ok := topmost(ms, staging)
		if !ok {
			return nil, status.Errorf(codes.FailedPrecondition, "volume %s is not staged at %s; call NodeStageVolume first", id, staging)
		}
		if b.Capabilities().FilesystemTypes == nil {
			if err := b.Verify(ctx, native, backends.Device{Path: m.Source}); err != nil {
				return nil, status.Errorf(codes.FailedPrecondition, "volume %s is not staged at %s: %s is mounted there, which is not that volume: %v", id, staging, m.Source, err)
			}
		}
		dev, src, from = m.Dev(), m.Source, staging
	}

	if m, ok := topmost(ms, target); ok {
		if !showsDevice(m, dev, src) {
			return nil, status.Errorf(codes.AlreadyExists, "target %s already has %s mounted, not volume %s", target, m.Source, id)
		}
		ro := m.ReadOnly()
		if n, ok := boundDevice(m); ok && n != dev {
			ro = true // its own read-only loop device
		}
		if ro != readOnly {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s is already published at %s with read-only=%t", id, target, ro)
		}
		return &csi.NodePublishVolumeResponse{}, nil
	}

	if c.Mode == backends.SingleNodeSingleWriter {
		if points, _ := holders(ms, id, dev, src, skip...); len(points) > 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "volume %s is SINGLE_NODE_SINGLE_WRITER and already published at %s", id, points[0])
		}
	}
	if err := makeTarget(target, c.Block); err != nil {
		return nil, err
	}
	fault.Point("node.publish.target-created")
	source := from
	if c.Block && readOnly {
		// A read-only bind of a writable device node does not stop
		// O_RDWR opens: the target gets a read-only device of its own.
		l, err := s.readOnlyDevice(target, from, dev)
		if err != nil {
			os.Remove(target)
			return nil, status.Errorf(codes.Internal, "read-only device for %s: %v", target, err)
		}
		source = l
	}
	opts := []string{"bind"}
	if readOnly {
		opts = append(opts, "ro")
	}
	if err := s.m.Mount(source, target, "", opts); err != nil {
		os.Remove(target)
		if source != from {
			s.releaseReadOnly(target)
		}
		return nil, status.Errorf(codes.Internal, "bind %s to %s: %v", source, target, err)
	}
	fault.Point("node.publish.mounted")
	s.log.Info("volume published", zap.String("volume", id), zap.String("target", target), zap.Bool("readOnly", readOnly))
	return &csi.NodePublishVolumeResponse{}, nil
}

// makeTarget creates the target: a directory for a filesystem, a file for
// a block device. A symlink is refused, so a planted link cannot send the
// mount elsewhere.
func makeTarget(target string, block bool) error {
	fi, ok, err := exists(target)
	if err != nil {
		return status.Errorf(codes.Internal, "target %s: %v", target, err)
	}
	if ok {
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			return invalid("target %s is a symbolic link; refusing to mount through it", target)
		case block && fi.IsDir():
			// Some COs create the target as a directory; a device needs a
			// file, and an empty directory can be replaced safely.
			if err := os.Remove(target); err != nil {
				return status.Errorf(codes.FailedPrecondition, "target %s is a directory that cannot be replaced by the device file: %v", target, err)
			}
		case !block && !fi.IsDir():
			return status.Errorf(codes.FailedPrecondition, "target %s exists and is not a directory", target)
		case !block:
			if entries, err := os.ReadDir(target); err != nil || len(entries) > 0 {
				return status.Errorf(codes.FailedPrecondition, "target %s is not an empty directory; mounting over it would hide what it holds", target)
			}
			return nil
		case !fi.Mode().IsRegular() || fi.Size() != 0:
			return status.Errorf(codes.FailedPrecondition, "target %s exists and is not an empty file; refusing to bind a device over it", target)
		default:
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		return status.Errorf(codes.Internal, "create parent of target: %v", err)
	}
	if !block {
		if err := os.Mkdir(target, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
			return status.Errorf(codes.Internal, "create target: %v", err)
		}
		return nil
	}
	fd, err := unix.Open(target, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_WRONLY, 0o640)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return status.Errorf(codes.Internal, "create target file: %v", err)
	}
	if err == nil {
		unix.Close(fd)
	}
	return nil
}

// NodeUnpublishVolume implements csi.NodeServer. It needs nothing from the
// backend, so it works for volumes that are gone.
func (s *Service) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if _, _, err := s.resolve(req.GetVolumeId()); err != nil && status.Code(err) != codes.NotFound {
		return nil, err
	}
	target, err := s.existingPath("target_path", req.GetTargetPath())
	if err != nil {
		return nil, err
	}
	if target == "" {
		return &csi.NodeUnpublishVolumeResponse{}, nil
	}
	if err := s.unmountAll(target); err != nil {
		return nil, err
	}
	fault.Point("node.unpublish.unmounted")
	if err := s.releaseReadOnly(target); err != nil {
		return nil, status.Errorf(codes.Internal, "release the read-only device of %s: %v", target, err)
	}
	if err := s.removeTarget(target); err != nil {
		return nil, err
	}
	s.log.Info("volume unpublished", zap.String("volume", req.GetVolumeId()), zap.String("target", target))
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// removeTarget removes what NodePublish creates at a target, and nothing
// else: an empty directory, or an empty file (a block device's mount
// point). Anything holding data was not made by the plugin; it is left, and
// the unpublish still succeeds, since nothing of the volume is there.
func (s *Service) removeTarget(target string) error {
	fi, err := os.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return status.Errorf(codes.Internal, "target %s: %v", target, err)
	}
	switch {
	case fi.IsDir():
		err = os.Remove(target)
		if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			s.log.Warn("target directory holds files the plugin did not put there; leaving it", zap.String("target", target))
			return nil
		}
	case fi.Mode().IsRegular() && fi.Size() == 0:
		err = os.Remove(target)
	default:
		s.log.Warn("target is not what the plugin creates; leaving it", zap.String("target", target), zap.Stringer("mode", fi.Mode()))
		return nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return status.Errorf(codes.Internal, "remove target %s: %v", target, err)
	}
	return nil
}

// existing checks the id and volume path of a stats or expand request and
// that the volume exists. The path itself is checked by the caller, after:
// a path where the volume is not is NOT_FOUND, not INVALID_ARGUMENT.
//
// With proves set the caller proves the volume itself, by verifying the
// device at the path (block backends), so the backend is not asked: stats
// are polled often on every node, and the EBS backend would answer with an
// EC2 call each time.
func (s *Service) existing(ctx context.Context, id, path, what string, proves bool) (backends.Backend, string, error) {
	if id == "" {
		return nil, "", invalid("volume_id is required")
	}
	if path == "" {
		return nil, "", invalid("volume_path is required")
	}
	b, native, err := s.resolve(id)
	if err != nil {
		return nil, "", err
	}
	if proves && b.Capabilities().FilesystemTypes == nil {
		return b, native, nil
	}
	if _, err := b.Get(ctx, native); err != nil {
		return nil, "", grpcerr.From(err, what+" "+id)
	}
	return b, native, nil
}

// NodeGetVolumeStats implements csi.NodeServer.
func (s *Service) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	p := req.GetVolumePath()
	b, native, err := s.existing(ctx, req.GetVolumeId(), p, "stats of", true)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return nil, status.Errorf(codes.NotFound, "volume %s is not at %q (not an absolute clean path)", req.GetVolumeId(), p)
	}
	m, ok, err := s.m.MountAt(p)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read mount table: %v", err)
	}
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s is not mounted at %s", req.GetVolumeId(), p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "volume %s at %s: %v", req.GetVolumeId(), p, err)
	}
	block := fi.Mode()&os.ModeDevice != 0
	dev := backends.Device{Path: m.Source}
	if block {
		dev.Path = s.blockSource(p)
	}
	// Another volume's mount at this path must not be reported as this one.
	if b.Capabilities().FilesystemTypes == nil && b.Verify(ctx, native, dev) != nil {
		return nil, status.Errorf(codes.NotFound, "what is mounted at %s (%s) is not volume %s", p, m.Source, req.GetVolumeId())
	}
	if block {
		size, err := DeviceSize(p)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "size of %s: %v", p, err)
		}
		return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{{Unit: csi.VolumeUsage_BYTES, Total: size}}}, nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return nil, status.Errorf(codes.Internal, "statfs %s (%s): %v", p, m.Source, err)
	}
	bs := st.Bsize
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
		{Unit: csi.VolumeUsage_BYTES, Total: int64(st.Blocks) * bs, Available: int64(st.Bavail) * bs, Used: int64(st.Blocks-st.Bfree) * bs},
		{Unit: csi.VolumeUsage_INODES, Total: int64(st.Files), Available: int64(st.Ffree), Used: int64(st.Files - st.Ffree)},
	}}, nil
}

// NodeExpandVolume implements csi.NodeServer: the device learns its new
// size, then a mounted filesystem grows to fill it. The path may be the
// staging path or a target, a mount or a published block device.
func (s *Service) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	p := req.GetVolumePath()
	b, native, err := s.existing(ctx, req.GetVolumeId(), p, "expand volume", true)
	if err != nil {
		return nil, err
	}
	if err := checkPath("volume_path", p); err != nil {
		return nil, status.Errorf(codes.NotFound, "volume %s is not at %q: %v", req.GetVolumeId(), p, status.Convert(err).Message())
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "volume %s is not at %s: %v", req.GetVolumeId(), p, err)
	}
	dev := backends.Device{Path: p}
	var m Mount
	block := fi.Mode()&os.ModeDevice != 0
	if block {
		dev.Path = s.blockSource(p)
	}
	if !block {
		var ok bool
		if m, ok, err = s.m.MountAt(p); err != nil {
			return nil, status.Errorf(codes.Internal, "read mount table: %v", err)
		} else if !ok {
			return nil, status.Errorf(codes.NotFound, "volume %s is not mounted at %s", req.GetVolumeId(), p)
		}
		dev.Path = m.Source
	}
	if err := s.verify(ctx, b, native, dev); err != nil {
		return nil, err
	}
	if b.Capabilities().FilesystemTypes != nil {
		// A filesystem backend's volume (an NFS directory) has no device
		// or filesystem of its own to grow.
		return &csi.NodeExpandVolumeResponse{}, nil
	}
	if r, ok := backends.As[backends.NodeExpander](b); ok {
		if err := r.RefreshDevice(ctx, native, dev); err != nil {
			return nil, grpcerr.From(err, "refresh device size of "+req.GetVolumeId())
		}
	}
	if dev.Path != p && block {
		// A read-only target's own loop device learns the new size too.
		if err := loop.SetCapacity(p); err != nil {
			return nil, status.Errorf(codes.Internal, "refresh size of %s: %v", p, err)
		}
	}
	if !block {
		if err := s.m.Grow(ctx, dev.Path, p, m.FSType); errors.Is(err, ErrNoOnlineResize) {
			return nil, status.Errorf(codes.FailedPrecondition, "grow filesystem of %s: %v", req.GetVolumeId(), err)
		} else if err != nil {
			return nil, status.Errorf(codes.Internal, "grow filesystem of %s: %v", req.GetVolumeId(), err)
		}
	}
	size, err := DeviceSize(dev.Path)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "size of %s: %v", dev.Path, err)
	}
	s.log.Info("volume expanded on node", zap.String("volume", req.GetVolumeId()), zap.Int64("bytes", size))
	return &csi.NodeExpandVolumeResponse{CapacityBytes: size}, nil
}

// NodeGetCapabilities implements csi.NodeServer.
func (s *Service) NodeGetCapabilities(ctx context.Context, req *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, t := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
	} {
		caps = append(caps, &csi.NodeServiceCapability{Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: t}}})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

// NodeGetInfo implements csi.NodeServer.
func (s *Service) NodeGetInfo(ctx context.Context, req *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	resp := &csi.NodeGetInfoResponse{NodeId: s.opt.NodeID, MaxVolumesPerNode: s.opt.MaxVolumes}
	for _, b := range s.set.All() {
		// A configured limit wins; else the tightest a backend knows.
		if l, ok := backends.As[backends.NodeVolumeLimiter](b); ok && s.opt.MaxVolumes == 0 {
			n, err := l.NodeMaxVolumes(ctx)
			if err != nil {
				return nil, grpcerr.From(err, "volume limit of this node from backend "+b.Name())
			}
			if resp.MaxVolumesPerNode == 0 || n < resp.MaxVolumesPerNode {
				resp.MaxVolumesPerNode = n
			}
		}
	}
	for _, b := range s.set.All() {
		if z, ok := backends.As[backends.NodeZoner](b); ok {
			zone, err := z.NodeZone(ctx)
			if err != nil {
				return nil, grpcerr.From(err, "zone of this node from backend "+b.Name())
			}
			resp.AccessibleTopology = &csi.Topology{Segments: map[string]string{backends.TopologyZoneKey: zone}}
			break
		}
	}
	return resp, nil
}
