package ebs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// Expand implements backends.Expander with ModifyVolume. It returns once
// the modification is "optimizing" (the new size is usable) or done.
func (b *Backend) Expand(ctx context.Context, id string, requiredBytes, limitBytes int64) (int64, error) {
	unlock, err := b.locks.Lock(ctx, "vol:"+id)
	if err != nil {
		return 0, err
	}
	defer unlock()
	v, err := b.describeVolume(ctx, id)
	if err != nil {
		return 0, err
	}
	s := &spec{volType: string(v.VolumeType)}
	if _, ok := volumeTypes[s.volType]; !ok {
		return 0, fmt.Errorf("%w: volume %s has type %q", backends.ErrUnsupported, id, s.volType)
	}
	want, err := s.sizeGiB(requiredBytes, limitBytes)
	if err != nil {
		return 0, err
	}
	cur := aws.ToInt32(v.Size)
	if pend, err := b.modification(ctx, id); err != nil {
		return 0, err
	} else if pend != nil && pend.ModificationState == types.VolumeModificationStateModifying {
		if aws.ToInt32(pend.TargetSize) >= want {
			return b.waitModified(ctx, id)
		}
		return 0, fmt.Errorf("%w: volume %s is being modified to %d GiB; retry when that is done", backends.ErrUnavailable, id, aws.ToInt32(pend.TargetSize))
	}
	if cur >= want {
		return gib(cur), nil
	}
	_, err = b.ec2.ModifyVolume(ctx, &ec2.ModifyVolumeInput{VolumeId: aws.String(id), Size: aws.Int32(want)})
	if err != nil {
		return 0, mapErr(err, "expand volume "+id)
	}
	b.log.Info("volume expanding", zap.String("id", id), zap.Int32("fromGiB", cur), zap.Int32("toGiB", want))
	return b.waitModified(ctx, id)
}

func (b *Backend) modification(ctx context.Context, id string) (*types.VolumeModification, error) {
	out, err := b.ec2.DescribeVolumesModifications(ctx, &ec2.DescribeVolumesModificationsInput{VolumeIds: []string{id}})
	if apiCode(err) == "InvalidVolumeModification.NotFound" {
		return nil, nil
	}
	if err != nil {
		return nil, mapErr(err, "modifications of "+id)
	}
	var last *types.VolumeModification
	for i := range out.VolumesModifications {
		m := &out.VolumesModifications[i]
		if last == nil || aws.ToTime(m.StartTime).After(aws.ToTime(last.StartTime)) {
			last = m
		}
	}
	return last, nil
}

func (b *Backend) waitModified(ctx context.Context, id string) (int64, error) {
	var size int64
	err := b.wait(ctx, 4*b.attachWait, "volume "+id+" to be resized", func() (bool, error) {
		m, err := b.modification(ctx, id)
		if err != nil {
			return false, err
		}
		if m == nil {
			return false, nil
		}
		switch m.ModificationState {
		case types.VolumeModificationStateOptimizing, types.VolumeModificationStateCompleted:
			size = gib(aws.ToInt32(m.TargetSize))
			return true, nil
		case types.VolumeModificationStateFailed:
			return false, fmt.Errorf("resize of volume %s failed: %s", id, aws.ToString(m.StatusMessage))
		}
		return false, nil
	})
	return size, err
}

// Snapshot parameters.
const ParamSnapshotTags = "tags"

// CreateSnapshot implements backends.Snapshotter. A snapshot of the same
// name for the same volume is returned again; for another volume it is
// ErrAlreadyExists. The snapshot carries the source's format mark, so a
// volume restored from it is never formatted over its data.
func (b *Backend) CreateSnapshot(ctx context.Context, sourceID, name string, params map[string]string) (*backends.Snapshot, error) {
	return b.snapshot(ctx, sourceID, name, params, false)
}

func cloneSnapshotName(volumeName string) string { return "clone-source-for/" + volumeName }

func (b *Backend) snapshot(ctx context.Context, sourceID, name string, params map[string]string, temporary bool) (*backends.Snapshot, error) {
	if name == "" || len(name) > 256 {
		return nil, invalidf("snapshot name: 1 to 256 characters")
	}
	tags := map[string]string{}
	maps.Copy(tags, b.cfg.Tags)
	for k, v := range params {
		if k != ParamSnapshotTags {
			return nil, invalidf("snapshot parameter %q is not known; this backend accepts %s", k, ParamSnapshotTags)
		}
		t, err := parseTags(v)
		if err != nil {
			return nil, err
		}
		maps.Copy(tags, t)
	}
	tags[TagSnapshotName] = name
	tags[TagCluster] = b.cluster
	if temporary {
		tags[TagTemporary] = "true"
	}
	unlock, err := b.locks.Lock(ctx, "snap:"+name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	snaps, err := b.describeSnapshots(ctx, []types.Filter{
		{Name: aws.String("tag:" + TagSnapshotName), Values: []string{escapeFilter(name)}},
	}, true)
	if err != nil {
		return nil, err
	}
	for _, s := range snaps {
		if s.Name != name {
			continue
		}
		if s.SourceID != sourceID {
			return nil, fmt.Errorf("%w: snapshot %q (%s) exists of volume %s", backends.ErrAlreadyExists, name, s.ID, s.SourceID)
		}
		return s, nil
	}
	v, err := b.describeVolume(ctx, sourceID)
	if err != nil {
		return nil, err
	}
	if f := tagMap(v.Tags)[TagFormatted]; f != "" {
		tags[TagFormatted] = f
	}
	out, err := b.ec2.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{
		VolumeId:          aws.String(sourceID),
		Description:       aws.String("csi-libstorage snapshot " + name),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeSnapshot, Tags: ec2Tags(tags)}},
	})
	if err != nil {
		return nil, mapErr(err, "snapshot volume "+sourceID)
	}
	b.log.Info("snapshot created", zap.String("id", aws.ToString(out.SnapshotId)), zap.String("volume", sourceID))
	return &backends.Snapshot{
		ID: aws.ToString(out.SnapshotId), SourceID: sourceID, Name: name,
		SizeBytes: gib(aws.ToInt32(out.VolumeSize)), CreatedAt: aws.ToTime(out.StartTime).Unix(),
		Ready: out.State == types.SnapshotStateCompleted,
	}, nil
}

// describeSnapshot returns this cluster's snapshot id, or ErrNotFound.
func (b *Backend) describeSnapshot(ctx context.Context, id string) (*types.Snapshot, error) {
	if !snapshotIDRE.MatchString(id) {
		return nil, fmt.Errorf("snapshot %q: %w", id, backends.ErrNotFound)
	}
	out, err := b.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}})
	if err != nil {
		return nil, mapErr(err, "describe snapshot "+id)
	}
	for i := range out.Snapshots {
		sn := &out.Snapshots[i]
		if aws.ToString(sn.SnapshotId) != id {
			continue
		}
		if tagMap(sn.Tags)[TagCluster] != b.cluster {
			return nil, fmt.Errorf("snapshot %s %w %q: %w", id, errForeign, b.cluster, backends.ErrNotFound)
		}
		return sn, nil
	}
	return nil, fmt.Errorf("snapshot %q: %w", id, backends.ErrNotFound)
}

// waitSnapshot waits until a snapshot is completed and returns its id.
func (b *Backend) waitSnapshot(ctx context.Context, id string) (string, error) {
	err := b.wait(ctx, 4*b.attachWait, "snapshot "+id+" to complete", func() (bool, error) {
		sn, err := b.describeSnapshot(ctx, id)
		if err != nil {
			return false, err
		}
		switch sn.State {
		case types.SnapshotStateCompleted:
			return true, nil
		case types.SnapshotStateError:
			return false, fmt.Errorf("snapshot %s failed: %s", id, aws.ToString(sn.StateMessage))
		}
		return false, nil
	})
	return id, err
}

// source is what a new volume is created from.
type source struct {
	id        string // as given: snap-… or vol-…
	volume    string // set for a clone of a volume
	snapshot  string // the snapshot EC2 creates the volume from
	sizeGiB   int32
	formatted string
	zone      string // of the source volume
}

// resolveSource checks a create request's content source.
func (b *Backend) resolveSource(ctx context.Context, req backends.CreateRequest) (*source, error) {
	if req.SourceVolume != "" {
		v, err := b.describeVolume(ctx, req.SourceVolume)
		if err != nil {
			return nil, fmt.Errorf("source volume: %w", err)
		}
		return &source{id: req.SourceVolume, volume: req.SourceVolume, sizeGiB: aws.ToInt32(v.Size), formatted: tagMap(v.Tags)[TagFormatted], zone: aws.ToString(v.AvailabilityZone)}, nil
	}
	sn, err := b.describeSnapshot(ctx, req.SourceSnapshot)
	if err != nil {
		return nil, fmt.Errorf("source snapshot: %w", err)
	}
	if sn.State == types.SnapshotStateError {
		return nil, invalidf("source snapshot %s is in state error", req.SourceSnapshot)
	}
	if _, err := b.waitSnapshot(ctx, req.SourceSnapshot); err != nil {
		return nil, err
	}
	return &source{id: req.SourceSnapshot, snapshot: req.SourceSnapshot, sizeGiB: aws.ToInt32(sn.VolumeSize), formatted: tagMap(sn.Tags)[TagFormatted]}, nil
}

// DefaultTemporaryGrace is how old a clone's temporary snapshot must be
// before a sweep deletes it: a clone in flight (in this process or an
// earlier one) uses it for minutes at most once it is completed.
const DefaultTemporaryGrace = time.Hour

// dropTemporary deletes a clone's temporary snapshot when the create that
// took it returns, however it returns. A snapshot a volume is still being
// created from is left to the sweep.
func (b *Backend) dropTemporary(ctx context.Context, id string) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := b.deleteSnapshot(dctx, id); err != nil {
		b.log.Info("temporary clone snapshot left for the next sweep", zap.String("snapshot", id), zap.Error(err))
	}
}

// sweepOnce sweeps the temporary snapshots once per process, at its first
// create: an earlier process may have died in the middle of a clone.
func (b *Backend) sweepOnce(ctx context.Context) {
	b.selfMu.Lock()
	done := b.swept
	b.swept = true
	b.selfMu.Unlock()
	if !done {
		b.sweepTemporary(ctx)
	}
}

// sweepTemporary deletes this cluster's temporary clone snapshots that are
// older than the grace: completed ones, whose clone has had ample time to
// use them, and any older than a day. Failures are only logged.
func (b *Backend) sweepTemporary(ctx context.Context) {
	snaps, err := b.describeSnapshots(ctx, []types.Filter{{Name: aws.String("tag:" + TagTemporary), Values: []string{"true"}}}, true)
	if err != nil {
		b.log.Info("temporary clone snapshots not swept", zap.Error(err))
		return
	}
	for _, sn := range snaps {
		age := time.Since(time.Unix(sn.CreatedAt, 0))
		if age < b.tempGrace || (!sn.Ready && age < 24*time.Hour) {
			continue
		}
		if err := b.deleteSnapshot(ctx, sn.ID); err != nil {
			b.log.Info("temporary clone snapshot not swept", zap.String("snapshot", sn.ID), zap.Error(err))
			continue
		}
		b.log.Info("temporary clone snapshot swept", zap.String("snapshot", sn.ID), zap.Duration("age", age))
	}
}

// DeleteSnapshot implements backends.Snapshotter; a missing snapshot is
// done, another cluster's is left alone.
func (b *Backend) DeleteSnapshot(ctx context.Context, id string) error {
	return b.deleteSnapshot(ctx, id)
}

func (b *Backend) deleteSnapshot(ctx context.Context, id string) error {
	_, err := b.describeSnapshot(ctx, id)
	if errors.Is(err, errForeign) {
		b.log.Warn("delete of a snapshot without this cluster's tag: left alone", zap.String("id", id))
		return nil
	}
	if errors.Is(err, backends.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = b.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
	if err = mapErr(err, "delete snapshot "+id); errors.Is(err, backends.ErrNotFound) {
		return nil
	}
	return err
}

// ListSnapshots implements backends.Snapshotter: this cluster's snapshots,
// sorted by id.
func (b *Backend) ListSnapshots(ctx context.Context) ([]*backends.Snapshot, error) {
	return b.describeSnapshots(ctx, nil, false)
}

// describeSnapshots lists this cluster's snapshots matching filters; the
// temporary ones clones take only with withTemporary.
func (b *Backend) describeSnapshots(ctx context.Context, filters []types.Filter, withTemporary bool) ([]*backends.Snapshot, error) {
	in := &ec2.DescribeSnapshotsInput{
		OwnerIds:   []string{"self"},
		MaxResults: aws.Int32(1000),
		Filters:    append([]types.Filter{{Name: aws.String("tag:" + TagCluster), Values: []string{escapeFilter(b.cluster)}}}, filters...),
	}
	var out []*backends.Snapshot
	p := ec2.NewDescribeSnapshotsPaginator(b.ec2, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, mapErr(err, "list snapshots")
		}
		for _, s := range page.Snapshots {
			t := tagMap(s.Tags)
			if t[TagCluster] != b.cluster || (t[TagTemporary] != "" && !withTemporary) {
				continue
			}
			out = append(out, &backends.Snapshot{
				ID: aws.ToString(s.SnapshotId), SourceID: aws.ToString(s.VolumeId), Name: t[TagSnapshotName],
				SizeBytes: gib(aws.ToInt32(s.VolumeSize)), CreatedAt: aws.ToTime(s.StartTime).Unix(),
				Ready: s.State == types.SnapshotStateCompleted,
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

var (
	_ backends.Backend           = (*Backend)(nil)
	_ backends.NodeZoner         = (*Backend)(nil)
	_ backends.NodeRegistrar     = (*Backend)(nil)
	_ backends.Expander          = (*Backend)(nil)
	_ backends.Snapshotter       = (*Backend)(nil)
	_ backends.NodeVolumeLimiter = (*Backend)(nil)
)
