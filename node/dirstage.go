package node

import (
	"context"
	"os"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// stageDir stages a volume that a backend hands out as a directory on this
// node (a libStorage vfs volume): the directory is bind-mounted at the
// staging path. There is nothing to format. A staging path that already
// shows another directory is refused.
func (s *Service) stageDir(ctx context.Context, b backends.Backend, native, staging string, dev backends.Device, readOnly bool) (*csi.NodeStageVolumeResponse, error) {
	id := volIDOf(b, native)
	if _, ok, err := s.m.MountAt(staging); err != nil {
		return nil, status.Errorf(codes.Internal, "read mount table: %v", err)
	} else if ok {
		if sameDir(staging, dev.Path) {
			return &csi.NodeStageVolumeResponse{}, nil
		}
		return nil, status.Errorf(codes.AlreadyExists, "staging path %s already has another mount, not volume %s (%s)", staging, id, dev.Path)
	}
	if err := s.verify(ctx, b, native, dev); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(staging, 0o750); err != nil {
		return nil, status.Errorf(codes.Internal, "create staging path: %v", err)
	}
	opts := []string{"bind"}
	if readOnly {
		opts = append(opts, "ro")
	}
	if err := s.m.Mount(dev.Path, staging, "", opts); err != nil {
		return nil, status.Errorf(codes.Internal, "bind %s at %s: %v", dev.Path, staging, err)
	}
	s.log.Info("volume staged", zap.String("volume", id), zap.String("directory", dev.Path), zap.String("staging", staging))
	return &csi.NodeStageVolumeResponse{}, nil
}

// sameDir reports whether a and b are the same directory (device and
// inode), as a bind mount of b at a is.
func sameDir(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// withinRoot keeps the points whose mounts show the staged tree. A staged
// directory (a bind whose root is a directory inside its filesystem, as a
// vfs volume is) shares its device number with every other mount of that
// filesystem, / included; only mounts of that directory or below it are
// publications of the volume. root "/" or "" keeps every point.
func withinRoot(ms []Mount, points []string, root string) []string {
	if root == "" || root == "/" {
		return points
	}
	var out []string
	for _, p := range points {
		if m, ok := topmost(ms, p); ok && (m.Root == root || strings.HasPrefix(m.Root, root+"/")) {
			out = append(out, p)
		}
	}
	return out
}
