package xtremio

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/volname"
)

// snap makes a regular (writable) snapshot of src and names it name: the
// XMS names a snapshot <source>.<suffix>, and the plugin renames it.
func (b *Backend) snap(ctx context.Context, src *volume, name string) error {
	suffix := "csi" + strconv.FormatInt(time.Now().UnixNano(), 36)
	err := b.c.do(ctx, http.MethodPost, "snapshots", nil, map[string]any{
		"volume-list": []string{src.Name}, "snapshot-set-name": name, "snap-suffix": suffix, "snapshot-type": "regular"}, nil)
	if err != nil {
		return mapErr(err, "snapshot "+src.Name)
	}
	return b.rename(ctx, src.Name+"."+suffix, name)
}

// CreateSnapshot implements backends.Snapshotter.
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
		if err := b.snap(ctx, src, m.Name()); err != nil {
			return nil, err
		}
		if existing, err = b.c.volume(ctx, m.Name()); err != nil {
			return nil, mapErr(err, "read snapshot "+m.Name())
		}
	}
	if em, _ := volname.Parse(existing.Name); em.Kind != volname.Snapshot || existing.AncestorVolID.index() != src.Index {
		return nil, fmt.Errorf("%w: snapshot %q exists with another source", backends.ErrAlreadyExists, name)
	}
	return toSnapshot(existing), nil
}

func toSnapshot(v *volume) *backends.Snapshot {
	t, _ := time.Parse("2006-01-02 15:04:05", v.CreationTime)
	return &backends.Snapshot{ID: strconv.Itoa(v.Index), SourceID: strconv.Itoa(v.AncestorVolID.index()), Name: v.Name,
		SizeBytes: v.sizeBytes(), CreatedAt: t.Unix(), Ready: true}
}

func (b *Backend) snapshotOf(ctx context.Context, id string) (*volume, error) {
	if !indexRE.MatchString(id) {
		return nil, fmt.Errorf("snapshot %s: %w", id, backends.ErrNotFound)
	}
	v, err := b.c.volumeByIndex(ctx, id)
	if err != nil {
		return nil, mapErr(err, "read snapshot "+id)
	}
	if m, ok := volname.Parse(v.Name); !ok || m.Kind != volname.Snapshot {
		return nil, fmt.Errorf("snapshot %s: %w", id, backends.ErrNotFound)
	}
	return v, nil
}

// DeleteSnapshot implements backends.Snapshotter.
func (b *Backend) DeleteSnapshot(ctx context.Context, id string) error {
	v, err := b.snapshotOf(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	return b.remove(ctx, v.Name)
}

// ListSnapshots implements backends.Snapshotter.
func (b *Backend) ListSnapshots(ctx context.Context) ([]*backends.Snapshot, error) {
	all, err := b.c.volumes(ctx)
	if err != nil {
		return nil, mapErr(err, "list volumes")
	}
	var out []*backends.Snapshot
	for i := range all {
		if m, ok := volname.Parse(all[i].Name); ok && m.Kind == volname.Snapshot {
			out = append(out, toSnapshot(&all[i]))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// cloneFrom makes the new volume m as a regular snapshot of the source.
func (b *Backend) cloneFrom(ctx context.Context, req backends.CreateRequest, m volname.Meta) error {
	var src *volume
	var err error
	if req.SourceSnapshot != "" {
		src, err = b.snapshotOf(ctx, req.SourceSnapshot)
	} else {
		src, _, err = b.get(ctx, req.SourceVolume)
	}
	if err != nil {
		return err
	}
	if req.LimitBytes > 0 && src.sizeBytes() > req.LimitBytes {
		return fmt.Errorf("%w: source has %d bytes, above the limit %d", backends.ErrOutOfRange, src.sizeBytes(), req.LimitBytes)
	}
	sm, _ := volname.Parse(src.Name)
	m.Mark = sm.Mark
	return b.snap(ctx, src, m.Name())
}
