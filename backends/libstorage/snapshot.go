package libstorage

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/params"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
)

// snapshotDrivers are the block drivers whose snapshots and copies hold
// the volume's data. vfs snapshots are metadata only and its copies empty;
// NAS drivers have none.
var snapshotDrivers = map[string]bool{"ebs": true, "cinder": true, "gcepd": true, "scaleio": true, "dobs": true}

// snapBackend is a Backend whose driver takes snapshots and copies with
// data: it adds snapshots, and creation from a snapshot or a volume.
type snapBackend struct{ *Backend }

var _ backends.Snapshotter = snapBackend{}

// Capabilities implements backends.Backend.
func (s snapBackend) Capabilities() backends.Capabilities {
	c := s.Backend.Capabilities()
	c.Clone = true
	return c
}

type wireSnapshot struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	VolumeID   string `json:"volumeID"`
	VolumeSize int64  `json:"volumeSize"`
	StartTime  int64  `json:"startTime"`
	Status     string `json:"status"`
}

func (w *wireSnapshot) toSnapshot() *backends.Snapshot {
	return &backends.Snapshot{ID: w.ID, SourceID: w.VolumeID, Name: w.Name, SizeBytes: w.VolumeSize * units.GiB, CreatedAt: w.StartTime,
		Ready: w.Status == "" || w.Status == "online" || w.Status == "completed" || w.Status == "available"}
}

func (s snapBackend) snapshots(ctx context.Context) ([]*wireSnapshot, error) {
	var m map[string]*wireSnapshot
	if _, err := s.c.do(ctx, request{method: http.MethodGet, path: "/snapshots/" + s.svc}, &m); err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	return sortedByID(m, func(w *wireSnapshot) *string { return &w.ID }), nil
}

func (s snapBackend) snapshotByName(ctx context.Context, name string) (*wireSnapshot, error) {
	all, err := s.snapshots(ctx)
	if err != nil {
		return nil, err
	}
	for _, w := range all {
		if w.Name == name {
			return w, nil
		}
	}
	return nil, nil
}

// CreateSnapshot implements backends.Snapshotter. As for volumes, the
// name is looked up before and after the server call.
func (s snapBackend) CreateSnapshot(ctx context.Context, sourceID, name string, ps map[string]string) (*backends.Snapshot, error) {
	for k := range ps {
		if !strings.HasPrefix(k, params.KubernetesPrefix) {
			return nil, fmt.Errorf("%w: snapshot parameter %q is not known; libStorage snapshots take none", backends.ErrInvalid, k)
		}
	}
	p, err := s.volPath(sourceID)
	if err != nil {
		return nil, err
	}
	unlock, err := s.locks.Lock(ctx, "snap:"+name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	check := func(w *wireSnapshot) (*backends.Snapshot, error) {
		if w.VolumeID != sourceID {
			return nil, fmt.Errorf("%w: snapshot %q exists for volume %s", backends.ErrAlreadyExists, name, w.VolumeID)
		}
		return w.toSnapshot(), nil
	}
	if w, err := s.snapshotByName(ctx, name); err != nil {
		return nil, err
	} else if w != nil {
		return check(w)
	}
	var w wireSnapshot
	if _, err := s.c.call(ctx, request{method: http.MethodPost, path: p, query: "snapshot", body: map[string]any{"snapshotName": name}}, &w); err != nil {
		if errors.Is(err, backends.ErrNotFound) {
			return nil, fmt.Errorf("snapshot source %s: %w", sourceID, err)
		}
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.c.timeout)
		defer cancel()
		if found, ferr := s.snapshotByName(lctx, name); ferr == nil && found != nil {
			return check(found)
		}
		return nil, fmt.Errorf("snapshot %s: %w", sourceID, err)
	}
	s.log.Info("snapshot created", zap.String("name", name), zap.String("id", w.ID), zap.String("volume", sourceID))
	return w.toSnapshot(), nil
}

// DeleteSnapshot implements backends.Snapshotter.
func (s snapBackend) DeleteSnapshot(ctx context.Context, id string) error {
	if id == "" || strings.ContainsAny(id, "/?#%\\") {
		return nil
	}
	_, err := s.c.call(ctx, request{method: http.MethodDelete, path: "/snapshots/" + s.svc + "/" + url.PathEscape(id)}, nil)
	if err != nil && !errors.Is(err, backends.ErrNotFound) {
		return fmt.Errorf("delete snapshot %s: %w", id, err)
	}
	return nil
}

// ListSnapshots implements backends.Snapshotter.
func (s snapBackend) ListSnapshots(ctx context.Context) ([]*backends.Snapshot, error) {
	all, err := s.snapshots(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*backends.Snapshot, len(all))
	for i, w := range all {
		out[i] = w.toSnapshot()
	}
	return out, nil
}

// Create implements backends.Backend, adding creation from a snapshot
// (POST /snapshots/{svc}/{id}?create) and from a volume (?copy).
func (s snapBackend) Create(ctx context.Context, req backends.CreateRequest) (*backends.Volume, error) {
	if req.SourceSnapshot == "" && req.SourceVolume == "" {
		return s.Backend.Create(ctx, req)
	}
	return s.Backend.create(ctx, req, func(body createBody, out *wireVolume) error {
		if req.SourceSnapshot != "" {
			if strings.ContainsAny(req.SourceSnapshot, "/?#%\\") {
				return fmt.Errorf("%w: snapshot %q", backends.ErrNotFound, req.SourceSnapshot)
			}
			var sn wireSnapshot
			if _, err := s.c.do(ctx, request{method: http.MethodGet, path: "/snapshots/" + s.svc + "/" + url.PathEscape(req.SourceSnapshot)}, &sn); err != nil {
				return fmt.Errorf("snapshot %s: %w", req.SourceSnapshot, err)
			}
			if sn.VolumeSize > *body.Size {
				return fmt.Errorf("%w: snapshot %s is of a %d GiB volume, more than the %d GiB asked for", backends.ErrOutOfRange, req.SourceSnapshot, sn.VolumeSize, *body.Size)
			}
			_, err := s.c.call(ctx, request{method: http.MethodPost, path: "/snapshots/" + s.svc + "/" + url.PathEscape(req.SourceSnapshot), query: "create", body: body}, out)
			return err
		}
		p, err := s.volPath(req.SourceVolume)
		if err != nil {
			return err
		}
		src, err := s.get(ctx, req.SourceVolume)
		if err != nil {
			return err
		}
		if src.Size > *body.Size {
			return fmt.Errorf("%w: source volume %s has %d GiB, more than the %d GiB asked for", backends.ErrOutOfRange, req.SourceVolume, src.Size, *body.Size)
		}
		_, err = s.c.call(ctx, request{method: http.MethodPost, path: p, query: "copy", body: map[string]any{"volumeName": body.Name, "opts": body.Opts}}, out)
		return err
	})
}
