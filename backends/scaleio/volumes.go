package scaleio

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/fault"
	"github.com/csi-libstorage/csi-libstorage/internal/params"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
	"github.com/csi-libstorage/csi-libstorage/internal/volname"
)

const kib = 1024

// allocate rounds a request up to ScaleIO's 8 GiB allocation unit.
func allocate(required, limit int64) (int64, error) {
	if required == 0 {
		required = AllocationBytes
	}
	size, ok := units.RoundUp(required, AllocationBytes)
	if !ok || size > MaxVolumeBytes {
		return 0, fmt.Errorf("%w: %d bytes is above ScaleIO's largest volume (%d bytes)", backends.ErrOutOfRange, required, int64(MaxVolumeBytes))
	}
	if limit > 0 && size > limit {
		return 0, fmt.Errorf("%w: ScaleIO allocates in multiples of 8 GiB; %d bytes rounds up to %d, above the limit %d",
			backends.ErrOutOfRange, required, size, limit)
	}
	return size, nil
}

// toVolume converts a gateway volume this backend named; nil for others.
func (b *Backend) toVolume(v *volume, pool string) *backends.Volume {
	m, ok := volname.Parse(v.Name)
	if !ok || m.Kind == volname.Snapshot || v.StoragePoolID != pool {
		return nil
	}
	out := &backends.Volume{
		ID:            v.ID,
		Name:          v.Name,
		CapacityBytes: v.SizeInKb * kib,
		Modes:         m.Modes,
		Block:         m.Kind == volname.Block,
		Formatted:     m.Mark,
		Parameters:    map[string]string{},
	}
	if m.FSType != "" {
		out.Parameters[params.FSTypeKey] = m.FSType
	}
	if v.VolumeType == "ThickProvisioned" {
		out.Parameters[ParamProvisioning] = "thick"
	}
	mode := volname.AttachmentMode(m.Modes)
	for _, s := range v.MappedSdcInfo {
		out.Attachments = append(out.Attachments, backends.Attachment{Node: s.SdcID, Mode: mode, ReadOnly: s.AccessMode == "ReadOnly", ByNode: m.ByNode})
	}
	return out
}

func notFound(id string) error {
	return fmt.Errorf("volume %s: %w", id, backends.ErrNotFound)
}

// volume reads one of this backend's volumes.
func (b *Backend) get(ctx context.Context, id string) (*volume, *backends.Volume, error) {
	if !volumeIDRE.MatchString(id) {
		return nil, nil, notFound(id)
	}
	p, err := b.resolve(ctx)
	if err != nil {
		return nil, nil, err
	}
	raw, err := b.c.volume(ctx, id)
	if err != nil {
		return nil, nil, mapErr(err, "read volume "+id)
	}
	v := b.toVolume(raw, p.pool)
	if v == nil {
		return nil, nil, notFound(id)
	}
	return raw, v, nil
}

// Get implements backends.Backend.
func (b *Backend) Get(ctx context.Context, id string) (*backends.Volume, error) {
	_, v, err := b.get(ctx, id)
	if err != nil {
		return nil, err
	}
	p, err := b.resolve(ctx)
	if err != nil {
		return nil, err
	}
	return v, b.withNodes(ctx, p.system, v)
}

// List implements backends.Backend.
func (b *Backend) List(ctx context.Context) ([]*backends.Volume, error) {
	p, all, err := b.poolVolumes(ctx)
	if err != nil {
		return nil, err
	}
	var out []*backends.Volume
	for i := range all {
		if v := b.toVolume(&all[i], p.pool); v != nil {
			out = append(out, v)
		}
	}
	if err := b.withNodes(ctx, p.system, out...); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// poolVolumes reads every volume of the gateway, with the placement that
// tells this backend's pool.
func (b *Backend) poolVolumes(ctx context.Context) (placement, []volume, error) {
	p, err := b.resolve(ctx)
	if err != nil {
		return p, nil, err
	}
	all, err := b.c.volumes(ctx)
	return p, all, mapErr(err, "list volumes")
}

// findByKey finds the volume (or snapshot) whose name has key, whatever
// its mark says now.
func (b *Backend) findByKey(ctx context.Context, key string) (*volume, error) {
	all, err := b.c.volumes(ctx)
	if err != nil {
		return nil, mapErr(err, "list volumes")
	}
	return volname.Find(all, func(v *volume) string { return v.Name }, key), nil
}

// Create implements backends.Backend.
func (b *Backend) Create(ctx context.Context, req backends.CreateRequest) (*backends.Volume, error) {
	size, err := allocate(req.RequiredBytes, req.LimitBytes)
	if err != nil {
		return nil, err
	}
	thin := !b.cfg.Thick
	switch req.Parameters[ParamProvisioning] {
	case "":
	case "thin":
		thin = true
	case "thick":
		thin = false
	default:
		return nil, fmt.Errorf("%w: parameter provisioning=%q: want thin or thick", backends.ErrInvalid, req.Parameters[ParamProvisioning])
	}
	p, err := b.resolve(ctx)
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

	existing, err := b.createOrFind(ctx, p, req, m, size, thin)
	if err != nil {
		return nil, err
	}
	if existing.SizeInKb*kib < size && (req.SourceSnapshot != "" || req.SourceVolume != "") {
		// A clone starts at its source's size.
		if err := b.setSize(ctx, existing.ID, size); err != nil {
			return nil, err
		}
		if existing, err = b.c.volume(ctx, existing.ID); err != nil {
			return nil, mapErr(err, "read volume "+existing.ID)
		}
	}
	v := b.toVolume(existing, p.pool)
	if v == nil {
		return nil, fmt.Errorf("%w: the name of volume %s (%q) belongs to a snapshot or another pool", backends.ErrAlreadyExists, existing.ID, existing.Name)
	}
	v.SourceSnapshot, v.SourceVolume = req.SourceSnapshot, req.SourceVolume
	if err := compatible(v, req, size, thin); err != nil {
		return nil, err
	}
	return v, nil
}

// createNamed creates a volume; when the gateway says the name is taken
// (another controller, or an attempt whose answer was lost), it returns the
// volume of that name.
func (b *Backend) createNamed(ctx context.Context, p placement, name string, size int64, thin bool) (string, error) {
	id, err := b.c.createVolume(ctx, p.pd, p.pool, name, size/kib, thin)
	if err == nil {
		fault.Point("scaleio.create.requested")
	}
	if isAPI(err, msgNameInUse) {
		id, err = b.holderOf(ctx, name)
	}
	return id, mapErr(err, "create volume "+name)
}

// errNameFreed is UNAVAILABLE so that, where no caller looks again, the
// CO retries; NOT_FOUND would say a create's source is missing.
var errNameFreed = fmt.Errorf("%w: the volume that held the name was deleted meanwhile; retry", backends.ErrUnavailable)

// holderOf returns the id of the volume named name, after the gateway
// refused that name as taken. The name lock is this process's only, so
// another controller may have deleted that volume in between: then the
// name is free again and the answer is errNameFreed.
func (b *Backend) holderOf(ctx context.Context, name string) (string, error) {
	id, err := b.c.volumeIDByName(ctx, name)
	if errors.Is(mapErr(err, ""), backends.ErrNotFound) {
		return "", errNameFreed
	}
	return id, err
}

func compatible(v *backends.Volume, req backends.CreateRequest, size int64, thin bool) error {
	switch {
	case v.CapacityBytes < size || (req.LimitBytes > 0 && v.CapacityBytes > req.LimitBytes):
		return fmt.Errorf("%w: volume %q (%s) exists with %d bytes, outside the requested range %d..%d",
			backends.ErrAlreadyExists, req.Name, v.ID, v.CapacityBytes, req.RequiredBytes, req.LimitBytes)
	case v.Block != req.Block:
		return fmt.Errorf("%w: volume %q (%s) exists with block=%t", backends.ErrAlreadyExists, req.Name, v.ID, v.Block)
	case v.Parameters[params.FSTypeKey] != params.FSType(req.Parameters):
		return fmt.Errorf("%w: volume %q (%s) exists with fsType %q", backends.ErrAlreadyExists, req.Name, v.ID, v.Parameters[params.FSTypeKey])
	case (v.Parameters[ParamProvisioning] == "thick") == thin:
		return fmt.Errorf("%w: volume %q (%s) exists with other provisioning", backends.ErrAlreadyExists, req.Name, v.ID)
	case !sameModes(v.Modes, req.Modes):
		return fmt.Errorf("%w: volume %q (%s) exists for access modes %v", backends.ErrAlreadyExists, req.Name, v.ID, v.Modes)
	}
	return nil
}

func sameModes(a, b []backends.AccessMode) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// Delete implements backends.Backend.
func (b *Backend) Delete(ctx context.Context, id string) error {
	raw, v, err := b.get(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	if len(raw.MappedSdcInfo) > 0 {
		return fmt.Errorf("%w: volume %s is mapped to SDC %s; unpublish it first", backends.ErrInUse, id, raw.MappedSdcInfo[0].SdcID)
	}
	return b.remove(ctx, v.ID)
}

func (b *Backend) remove(ctx context.Context, id string) error {
	err := b.c.volumeAction(ctx, id, "removeVolume", map[string]string{"removeMode": "ONLY_ME"})
	if err = mapErr(err, "remove volume "+id); err != nil && !isNotFound(err) {
		return err
	}
	fault.Point("scaleio.remove.requested")
	b.log.Info("volume removed", zapVolume(id, ""))
	return nil
}

// rename records new metadata in a volume's name.
func (b *Backend) rename(ctx context.Context, id string, m volname.Meta) error {
	if err := b.c.volumeAction(ctx, id, "setVolumeName", map[string]string{"newName": m.Name()}); err != nil {
		return mapErr(err, "rename volume "+id)
	}
	fault.Point("scaleio.renamed")
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
	return b.rename(ctx, id, m)
}

func (b *Backend) setSize(ctx context.Context, id string, size int64) error {
	gib := size >> 30
	return mapErr(b.c.volumeAction(ctx, id, "setVolumeSize", map[string]string{"sizeInGB": fmt.Sprint(gib)}), "resize volume "+id)
}

// Expand implements backends.Expander.
func (b *Backend) Expand(ctx context.Context, id string, requiredBytes, limitBytes int64) (int64, error) {
	size, err := allocate(requiredBytes, limitBytes)
	if err != nil {
		return 0, err
	}
	_, v, err := b.get(ctx, id)
	if err != nil {
		return 0, err
	}
	if v.CapacityBytes >= size {
		return v.CapacityBytes, nil
	}
	if err := b.setSize(ctx, id, size); err != nil {
		return 0, err
	}
	return size, nil
}

// Capacity implements backends.Backend from the pool's statistics.
func (b *Backend) Capacity(ctx context.Context, _ map[string]string) (int64, error) {
	p, err := b.resolve(ctx)
	if err != nil {
		return 0, err
	}
	used, limit, err := b.c.poolStats(ctx, p.pool)
	if err != nil {
		return 0, mapErr(err, "pool statistics")
	}
	free := (limit - used) * kib
	if free < 0 {
		free = 0
	}
	return free, nil
}

// createOrFind returns the volume named by m.Key, making it if there is
// none. The name lock is this process's only: another controller may
// delete by id the volume found or just made before it is read, or the
// volume that held the name when the gateway refused it. Then the
// name is free again, so it tries once more before answering UNAVAILABLE;
// never NOT_FOUND, which for a create would say its source is missing.
func (b *Backend) createOrFind(ctx context.Context, p placement, req backends.CreateRequest, m volname.Meta, size int64, thin bool) (*volume, error) {
	for attempt := 0; attempt < 3; attempt++ {
		existing, err := b.findByKey(ctx, m.Key)
		if err != nil {
			return nil, err
		}
		if existing != nil {
			return existing, nil
		}
		var id string
		if req.SourceSnapshot != "" || req.SourceVolume != "" {
			id, err = b.cloneFrom(ctx, p, req, m)
		} else {
			id, err = b.createNamed(ctx, p, m.Name(), size, thin)
		}
		if errors.Is(err, errNameFreed) {
			continue
		}
		if err != nil {
			return nil, err
		}
		existing, err = b.c.volume(ctx, id)
		if errors.Is(mapErr(err, ""), backends.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, mapErr(err, "read new volume "+id)
		}
		b.log.Info("volume created", zapVolume(id, existing.Name))
		return existing, nil
	}
	return nil, fmt.Errorf("%w: volume %q was deleted while it was being created; retry", backends.ErrUnavailable, m.Name())
}
