package controller

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-libstorage/csi-libstorage/internal/lock"
)

// Locked serializes the calls that change a volume: one at a time per
// volume (or per name, for CreateVolume), different volumes in parallel.
// All locking of the controller is here, so Service stays plain code.
type Locked struct {
	*Service
	locks *lock.Keyed
}

// NewLocked wraps s. The lock set may be shared with the node service of
// the same process, so a stage never overlaps an unpublish of one volume.
func NewLocked(s *Service, locks *lock.Keyed) *Locked {
	return &Locked{Service: s, locks: locks}
}

// CreateVolume implements csi.ControllerServer.
func (l *Locked) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	return lock.Run(ctx, l.locks, "name:"+req.GetName(), func() (*csi.CreateVolumeResponse, error) {
		return l.Service.CreateVolume(ctx, req)
	})
}

// DeleteVolume implements csi.ControllerServer.
func (l *Locked) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	return lock.Run(ctx, l.locks, "volume:"+req.GetVolumeId(), func() (*csi.DeleteVolumeResponse, error) {
		return l.Service.DeleteVolume(ctx, req)
	})
}

// ControllerPublishVolume implements csi.ControllerServer.
func (l *Locked) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	return lock.Run(ctx, l.locks, "volume:"+req.GetVolumeId(), func() (*csi.ControllerPublishVolumeResponse, error) {
		return l.Service.ControllerPublishVolume(ctx, req)
	})
}

// ControllerUnpublishVolume implements csi.ControllerServer.
func (l *Locked) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	return lock.Run(ctx, l.locks, "volume:"+req.GetVolumeId(), func() (*csi.ControllerUnpublishVolumeResponse, error) {
		return l.Service.ControllerUnpublishVolume(ctx, req)
	})
}

// ControllerExpandVolume implements csi.ControllerServer.
func (l *Locked) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	return lock.Run(ctx, l.locks, "volume:"+req.GetVolumeId(), func() (*csi.ControllerExpandVolumeResponse, error) {
		return l.Service.ControllerExpandVolume(ctx, req)
	})
}

// CreateSnapshot implements csi.ControllerServer; the source volume is held
// while it is copied.
func (l *Locked) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	return lock.Run(ctx, l.locks, "volume:"+req.GetSourceVolumeId(), func() (*csi.CreateSnapshotResponse, error) {
		return l.Service.CreateSnapshot(ctx, req)
	})
}

// DeleteSnapshot implements csi.ControllerServer.
func (l *Locked) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	return lock.Run(ctx, l.locks, "snapshot:"+req.GetSnapshotId(), func() (*csi.DeleteSnapshotResponse, error) {
		return l.Service.DeleteSnapshot(ctx, req)
	})
}
