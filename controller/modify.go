package controller

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/grpcerr"
)

// checkMutable refuses, with INVALID_ARGUMENT naming it, every mutable
// parameter the backend does not declare, and returns the backend's
// Modifier.
func checkMutable(b backends.Backend, in map[string]string) (backends.Modifier, error) {
	m, ok := backends.As[backends.Modifier](b)
	if !ok {
		keys := slices.Sorted(maps.Keys(in))
		return nil, invalid("mutable parameter %q: backend %s has no mutable parameters", keys[0], b.Name())
	}
	allowed := m.MutableParameters()
	for _, k := range slices.Sorted(maps.Keys(in)) {
		if !slices.Contains(allowed, k) {
			return nil, invalid("mutable parameter %q cannot be changed on backend %s; its mutable parameters are: %s", k, b.Name(), strings.Join(allowed, ", "))
		}
	}
	return m, nil
}

// withMutable applies CreateVolume's mutable_parameters: they are checked
// as a modify would check them and then override the creation parameters
// of the same name, so the volume is born with them.
func withMutable(b backends.Backend, p, mutable map[string]string) (map[string]string, error) {
	if len(mutable) == 0 {
		return p, nil
	}
	if _, err := checkMutable(b, mutable); err != nil {
		return nil, err
	}
	out := maps.Clone(p)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, mutable)
	return out, nil
}

// ControllerModifyVolume implements csi.ControllerServer.
func (s *Service) ControllerModifyVolume(ctx context.Context, req *csi.ControllerModifyVolumeRequest) (*csi.ControllerModifyVolumeResponse, error) {
	b, native, err := s.resolve(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if len(req.GetMutableParameters()) == 0 {
		return nil, invalid("mutable_parameters are required: name the parameters to change")
	}
	m, err := checkMutable(b, req.GetMutableParameters())
	if err != nil {
		return nil, err
	}
	if _, err := b.Get(ctx, native); err != nil {
		return nil, grpcerr.From(err, "modify volume "+req.GetVolumeId())
	}
	if err := m.Modify(ctx, native, req.GetMutableParameters()); err != nil {
		return nil, grpcerr.From(err, "modify volume "+req.GetVolumeId())
	}
	s.log.Info("volume modified", zap.String("volume", req.GetVolumeId()), zap.Any("parameters", req.GetMutableParameters()))
	return &csi.ControllerModifyVolumeResponse{}, nil
}
