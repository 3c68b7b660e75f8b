package xtremio

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/fault"
	"github.com/csi-libstorage/csi-libstorage/internal/params"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
	"github.com/csi-libstorage/csi-libstorage/internal/volname"
)

// The native id of a volume is its XMS index, which does not change when
// the plugin renames the volume to record a mark.
var indexRE = regexp.MustCompile(`^[1-9][0-9]{0,9}$`)

func notFound(id string) error { return fmt.Errorf("volume %s: %w", id, backends.ErrNotFound) }

func size(required, limit int64) (int64, error) {
	if required == 0 {
		required = 1 << 30
	}
	s, ok := units.RoundUp(required, sizeUnit)
	if !ok || (limit > 0 && s > limit) {
		return 0, fmt.Errorf("%w: %d bytes rounds up to whole MiB above the limit %d", backends.ErrOutOfRange, required, limit)
	}
	return s, nil
}

// toVolume converts an XMS volume this backend named; nil for others.
func toVolume(v *volume) *backends.Volume {
	m, ok := volname.Parse(v.Name)
	if !ok || m.Kind == volname.Snapshot {
		return nil
	}
	out := &backends.Volume{ID: strconv.Itoa(v.Index), Name: v.Name, CapacityBytes: v.sizeBytes(), Modes: m.Modes,
		Block: m.Kind == volname.Block, Formatted: m.Mark, Parameters: map[string]string{}}
	if m.FSType != "" {
		out.Parameters[params.FSTypeKey] = m.FSType
	}
	mode := volname.AttachmentMode(m.Modes)
	ig := make([]string, 0, len(v.mappings()))
	for g := range v.mappings() {
		ig = append(ig, g)
	}
	sort.Strings(ig)
	for _, g := range ig {
		out.Attachments = append(out.Attachments, backends.Attachment{Node: g, Mode: mode, ByNode: m.ByNode})
	}
	return out
}

func (b *Backend) get(ctx context.Context, id string) (*volume, *backends.Volume, error) {
	if !indexRE.MatchString(id) {
		return nil, nil, notFound(id)
	}
	raw, err := b.c.volumeByIndex(ctx, id)
	if err != nil {
		return nil, nil, mapErr(err, "read volume "+id)
	}
	v := toVolume(raw)
	if v == nil {
		return nil, nil, notFound(id)
	}
	return raw, v, nil
}

// Get implements backends.Backend.
func (b *Backend) Get(ctx context.Context, id string) (*backends.Volume, error) {
	_, v, err := b.get(ctx, id)
	return v, err
}

// List implements backends.Backend.
func (b *Backend) List(ctx context.Context) ([]*backends.Volume, error) {
	all, err := b.c.volumes(ctx)
	if err != nil {
		return nil, mapErr(err, "list volumes")
	}
	var out []*backends.Volume
	for i := range all {
		if v := toVolume(&all[i]); v != nil {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (b *Backend) findByKey(ctx context.Context, key string) (*volume, error) {
	all, err := b.c.volumes(ctx)
	if err != nil {
		return nil, mapErr(err, "list volumes")
	}
	return volname.Find(all, func(v *volume) string { return v.Name }, key), nil
}

// Create implements backends.Backend.
func (b *Backend) Create(ctx context.Context, req backends.CreateRequest) (*backends.Volume, error) {
	sz, err := size(req.RequiredBytes, req.LimitBytes)
	if err != nil {
		return nil, err
	}
	kind := byte(volname.Mount)
	if req.Block {
		kind = volname.Block
	}
	m := volname.Meta{Key: volname.Key(req.Name, MaxNameLen), Kind: kind, Modes: req.Modes, FSType: params.FSType(req.Parameters)}
	unlock, err := b.locks.Lock(ctx, "name/"+m.Key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	existing, err := b.createOrFind(ctx, req, m, sz)
	if err != nil {
		return nil, err
	}
	if existing.sizeBytes() < sz && (req.SourceSnapshot != "" || req.SourceVolume != "") {
		if err := b.resize(ctx, existing.Name, sz); err != nil {
			return nil, err
		}
		if existing, err = b.c.volume(ctx, existing.Name); err != nil {
			return nil, mapErr(err, "read volume "+existing.Name)
		}
	}
	v := toVolume(existing)
	if v == nil {
		return nil, fmt.Errorf("%w: name %q belongs to a snapshot", backends.ErrAlreadyExists, existing.Name)
	}
	v.SourceSnapshot, v.SourceVolume = req.SourceSnapshot, req.SourceVolume
	switch {
	case v.CapacityBytes < sz || (req.LimitBytes > 0 && v.CapacityBytes > req.LimitBytes):
		return nil, fmt.Errorf("%w: volume %q exists with %d bytes", backends.ErrAlreadyExists, req.Name, v.CapacityBytes)
	case v.Block != req.Block || v.Parameters[params.FSTypeKey] != params.FSType(req.Parameters):
		return nil, fmt.Errorf("%w: volume %q exists with other access type or filesystem", backends.ErrAlreadyExists, req.Name)
	}
	return v, nil
}

// createOrFind returns the volume of m, creating it when the name is free.
// A volume found by name, or made, that is gone by the time it is read was
// deleted meanwhile by another controller: the name is free again, so it
// tries once more before answering UNAVAILABLE. Never NOT_FOUND: for a
// create that would say its source is missing.
func (b *Backend) createOrFind(ctx context.Context, req backends.CreateRequest, m volname.Meta, sz int64) (*volume, error) {
	for attempt := 0; attempt < 3; attempt++ {
		existing, err := b.findByKey(ctx, m.Key)
		if err != nil {
			return nil, err
		}
		if existing != nil {
			return existing, nil
		}
		if req.SourceSnapshot != "" || req.SourceVolume != "" {
			err = b.cloneFrom(ctx, req, m)
		} else {
			err = b.c.do(ctx, http.MethodPost, "volumes", nil, map[string]any{"vol-name": m.Name(), "vol-size": fmt.Sprintf("%dm", sz/sizeUnit)}, nil)
			if isAPI(err, msgNotUnique) {
				err = nil // an earlier attempt made it; its answer was lost
			}
			if err == nil {
				fault.Point("xtremio.create.requested")
			}
			err = mapErr(err, "create volume "+m.Name())
		}
		if err != nil {
			return nil, err
		}
		existing, err = b.c.volume(ctx, m.Name())
		if errors.Is(mapErr(err, ""), backends.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, mapErr(err, "read new volume "+m.Name())
		}
		b.log.Info("volume created", zap.String("name", existing.Name), zap.Int("index", existing.Index))
		return existing, nil
	}
	return nil, fmt.Errorf("%w: volume %q was deleted while it was being created; retry", backends.ErrUnavailable, m.Name())
}

func (b *Backend) resize(ctx context.Context, name string, sz int64) error {
	return mapErr(b.c.do(ctx, http.MethodPut, "volumes", url.Values{"name": {name}}, map[string]any{"vol-size": fmt.Sprintf("%dm", sz/sizeUnit)}, nil), "resize volume "+name)
}

func (b *Backend) rename(ctx context.Context, old, name string) error {
	if err := b.c.do(ctx, http.MethodPut, "volumes", url.Values{"name": {old}}, map[string]any{"vol-name": name}, nil); err != nil {
		return mapErr(err, "rename volume "+old)
	}
	fault.Point("xtremio.renamed")
	return nil
}

// Delete implements backends.Backend.
func (b *Backend) Delete(ctx context.Context, id string) error {
	raw, _, err := b.get(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	if len(raw.mappings()) > 0 {
		return fmt.Errorf("%w: volume %s is mapped; unpublish it first", backends.ErrInUse, id)
	}
	return b.remove(ctx, raw.Name)
}

func (b *Backend) remove(ctx context.Context, name string) error {
	err := mapErr(b.c.do(ctx, http.MethodDelete, "volumes", url.Values{"name": {name}}, nil, nil), "delete volume "+name)
	if err != nil && !isNotFound(err) {
		return err
	}
	fault.Point("xtremio.delete.requested")
	return nil
}

// MarkFormatted implements backends.Backend by renaming the volume.
func (b *Backend) MarkFormatted(ctx context.Context, id, fsType string) error {
	if !volname.HasCode(fsType) {
		return fmt.Errorf("%w: filesystem %q has no mark code", backends.ErrInvalid, fsType)
	}
	raw, _, err := b.get(ctx, id)
	if err != nil {
		return err
	}
	m, _ := volname.Parse(raw.Name)
	if m.Mark == fsType {
		return nil
	}
	m.Mark = fsType
	return b.rename(ctx, raw.Name, m.Name())
}

// Expand implements backends.Expander.
func (b *Backend) Expand(ctx context.Context, id string, requiredBytes, limitBytes int64) (int64, error) {
	sz, err := size(requiredBytes, limitBytes)
	if err != nil {
		return 0, err
	}
	raw, v, err := b.get(ctx, id)
	if err != nil {
		return 0, err
	}
	if v.CapacityBytes >= sz {
		return v.CapacityBytes, nil
	}
	if err := b.resize(ctx, raw.Name, sz); err != nil {
		return 0, err
	}
	return sz, nil
}

// clusterSpace returns the cluster's free bytes.
func (b *Backend) clusterSpace(ctx context.Context) (int64, error) {
	var out struct {
		Content struct {
			Space      string `json:"ud-ssd-space"`
			SpaceInUse string `json:"ud-ssd-space-in-use"`
		} `json:"content"`
	}
	q := url.Values{}
	path := "clusters/1"
	if b.cfg.Cluster != "" {
		path = "clusters"
		q.Set("name", b.cfg.Cluster)
	}
	if err := b.c.do(ctx, http.MethodGet, path, q, nil, &out); err != nil {
		return 0, mapErr(err, "read cluster space")
	}
	total, err1 := strconv.ParseInt(out.Content.Space, 10, 64)
	used, err2 := strconv.ParseInt(out.Content.SpaceInUse, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cluster space %q/%q: not numbers", out.Content.Space, out.Content.SpaceInUse)
	}
	return max(total-used, 0) * 1024, nil
}

// Capacity implements backends.Backend from the cluster's space.
func (b *Backend) Capacity(ctx context.Context, _ map[string]string) (int64, error) {
	return b.clusterSpace(ctx)
}
