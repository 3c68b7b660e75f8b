package ebs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/fault"
)

// errForeign marks a volume that exists but lacks this cluster's tag.
var errForeign = errors.New("not tagged for this cluster")

func notFound(id string) error {
	return fmt.Errorf("volume %q: %w", id, backends.ErrNotFound)
}

// escapeFilter escapes the EC2 filter wildcards, so a name holding '*' or
// '?' matches only itself.
func escapeFilter(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`)
	return r.Replace(s)
}

func tagMap(ts []types.Tag) map[string]string {
	m := make(map[string]string, len(ts))
	for _, t := range ts {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func ec2Tags(m map[string]string) []types.Tag {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]types.Tag, 0, len(m))
	for _, k := range keys {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

func gone(state types.VolumeState) bool {
	return state == types.VolumeStateDeleting || state == types.VolumeStateDeleted
}

// describeVolume returns the volume if it exists, is not being deleted and
// carries this cluster's tag; ErrNotFound otherwise (wrapping errForeign
// for another cluster's volume). Concurrent calls share DescribeVolumes
// calls (batch.go).
func (b *Backend) describeVolume(ctx context.Context, id string) (*types.Volume, error) {
	if !volumeIDRE.MatchString(id) {
		return nil, notFound(id)
	}
	v, err := b.describes.describe(ctx, id)
	if err != nil {
		return nil, mapErr(err, "describe volume "+id)
	}
	if v == nil || gone(v.State) {
		return nil, notFound(id)
	}
	if tagMap(v.Tags)[TagCluster] != b.cluster {
		return nil, fmt.Errorf("volume %s %w %q (tag %s); this backend leaves it alone: %w", id, errForeign, b.cluster, TagCluster, backends.ErrNotFound)
	}
	return v, nil
}

// attachmentTag is the plugin's record of the current attachment.
type attachmentTag struct {
	instance string
	mode     backends.AccessMode
	readOnly bool
	byNode   bool
	node     string // the CO's node id
}

func (a attachmentTag) String() string {
	rw, by := "rw", "controller"
	if a.readOnly {
		rw = "ro"
	}
	if a.byNode {
		by = "node"
	}
	return strings.Join([]string{a.instance, a.mode.String(), rw, by, a.node}, " ")
}

func parseAttachmentTag(s string) (attachmentTag, bool) {
	f := strings.SplitN(s, " ", 5)
	if len(f) != 5 || !instanceIDRE.MatchString(f[0]) {
		return attachmentTag{}, false
	}
	m, ok := backends.ParseAccessMode(f[1])
	if !ok {
		return attachmentTag{}, false
	}
	return attachmentTag{instance: f[0], mode: m, readOnly: f[2] == "ro", byNode: f[3] == "node", node: f[4]}, true
}

// ec2Attachment returns the EC2 attachment of v to instance, if any.
func ec2Attachment(v *types.Volume, instance string) (types.VolumeAttachment, bool) {
	for _, a := range v.Attachments {
		if aws.ToString(a.InstanceId) == instance {
			return a, true
		}
	}
	return types.VolumeAttachment{}, false
}

// toVolume converts an EC2 volume. Attachments name the CO's node id when
// the plugin recorded it, else the instance id (or this plugin's node id
// for its own instance).
func (b *Backend) toVolume(v *types.Volume) *backends.Volume {
	out, _ := b.convert(v)
	return out
}

// convert is toVolume that also returns the instance of each attachment.
func (b *Backend) convert(v *types.Volume) (*backends.Volume, []string) {
	var insts []string
	tags := tagMap(v.Tags)
	out := &backends.Volume{
		ID:            aws.ToString(v.VolumeId),
		Name:          tags[TagName],
		CapacityBytes: gib(aws.ToInt32(v.Size)),
		Block:         tags[TagAccess] == "block",
		Formatted:     tags[TagFormatted],
		Zone:          aws.ToString(v.AvailabilityZone),
	}
	switch src := tags[TagSource]; {
	case snapshotIDRE.MatchString(src):
		out.SourceSnapshot = src
	case volumeIDRE.MatchString(src):
		out.SourceVolume = src
	}
	for k, val := range tags {
		if p, ok := strings.CutPrefix(k, TagParamPrefix); ok {
			if out.Parameters == nil {
				out.Parameters = map[string]string{}
			}
			out.Parameters[p] = val
		}
	}
	for _, s := range strings.Split(tags[TagModes], ",") {
		if m, ok := backends.ParseAccessMode(s); ok {
			out.Modes = append(out.Modes, m)
		}
	}
	rec, recOK := parseAttachmentTag(tags[TagAttachment])
	for _, a := range v.Attachments {
		inst := aws.ToString(a.InstanceId)
		if a.State == types.VolumeAttachmentStateDetached {
			continue
		}
		att := backends.Attachment{Node: b.nodeNameOf(inst), Mode: backends.SingleNodeWriter}
		if recOK && rec.instance == inst {
			att = backends.Attachment{Node: rec.node, Mode: rec.mode, ReadOnly: rec.readOnly, ByNode: rec.byNode}
		}
		out.Attachments = append(out.Attachments, att)
		insts = append(insts, inst)
	}
	return out, insts
}

// token derives the CreateVolume ClientToken (64 hex characters) from the
// cluster, the name and a generation, bumped when EC2 has burnt a token.
func (b *Backend) token(name string, gen int) string {
	sum := sha256.Sum256([]byte(b.cluster + "\x00" + name + "\x00" + strconv.Itoa(gen)))
	return hex.EncodeToString(sum[:])
}

// findByName returns this cluster's live volume called name, if any.
func (b *Backend) findByName(ctx context.Context, name string) (*types.Volume, error) {
	in := &ec2.DescribeVolumesInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + TagName), Values: []string{escapeFilter(name)}},
		{Name: aws.String("tag:" + TagCluster), Values: []string{escapeFilter(b.cluster)}},
	}}
	var found []types.Volume
	p := ec2.NewDescribeVolumesPaginator(b.ec2, in)
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, mapErr(err, "look up volume named "+strconv.Quote(name))
		}
		for _, v := range out.Volumes {
			t := tagMap(v.Tags)
			if t[TagName] == name && t[TagCluster] == b.cluster && !gone(v.State) {
				found = append(found, v)
			}
		}
	}
	if len(found) == 0 {
		return nil, nil
	}
	sort.Slice(found, func(i, j int) bool {
		return aws.ToTime(found[i].CreateTime).Before(aws.ToTime(found[j].CreateTime))
	})
	if len(found) > 1 {
		b.log.Warn("several volumes carry one name; using the oldest", zap.String("name", name), zap.String("id", aws.ToString(found[0].VolumeId)), zap.Int("count", len(found)))
	}
	return &found[0], nil
}

// Create implements backends.Backend. It is idempotent twice over: a
// volume already tagged with the name is returned (or refused as
// ErrAlreadyExists when it differs), and the ClientToken derived from the
// name makes EC2 itself answer a retried CreateVolume, whose first answer
// was lost, with the same volume.
func (b *Backend) Create(ctx context.Context, req backends.CreateRequest) (*backends.Volume, error) {
	if req.Name == "" {
		return nil, invalidf("a volume name is required")
	}
	if len(req.Name) > 256 {
		return nil, invalidf("volume name is longer than the 256 characters an EC2 tag holds")
	}
	s, err := b.parseSpec(req.Parameters)
	if err != nil {
		return nil, err
	}
	size, err := s.sizeGiB(req.RequiredBytes, req.LimitBytes)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.performance(size, b.cfg.CapIOPS); err != nil {
		return nil, err
	}
	tags := map[string]string{}
	maps.Copy(tags, b.cfg.Tags)
	maps.Copy(tags, s.tags)
	if len(tags) > 30 {
		return nil, invalidf("%d user tags (configuration and parameter together): at most 30", len(tags))
	}
	for k, v := range req.Parameters {
		if len(v) > 256 || len(TagParamPrefix+k) > 128 {
			return nil, invalidf("parameter %s: EBS keeps parameters as tags, whose values hold at most 256 characters", k)
		}
		tags[TagParamPrefix+k] = v
	}
	tags[TagName] = req.Name
	tags[TagCluster] = b.cluster
	tags[TagAccess] = "mount"
	if req.Block {
		tags[TagAccess] = "block"
	}
	var src *source
	if req.SourceSnapshot != "" || req.SourceVolume != "" {
		if src, err = b.resolveSource(ctx, req); err != nil {
			return nil, err
		}
		tags[TagSource] = src.id
		if size < src.sizeGiB {
			if req.LimitBytes > 0 && gib(src.sizeGiB) > req.LimitBytes {
				return nil, fmt.Errorf("%w: the source %s holds %d GiB, above the limit of %d bytes", backends.ErrOutOfRange, src.id, src.sizeGiB, req.LimitBytes)
			}
			size = src.sizeGiB
		}
		if src.formatted != "" {
			tags[TagFormatted] = src.formatted
		}
	}
	if len(req.Modes) > 0 {
		ms := make([]string, 0, len(req.Modes))
		for _, m := range req.Modes {
			if m.MultiNode() {
				return nil, invalidf("access mode %s: EBS volumes attach to one node at a time here", m)
			}
			ms = append(ms, m.String())
		}
		tags[TagModes] = strings.Join(ms, ",")
	}

	unlock, err := b.locks.Lock(ctx, "name:"+req.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()

	if v, err := b.findByName(ctx, req.Name); err != nil {
		return nil, err
	} else if v != nil {
		if err := compatible(b.toVolume(v), req, size); err != nil {
			return nil, err
		}
		return b.waitAvailable(ctx, aws.ToString(v.VolumeId), true)
	}

	zone, err := b.pickZone(ctx, req.Zones)
	if err != nil {
		return nil, err
	}
	iops, throughput, err := s.performance(size, b.cfg.CapIOPS)
	if err != nil {
		return nil, err // checked above at a size no larger
	}
	b.sweepOnce(ctx)
	if src != nil && src.volume != "" && zone == src.zone && !b.noCopy.Load() {
		// A clone in the source's zone: EC2 copies the volume itself.
		in := &ec2.CopyVolumesInput{
			SourceVolumeId:    aws.String(src.volume),
			Size:              aws.Int32(size),
			VolumeType:        types.VolumeType(s.volType),
			Iops:              positiveOrNil(iops),
			Throughput:        positiveOrNil(throughput),
			Encrypted:         s.encryptedFlag(),
			KmsKeyId:          s.kmsKey(),
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeVolume, Tags: ec2Tags(tags)}},
		}
		v, err := b.createWithTokens(ctx, req, size, "copy", func(token string) (string, types.VolumeState, error) {
			in.ClientToken = aws.String(token)
			out, err := b.ec2.CopyVolumes(ctx, in)
			fault.Point("ebs.create.requested")
			if err != nil {
				return "", "", err
			}
			if len(out.Volumes) != 1 {
				return "", "", fmt.Errorf("%w: CopyVolumes answered %d volumes, not 1", backends.ErrUnavailable, len(out.Volumes))
			}
			return aws.ToString(out.Volumes[0].VolumeId), out.Volumes[0].State, nil
		})
		if !errors.Is(err, errUnsupportedCall) {
			return v, err
		}
		b.noCopy.Store(true)
		b.log.Info("CopyVolumes is not offered here; cloning through a temporary snapshot", zap.Error(err))
	}
	if src != nil && src.volume != "" {
		// Clone through a temporary snapshot, deleted on every way out:
		// once the volume is made from it, or when the create gives up.
		b.sweepTemporary(ctx)
		snap, err := b.snapshot(ctx, src.volume, cloneSnapshotName(req.Name), nil, true)
		if err != nil {
			return nil, err
		}
		defer b.dropTemporary(ctx, snap.ID)
		if src.snapshot, err = b.waitSnapshot(ctx, snap.ID); err != nil {
			return nil, err
		}
	}
	in := &ec2.CreateVolumeInput{
		AvailabilityZone:  aws.String(zone),
		Size:              aws.Int32(size),
		VolumeType:        types.VolumeType(s.volType),
		Iops:              positiveOrNil(iops),
		Throughput:        positiveOrNil(throughput),
		Encrypted:         s.encryptedFlag(),
		KmsKeyId:          s.kmsKey(),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeVolume, Tags: ec2Tags(tags)}},
	}
	if src != nil {
		in.SnapshotId = aws.String(src.snapshot)
	}
	return b.createWithTokens(ctx, req, size, "", func(token string) (string, types.VolumeState, error) {
		in.ClientToken = aws.String(token)
		out, err := b.ec2.CreateVolume(ctx, in)
		fault.Point("ebs.create.requested")
		if err != nil {
			return "", "", err
		}
		return aws.ToString(out.VolumeId), out.State, nil
	})
}

// errUnsupportedCall: EC2 does not offer the call here (CopyVolumes in a
// region without it).
var errUnsupportedCall = errors.New("call not offered in this region")

// createWithTokens calls create with the client tokens of req.Name in turn
// (the tokens of another kind of call, such as "copy", are apart) until EC2
// makes a volume, then waits until it is available. Errors of create come
// back wrapped once around the EC2 error.
func (b *Backend) createWithTokens(ctx context.Context, req backends.CreateRequest, size int32, kind string, create func(token string) (string, types.VolumeState, error)) (*backends.Volume, error) {
	var id string
	for gen := 1; gen <= maxTokenGenerations && id == ""; gen++ {
		vid, state, err := create(b.token(kind+req.Name, gen))
		switch apiCode(err) {
		case "IdempotentParameterMismatch", "VolumeLimitExceeded":
			// A mismatch: the token was used with other parameters, by a
			// volume of this name that is gone or by a create racing this
			// one. Over the quota: perhaps because an earlier attempt of
			// this very create, whose answer was lost, made the volume.
			// Either way the name is looked up before anything else.
			if v, ferr := b.findByName(ctx, req.Name); ferr != nil {
				return nil, ferr
			} else if v != nil {
				if err := compatible(b.toVolume(v), req, size); err != nil {
					return nil, err
				}
				return b.waitAvailable(ctx, aws.ToString(v.VolumeId), true)
			}
			if apiCode(err) == "IdempotentParameterMismatch" {
				continue
			}
		}
		if c := apiCode(err); c == "UnsupportedOperation" || c == "InvalidAction" {
			return nil, fmt.Errorf("%w: %v", errUnsupportedCall, mapErr(err, "create volume "+strconv.Quote(req.Name)))
		}
		if err != nil {
			return nil, mapErr(err, "create volume "+strconv.Quote(req.Name))
		}
		if gone(state) {
			continue // the token belongs to a volume of this name that was deleted
		}
		id = vid
	}
	if id == "" {
		return nil, fmt.Errorf("%w: create volume %q: the %d client tokens this plugin derives for the name are all used up by earlier creates that failed in EC2 "+
			"(a KMS key it may not use, for example) or by volumes of this name created and deleted with other parameters; "+
			"EC2 forgets client tokens after some hours: fix the cause and retry then, or use another name", backends.ErrLimit, req.Name, maxTokenGenerations)
	}
	b.log.Info("volume created", zap.String("id", id), zap.Int32("GiB", size), zap.String("name", req.Name))
	return b.waitAvailable(ctx, id, false)
}

// compatible decides whether an existing volume answers req.
func compatible(v *backends.Volume, req backends.CreateRequest, size int32) error {
	switch {
	case v.CapacityBytes < req.RequiredBytes || (req.LimitBytes > 0 && v.CapacityBytes > req.LimitBytes):
		return fmt.Errorf("%w: volume %q (%s) exists with %d bytes, outside the requested range %d..%d",
			backends.ErrAlreadyExists, req.Name, v.ID, v.CapacityBytes, req.RequiredBytes, req.LimitBytes)
	case req.RequiredBytes == 0 && req.LimitBytes == 0 && v.CapacityBytes != gib(size):
		return fmt.Errorf("%w: volume %q (%s) exists with %d bytes, not the default %d",
			backends.ErrAlreadyExists, req.Name, v.ID, v.CapacityBytes, gib(size))
	case !maps.Equal(v.Parameters, req.Parameters) && (len(v.Parameters) > 0 || len(req.Parameters) > 0):
		return fmt.Errorf("%w: volume %q (%s) exists with parameters %v", backends.ErrAlreadyExists, req.Name, v.ID, v.Parameters)
	case v.Block != req.Block:
		return fmt.Errorf("%w: volume %q (%s) exists with block=%t", backends.ErrAlreadyExists, req.Name, v.ID, v.Block)
	case v.SourceSnapshot != req.SourceSnapshot || v.SourceVolume != req.SourceVolume:
		return fmt.Errorf("%w: volume %q (%s) exists with another content source", backends.ErrAlreadyExists, req.Name, v.ID)
	}
	return nil
}

// maxTokenGenerations bounds how many client tokens one create walks
// through. Each failed asynchronous create burns one, and EC2 keeps burnt
// tokens for hours, so the bound is well above what repeated retries of a
// failing create reach, and the walk costs one call per burnt token.
const maxTokenGenerations = 64

// waitAvailable waits until a new volume leaves "creating". Until EC2 has
// described the volume once (seen), InvalidVolume.NotFound is its eventual
// consistency, not an answer: EC2 documents that a volume just created may
// not be described yet.
func (b *Backend) waitAvailable(ctx context.Context, id string, seen bool) (*backends.Volume, error) {
	var vol *types.Volume
	err := b.wait(ctx, 4*b.attachWait, "volume "+id+" to become available", func() (bool, error) {
		v, err := b.describeVolume(ctx, id)
		if errors.Is(err, backends.ErrNotFound) && !errors.Is(err, errForeign) {
			if !seen {
				return false, nil
			}
			return false, fmt.Errorf("volume %s disappeared while it was being created (EC2 deletes a volume whose KMS key it cannot use): %w", id, backends.ErrInvalid)
		}
		if err != nil {
			return false, retryable(err)
		}
		seen = true
		switch v.State {
		case types.VolumeStateAvailable, types.VolumeStateInUse:
			vol = v
			return true, nil
		case types.VolumeStateError:
			return false, fmt.Errorf("volume %s is in state error", id)
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return b.toVolume(vol), nil
}

// pickZone: the caller's first zone, else the configured one, else this
// node's, else the region's first available zone.
func (b *Backend) pickZone(ctx context.Context, zones []string) (string, error) {
	if len(zones) > 0 && zones[0] != "" {
		return zones[0], nil
	}
	if b.cfg.Zone != "" {
		return b.cfg.Zone, nil
	}
	b.selfMu.Lock()
	z, tried := b.selfZone, b.zoneTried
	b.zoneTried = true
	b.selfMu.Unlock()
	if z != "" {
		return z, nil
	}
	if !tried {
		if z, err := b.NodeZone(ctx); err == nil {
			return z, nil
		}
	}
	out, err := b.ec2.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{
		Filters: []types.Filter{{Name: aws.String("state"), Values: []string{"available"}}},
	})
	if err != nil {
		return "", mapErr(err, "pick an availability zone")
	}
	var names []string
	for _, z := range out.AvailabilityZones {
		if z.ZoneType == nil || aws.ToString(z.ZoneType) == "availability-zone" {
			names = append(names, aws.ToString(z.ZoneName))
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("%w: the region has no available zone", backends.ErrUnavailable)
	}
	sort.Strings(names)
	return names[0], nil
}

// Delete implements backends.Backend.
func (b *Backend) Delete(ctx context.Context, id string) error {
	unlock, err := b.locks.Lock(ctx, "vol:"+id)
	if err != nil {
		return err
	}
	defer unlock()
	v, err := b.describeVolume(ctx, id)
	if errors.Is(err, errForeign) {
		b.log.Warn("delete of a volume without this cluster's tag: left alone", zap.String("id", id))
		return nil
	}
	if errors.Is(err, backends.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var on []string
	for _, a := range v.Attachments {
		if a.State != types.VolumeAttachmentStateDetached {
			on = append(on, aws.ToString(a.InstanceId)+" ("+string(a.State)+")")
		}
	}
	if len(on) > 0 {
		return fmt.Errorf("%w: volume %s is attached to %s; unpublish it first", backends.ErrInUse, id, strings.Join(on, ", "))
	}
	_, err = b.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(id)})
	fault.Point("ebs.delete.requested")
	if err = mapErr(err, "delete volume "+id); errors.Is(err, backends.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	b.log.Info("volume deleted", zap.String("id", id))
	return nil
}

// Get implements backends.Backend.
func (b *Backend) Get(ctx context.Context, id string) (*backends.Volume, error) {
	v, err := b.describeVolume(ctx, id)
	if err != nil {
		return nil, err
	}
	return b.toVolume(v), nil
}

// List implements backends.Backend: this cluster's volumes, every page.
func (b *Backend) List(ctx context.Context) ([]*backends.Volume, error) {
	in := &ec2.DescribeVolumesInput{
		MaxResults: aws.Int32(b.pageSize),
		Filters:    []types.Filter{{Name: aws.String("tag:" + TagCluster), Values: []string{escapeFilter(b.cluster)}}},
	}
	var out []*backends.Volume
	p := ec2.NewDescribeVolumesPaginator(b.ec2, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, mapErr(err, "list volumes")
		}
		for i := range page.Volumes {
			v := &page.Volumes[i]
			if gone(v.State) || tagMap(v.Tags)[TagCluster] != b.cluster {
				continue
			}
			out = append(out, b.toVolume(v))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// MarkFormatted implements backends.Backend with the tag
// csi-libstorage/formatted.
func (b *Backend) MarkFormatted(ctx context.Context, id, fsType string) error {
	if fsType == "" || len(fsType) > 64 {
		return invalidf("format mark %q", fsType)
	}
	unlock, err := b.locks.Lock(ctx, "vol:"+id)
	if err != nil {
		return err
	}
	defer unlock()
	v, err := b.describeVolume(ctx, id)
	if err != nil {
		return err
	}
	switch cur := tagMap(v.Tags)[TagFormatted]; cur {
	case fsType:
		return nil
	case "":
	default:
		return fmt.Errorf("volume %s is already marked %q; refusing to mark it %q", id, cur, fsType)
	}
	return b.setTags(ctx, id, map[string]string{TagFormatted: fsType})
}

func (b *Backend) setTags(ctx context.Context, id string, tags map[string]string) error {
	_, err := b.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: ec2Tags(tags)})
	fault.Point("ebs.tags.written")
	return mapErr(err, "tag "+id)
}

func (b *Backend) dropTags(ctx context.Context, id string, keys ...string) error {
	ts := make([]types.Tag, 0, len(keys))
	for _, k := range keys {
		ts = append(ts, types.Tag{Key: aws.String(k)})
	}
	_, err := b.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{id}, Tags: ts})
	fault.Point("ebs.tags.removed")
	return mapErr(err, "untag "+id)
}

// NodeZone implements backends.NodeZoner: this instance's zone from IMDS.
func (b *Backend) NodeZone(ctx context.Context) (string, error) {
	b.selfMu.Lock()
	z := b.selfZone
	b.selfMu.Unlock()
	if z != "" {
		return z, nil
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := b.imds.GetMetadata(ictx, &imds.GetMetadataInput{Path: "placement/availability-zone"})
	if err != nil {
		return "", fmt.Errorf("%w: availability zone from instance metadata: %v", backends.ErrUnavailable, err)
	}
	defer out.Content.Close()
	buf := make([]byte, 256)
	n, _ := out.Content.Read(buf)
	z = strings.TrimSpace(string(buf[:n]))
	if z == "" {
		return "", fmt.Errorf("%w: instance metadata gave no availability zone", backends.ErrUnavailable)
	}
	b.selfMu.Lock()
	b.selfZone = z
	b.selfMu.Unlock()
	return z, nil
}
