package controller

import (
	"context"
	"encoding/base64"
	"sort"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/grpcerr"
	"github.com/csi-libstorage/csi-libstorage/internal/volid"
)

// Snapshot ids have the form of volume ids: "<backend>/<native id>".

func (s *Service) snapshotter(id, field string) (backends.Snapshotter, backends.Backend, string, error) {
	if id == "" {
		return nil, nil, "", invalid("%s is required", field)
	}
	b, native, err := s.resolve(id)
	if err != nil {
		return nil, nil, "", status.Errorf(status.Code(err), "%s: %s", field, status.Convert(err).Message())
	}
	sn, ok := backends.As[backends.Snapshotter](b)
	if !ok {
		return nil, nil, "", status.Errorf(codes.NotFound, "%s %q: backend %s has no snapshots", field, id, b.Name())
	}
	return sn, b, native, nil
}

func csiSnapshot(b backends.Backend, sn *backends.Snapshot) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:     volid.Join(b.Name(), sn.ID),
		SourceVolumeId: volid.Join(b.Name(), sn.SourceID),
		SizeBytes:      sn.SizeBytes,
		CreationTime:   timestamppb.New(time.Unix(sn.CreatedAt, 0)),
		ReadyToUse:     sn.Ready,
	}
}

// CreateSnapshot implements csi.ControllerServer.
func (s *Service) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if req.GetName() == "" {
		return nil, invalid("name is required")
	}
	if err := volid.CheckString(req.GetName(), MaxNameLen); err != nil {
		return nil, invalid("name %q: %v", req.GetName(), err)
	}
	sn, b, native, err := s.snapshotter(req.GetSourceVolumeId(), "source_volume_id")
	if err != nil {
		return nil, err
	}
	snap, err := sn.CreateSnapshot(ctx, native, req.GetName(), req.GetParameters())
	if err != nil {
		return nil, grpcerr.From(err, "snapshot "+req.GetSourceVolumeId())
	}
	return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(b, snap)}, nil
}

// DeleteSnapshot implements csi.ControllerServer.
func (s *Service) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	sn, _, native, err := s.snapshotter(req.GetSnapshotId(), "snapshot_id")
	if status.Code(err) == codes.NotFound {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := sn.DeleteSnapshot(ctx, native); err != nil {
		return nil, grpcerr.From(err, "delete snapshot "+req.GetSnapshotId())
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots implements csi.ControllerServer, paged like ListVolumes.
func (s *Service) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, invalid("max_entries cannot be negative")
	}
	after, err := s.decodeToken(req.GetStartingToken())
	if err != nil {
		return nil, err
	}
	var all []*csi.Snapshot
	for _, b := range s.set.All() {
		sn, ok := backends.As[backends.Snapshotter](b)
		if !ok {
			continue
		}
		list, err := sn.ListSnapshots(ctx)
		if err != nil {
			return nil, grpcerr.From(err, "list snapshots of "+b.Name())
		}
		for _, x := range list {
			c := csiSnapshot(b, x)
			if c.SnapshotId <= after ||
				(req.GetSnapshotId() != "" && c.SnapshotId != req.GetSnapshotId()) ||
				(req.GetSourceVolumeId() != "" && c.SourceVolumeId != req.GetSourceVolumeId()) {
				continue
			}
			all = append(all, c)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].SnapshotId < all[j].SnapshotId })
	resp := &csi.ListSnapshotsResponse{}
	if n := int(req.GetMaxEntries()); n > 0 && len(all) > n {
		all = all[:n]
		resp.NextToken = encodeToken(all[n-1].SnapshotId)
	}
	for _, c := range all {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: c})
	}
	return resp, nil
}

// GetSnapshot implements csi.ControllerServer (spec 1.12, alpha).
func (s *Service) GetSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	sn, b, native, err := s.snapshotter(req.GetSnapshotId(), "snapshot_id")
	if err != nil {
		return nil, err
	}
	list, err := sn.ListSnapshots(ctx)
	if err != nil {
		return nil, grpcerr.From(err, "get snapshot "+req.GetSnapshotId())
	}
	for _, x := range list {
		if x.ID == native {
			return &csi.GetSnapshotResponse{Snapshot: csiSnapshot(b, x)}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "snapshot %s does not exist", req.GetSnapshotId())
}

// A page token is the last id returned, so it stays valid while entries
// come and go between pages.
func encodeToken(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func (s *Service) decodeToken(t string) (string, error) {
	if t == "" {
		return "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(t)
	if err == nil && len(raw) > 0 {
		// Only an id this plugin could have handed out: a configured
		// backend, and a native id without path elements to climb.
		if _, native, err := s.set.Resolve(string(raw)); err == nil && !strings.Contains("/"+native+"/", "/../") && !strings.Contains("/"+native+"/", "/./") {
			return string(raw), nil
		}
	}
	return "", status.Errorf(codes.Aborted, "starting_token %q was not made by this plugin", t)
}
