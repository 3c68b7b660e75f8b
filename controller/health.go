package controller

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/grpcerr"
	"github.com/csi-libstorage/csi-libstorage/internal/health"
)

// ControllerGetVolumeHealth implements csi.ControllerServer (spec 1.13,
// alpha): the storage's view of the volume, from backends that can report
// it. Spec 1.13 dropped VolumeCondition from ControllerGetVolume; this RPC
// carries what it used to.
func (s *Service) ControllerGetVolumeHealth(ctx context.Context, req *csi.ControllerGetVolumeHealthRequest) (*csi.ControllerGetVolumeHealthResponse, error) {
	b, native, err := s.resolve(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if _, err := b.Get(ctx, native); err != nil {
		return nil, grpcerr.From(err, "health of volume "+req.GetVolumeId())
	}
	var conds []backends.Condition
	if r, ok := backends.As[backends.ConditionReporter](b); ok {
		if conds, err = r.Conditions(ctx, native); err != nil {
			return nil, grpcerr.From(err, "health of volume "+req.GetVolumeId())
		}
	}
	return &csi.ControllerGetVolumeHealthResponse{VolumeHealth: health.Volume(req.GetVolumeId(), conds)}, nil
}
