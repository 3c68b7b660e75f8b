package node

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-libstorage/csi-libstorage/internal/lock"
)

// Locked runs the node calls that change a volume's state one at a time per
// volume; calls for different volumes run in parallel. A waiting call gives
// up at its deadline with DEADLINE_EXCEEDED.
type Locked struct {
	*Service
	locks *lock.Keyed
}

// NewLocked wraps s; locks may be shared with the controller of the same
// process.
func NewLocked(s *Service, locks *lock.Keyed) *Locked {
	return &Locked{Service: s, locks: locks}
}

// NodeStageVolume implements csi.NodeServer.
func (l *Locked) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	return lock.Run(ctx, l.locks, "volume:"+req.GetVolumeId(), func() (*csi.NodeStageVolumeResponse, error) {
		return l.Service.NodeStageVolume(ctx, req)
	})
}

// NodeUnstageVolume implements csi.NodeServer.
func (l *Locked) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	return lock.Run(ctx, l.locks, "volume:"+req.GetVolumeId(), func() (*csi.NodeUnstageVolumeResponse, error) {
		return l.Service.NodeUnstageVolume(ctx, req)
	})
}

// NodePublishVolume implements csi.NodeServer.
func (l *Locked) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	return lock.Run(ctx, l.locks, "volume:"+req.GetVolumeId(), func() (*csi.NodePublishVolumeResponse, error) {
		return l.Service.NodePublishVolume(ctx, req)
	})
}

// NodeUnpublishVolume implements csi.NodeServer.
func (l *Locked) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	return lock.Run(ctx, l.locks, "volume:"+req.GetVolumeId(), func() (*csi.NodeUnpublishVolumeResponse, error) {
		return l.Service.NodeUnpublishVolume(ctx, req)
	})
}

// NodeExpandVolume implements csi.NodeServer.
func (l *Locked) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	return lock.Run(ctx, l.locks, "volume:"+req.GetVolumeId(), func() (*csi.NodeExpandVolumeResponse, error) {
		return l.Service.NodeExpandVolume(ctx, req)
	})
}
