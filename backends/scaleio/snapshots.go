package scaleio

import (
	"context"
	"fmt"
	"sort"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/volname"
)

// CreateSnapshot implements backends.Snapshotter with snapshotVolumes. A
// ScaleIO snapshot is a volume of its own, named with kind s; it keeps the
// source's format mark, so a volume cloned from it is never formatted over.
func (b *Backend) CreateSnapshot(ctx context.Context, sourceID, name string, _ map[string]string) (*backends.Snapshot, error) {
	src, _, err := b.get(ctx, sourceID)
	if err != nil {
		return nil, err
	}
	sm, _ := volname.Parse(src.Name)
	m := volname.Meta{Key: volname.Key(name, MaxNameLen), Kind: volname.Snapshot, Modes: sm.Modes, FSType: sm.FSType, Mark: sm.Mark}
	unlock, err := b.locks.Lock(ctx, "name/"+m.Key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	existing, err := b.findByKey(ctx, m.Key)
	if err != nil {
		return nil, err
	}
	if existing == nil {
		p, err := b.resolve(ctx)
		if err != nil {
			return nil, err
		}
		id, err := b.c.snapshot(ctx, p.system, sourceID, m.Name())
		if isAPI(err, msgNameInUse) {
			id, err = b.holderOf(ctx, m.Name())
		}
		if err != nil {
			return nil, mapErr(err, "snapshot volume "+sourceID)
		}
		if existing, err = b.c.volume(ctx, id); err != nil {
			return nil, mapErr(err, "read snapshot "+id)
		}
	}
	if em, _ := volname.Parse(existing.Name); em.Kind != volname.Snapshot || existing.AncestorVolumeID != sourceID {
		return nil, fmt.Errorf("%w: snapshot %q exists as %s of another source (%s)", backends.ErrAlreadyExists, name, existing.ID, existing.AncestorVolumeID)
	}
	return toSnapshot(existing), nil
}

func toSnapshot(v *volume) *backends.Snapshot {
	return &backends.Snapshot{ID: v.ID, SourceID: v.AncestorVolumeID, Name: v.Name, SizeBytes: v.SizeInKb * kib, CreatedAt: v.CreationTime, Ready: true}
}

// snapshotOf reads one of this backend's snapshots.
func (b *Backend) snapshotOf(ctx context.Context, id string) (*volume, error) {
	if !volumeIDRE.MatchString(id) {
		return nil, fmt.Errorf("snapshot %s: %w", id, backends.ErrNotFound)
	}
	p, err := b.resolve(ctx)
	if err != nil {
		return nil, err
	}
	v, err := b.c.volume(ctx, id)
	if err != nil {
		return nil, mapErr(err, "read snapshot "+id)
	}
	if m, ok := volname.Parse(v.Name); !ok || m.Kind != volname.Snapshot || v.StoragePoolID != p.pool {
		return nil, fmt.Errorf("snapshot %s: %w", id, backends.ErrNotFound)
	}
	return v, nil
}

// DeleteSnapshot implements backends.Snapshotter.
func (b *Backend) DeleteSnapshot(ctx context.Context, id string) error {
	if _, err := b.snapshotOf(ctx, id); err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	return b.remove(ctx, id)
}

// ListSnapshots implements backends.Snapshotter.
func (b *Backend) ListSnapshots(ctx context.Context) ([]*backends.Snapshot, error) {
	p, all, err := b.poolVolumes(ctx)
	if err != nil {
		return nil, err
	}
	var out []*backends.Snapshot
	for i := range all {
		if m, ok := volname.Parse(all[i].Name); ok && m.Kind == volname.Snapshot && all[i].StoragePoolID == p.pool {
			out = append(out, toSnapshot(&all[i]))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// cloneFrom makes a new volume named name through snapshotVolumes of the
// source (a snapshot, or a volume directly: ScaleIO snapshots are writable
// volumes). The clone keeps the source's format mark.
func (b *Backend) cloneFrom(ctx context.Context, p placement, req backends.CreateRequest, m volname.Meta) (string, error) {
	var src *volume
	var err error
	if req.SourceSnapshot != "" {
		src, err = b.snapshotOf(ctx, req.SourceSnapshot)
	} else {
		src, _, err = b.get(ctx, req.SourceVolume)
	}
	if err != nil {
		return "", err
	}
	sm, _ := volname.Parse(src.Name)
	m.Mark = sm.Mark
	if src.SizeInKb*kib > req.LimitBytes && req.LimitBytes > 0 {
		return "", fmt.Errorf("%w: source %s has %d bytes, above the limit %d", backends.ErrOutOfRange, src.ID, src.SizeInKb*kib, req.LimitBytes)
	}
	id, err := b.c.snapshot(ctx, p.system, src.ID, m.Name())
	if isAPI(err, msgNameInUse) {
		id, err = b.holderOf(ctx, m.Name())
	}
	return id, mapErr(err, "clone "+src.ID)
}
