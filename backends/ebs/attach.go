package ebs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/fault"
)

// selfInstance returns this node's instance id: the configured node id
// when it is one, else the instance id from IMDS (cached).
func (b *Backend) selfInstance(ctx context.Context) (string, error) {
	b.selfMu.Lock()
	inst := b.selfInst
	b.selfMu.Unlock()
	if inst != "" {
		return inst, nil
	}
	if instanceIDRE.MatchString(b.node) {
		inst = b.node
	} else {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		out, err := b.imds.GetMetadata(ictx, &imds.GetMetadataInput{Path: "instance-id"})
		if err != nil {
			return "", fmt.Errorf("%w: this node's instance id from instance metadata: %v", backends.ErrUnavailable, err)
		}
		raw, _ := io.ReadAll(io.LimitReader(out.Content, 256))
		out.Content.Close()
		inst = strings.TrimSpace(string(raw))
		if !instanceIDRE.MatchString(inst) {
			return "", fmt.Errorf("instance metadata gave %q, not an instance id", inst)
		}
	}
	b.selfMu.Lock()
	b.selfInst = inst
	b.selfMu.Unlock()
	return inst, nil
}

// nodeNameOf names an instance the way the CO knows it, as far as this
// process can tell without asking EC2: its own instance is its node id.
func (b *Backend) nodeNameOf(inst string) string {
	b.selfMu.Lock()
	defer b.selfMu.Unlock()
	if inst == b.selfInst && b.node != "" {
		return b.node
	}
	return inst
}

// instanceOf maps a CO node id to an instance id: an instance id is itself;
// this plugin's own node id is its instance (IMDS); any other id is looked
// up by the csi-libstorage/node-id tag its node service put on its
// instance at start, then as a private DNS name (nodename.go).
func (b *Backend) instanceOf(ctx context.Context, node string) (string, error) {
	switch {
	case node == "":
		return "", invalidf("a node id is required")
	case instanceIDRE.MatchString(node):
		return node, nil
	case node == b.node:
		return b.selfInstance(ctx)
	}
	out, err := b.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("tag:" + TagNodeID), Values: []string{escapeFilter(node)}},
	}})
	if err != nil {
		return "", mapErr(err, "find the instance of node "+node)
	}
	var found []string
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if tagMap(in.Tags)[TagNodeID] == node {
				found = append(found, aws.ToString(in.InstanceId))
			}
		}
	}
	switch len(found) {
	case 0:
		if inst, err := b.instanceByDNSName(ctx, node); err != nil || inst != "" {
			return inst, err
		}
		return "", fmt.Errorf("%w: node %q is neither an EC2 instance id, nor an instance's private DNS name, nor tagged %s on an instance (its node service tags its instance at start)", backends.ErrNodeNotFound, node, TagNodeID)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%w: node %q is tagged on several instances: %v", backends.ErrConflict, node, found)
}

// RegisterNode implements backends.NodeRegistrar. When the CO's node id is
// neither the instance id nor its private DNS name (a Mesos agent id), the
// node tags its instance with it so the controller can map
// ControllerPublish's node id to the instance.
// A failure to tag (no ec2:CreateTags on instances) is only logged: the
// node itself still maps its own id through IMDS.
func (b *Backend) RegisterNode(ctx context.Context, node string) error {
	inst, err := b.selfInstance(ctx)
	if err != nil {
		return err
	}
	if instanceIDRE.MatchString(node) {
		return nil
	}
	if len(node) > 256 || strings.ContainsAny(node, " \t\n") {
		return invalidf("node id %q: at most 256 characters without spaces", node)
	}
	if b.namedByHost(ctx, node) {
		b.log.Info("the node id is this instance's private DNS name, by which the controller finds it; no tag needed", zap.String("instance", inst), zap.String("node", node))
		return nil
	}
	_, err = b.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{inst}, Tags: []types.Tag{{Key: aws.String(TagNodeID), Value: aws.String(node)}}})
	if err != nil {
		b.log.Warn("could not tag this instance with its node id; ControllerPublish for it will fail, attaching from the node still works",
			zap.String("instance", inst), zap.String("node", node), zap.Error(mapErr(err, "tag instance")))
	}
	return nil
}

// allocator hands out device names per instance, never one in use there
// nor one another attach in this process is about to use.
type allocator struct {
	names    []string // the documented names, in the order tried
	mu       sync.Mutex
	inFlight map[string]map[string]bool // instance → suffix
	bad      map[string]map[string]bool // suffixes EC2 said were taken
}

func newAllocator(names []string) *allocator {
	return &allocator{names: names, inFlight: map[string]map[string]bool{}, bad: map[string]map[string]bool{}}
}

// xvdSuffixes are the two-letter names EC2 documents for EBS volumes on
// HVM and Nitro instances, /dev/xvd[a-c][a-z] and /dev/xvdd[a-x]: 102 of
// them, ending at /dev/xvddx, which is the last name AttachVolume accepts.
// They are tried from "ba" on, and the "a" row last: AMIs put the root
// device and instance stores at xvda and the single letters after it.
var xvdSuffixes = func() []string {
	var out []string
	for _, first := range "bcda" {
		for _, second := range "abcdefghijklmnopqrstuvwxyz" {
			if first == 'd' && second > 'x' {
				break
			}
			out = append(out, string(first)+string(second))
		}
	}
	return out
}()

// sdSuffixes are the /dev/sd names EC2 recommends for EBS volumes,
// /dev/sd[f-z]; /dev/sd with two letters is not a documented name.
var sdSuffixes = func() []string {
	var out []string
	for c := 'f'; c <= 'z'; c++ {
		out = append(out, string(c))
	}
	return out
}()

// suffixesFor returns the names tried for a device prefix.
func suffixesFor(prefix string) []string {
	if strings.HasSuffix(prefix, "/sd") {
		return sdSuffixes
	}
	return xvdSuffixes
}

// suffixOf returns "ba" for /dev/xvdba, /dev/sdba, xvdba or sdba.
func suffixOf(dev string) string {
	d := strings.TrimPrefix(dev, "/dev/")
	if s, ok := strings.CutPrefix(d, "xvd"); ok {
		return s
	}
	if s, ok := strings.CutPrefix(d, "sd"); ok {
		return s
	}
	return d
}

// take reserves a free suffix for instance, given the names EC2 reports in
// use there (the root device included) and how many volumes the instance
// takes (0: no known limit); names EC2 refused earlier are tried last.
func (al *allocator) take(instance string, inUse map[string]bool, limit int) (string, error) {
	al.mu.Lock()
	defer al.mu.Unlock()
	fl := al.inFlight[instance]
	if limit > 0 && len(inUse)+len(fl) >= limit {
		return "", fmt.Errorf("%w: instance %s takes at most %d volumes (its root volume included) and has %d attached or attaching; detach one, or set maxVolumesPerNode if the instance takes more",
			backends.ErrLimit, instance, limit, len(inUse)+len(fl))
	}
	if fl == nil {
		fl = map[string]bool{}
		al.inFlight[instance] = fl
	}
	var later string
	for _, s := range al.names {
		if inUse[s] || fl[s] {
			continue
		}
		if al.bad[instance][s] {
			if later == "" {
				later = s
			}
			continue
		}
		fl[s] = true
		return s, nil
	}
	if later != "" {
		fl[later] = true
		return later, nil
	}
	return "", fmt.Errorf("%w: no free device name left on instance %s: all %d names EC2 documents are in use", backends.ErrLimit, instance, len(al.names))
}

// markBad makes suffix a name tried last on instance.
func (al *allocator) markBad(instance, suffix string) {
	al.mu.Lock()
	defer al.mu.Unlock()
	if al.bad[instance] == nil {
		al.bad[instance] = map[string]bool{}
	}
	al.bad[instance][suffix] = true
}

func (al *allocator) release(instance, suffix string, bad bool) {
	al.mu.Lock()
	defer al.mu.Unlock()
	delete(al.inFlight[instance], suffix)
	if len(al.inFlight[instance]) == 0 {
		delete(al.inFlight, instance)
	}
	if bad {
		if al.bad[instance] == nil {
			al.bad[instance] = map[string]bool{}
		}
		al.bad[instance][suffix] = true
	}
}

// namesInUse lists the device suffixes EC2 reports on instance and how
// many volumes the instance takes (see volumeLimit).
func (b *Backend) namesInUse(ctx context.Context, instance string) (map[string]bool, int, error) {
	out, err := b.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instance}})
	if err != nil {
		return nil, 0, mapErr(err, "describe instance "+instance)
	}
	used := map[string]bool{}
	n, limit := 0, 0
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			n++
			if in.RootDeviceName != nil {
				used[suffixOf(aws.ToString(in.RootDeviceName))] = true
			}
			for _, m := range in.BlockDeviceMappings {
				used[suffixOf(aws.ToString(m.DeviceName))] = true
			}
			limit = b.volumeLimit(string(in.InstanceType), len(in.NetworkInterfaces), -1)
		}
	}
	if n == 0 {
		return nil, 0, fmt.Errorf("%w: instance %s", backends.ErrNodeNotFound, instance)
	}
	return used, limit, nil
}

// attach is Attach without the volume's description for the node
// (publish.go).
func (b *Backend) attach(ctx context.Context, id string, req backends.AttachRequest) (map[string]string, error) {
	if req.Mode.ReadOnly() {
		req.ReadOnly = true
	}
	if strings.ContainsAny(req.Node, " \t\n") || len(req.Node) > 200 {
		return nil, invalidf("node id %q: at most 200 characters without spaces", req.Node)
	}
	inst, err := b.instanceOf(ctx, req.Node)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", id, err)
	}
	unlock, err := b.locks.Lock(ctx, "vol:"+id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for {
		v, err := b.describeVolume(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("attach %s: %w", id, err)
		}
		if a, ok := ec2Attachment(v, inst); ok {
			switch a.State {
			case types.VolumeAttachmentStateDetaching:
				// Let a detach finish before attaching again.
				if err := b.waitDetached(ctx, id, inst); err != nil {
					return nil, err
				}
				continue
			case types.VolumeAttachmentStateBusy:
				return nil, inTransition(id, inst)
			}
		}
		vol, insts := b.convert(v)
		// CheckAttach must see this instance's attachment under the node
		// id of the request, whatever the record says.
		for i := range vol.Attachments {
			if insts[i] == inst {
				vol.Attachments[i].Node = req.Node
			}
		}
		done, err := backends.CheckAttach(vol, req)
		if held, ok := holderOf(v, inst); ok && errors.Is(err, backends.ErrConflict) {
			// Another instance holds it: it moves only if EC2 proves
			// that instance cannot write (takeover.go).
			if err := b.takeOver(ctx, v, inst, req, held); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("attach %s to %s: %w", id, req.Node, err)
		}
		rec := attachmentTag{instance: inst, mode: req.Mode, readOnly: req.ReadOnly, byNode: req.ByNode, node: req.Node}
		if !done {
			return b.attachNew(ctx, id, inst, rec, v)
		}
		a, _ := ec2Attachment(v, inst)
		if t := tagMap(v.Tags)[TagAttachment]; t == "" || !strings.HasPrefix(t, inst+" ") {
			// Attached before its record was written (or by hand): record it.
			if err := b.setTags(ctx, id, map[string]string{TagAttachment: rec.String()}); err != nil {
				return nil, err
			}
		}
		dev, err := b.waitAttached(ctx, id, inst, false)
		if errors.Is(err, errStuck) {
			// An earlier attach is stuck: abort it, and attach afresh
			// under another name.
			if err := b.abortAttach(ctx, id, inst, aws.ToString(a.Device)); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if dev == "" {
			dev = aws.ToString(a.Device)
		}
		return publishContext(id, dev), nil
	}
}

func publishContext(id, dev string) map[string]string {
	return map[string]string{PublishDevicePath: dev, PublishVolumeID: id}
}

func inTransition(id, inst string) error {
	return fmt.Errorf("%w: the attachment of volume %s to %s is busy (in transition in EC2); retry shortly", backends.ErrUnavailable, id, inst)
}

// errStuck: an attachment has stayed "attaching" longer than the abort
// bound; EC2 sometimes never completes one (often on a device name used
// before on the instance), so it is detached and retried on another name.
var errStuck = errors.New("attachment stuck in attaching")

// attachNew records the attachment, picks a device name and attaches.
func (b *Backend) attachNew(ctx context.Context, id, inst string, rec attachmentTag, v *types.Volume) (map[string]string, error) {
	if v.State != types.VolumeStateAvailable {
		return nil, fmt.Errorf("%w: volume %s is %s, not available", backends.ErrUnavailable, id, v.State)
	}
	// The record goes first: a crash after AttachVolume still leaves the
	// attachment described. A record without an EC2 attachment is ignored.
	if err := b.setTags(ctx, id, map[string]string{TagAttachment: rec.String()}); err != nil {
		return nil, err
	}
	for try := 0; try < 4; try++ {
		used, limit, err := b.namesInUse(ctx, inst)
		if err != nil {
			return nil, fmt.Errorf("attach %s: %w", id, err)
		}
		suffix, err := b.alloc.take(inst, used, limit)
		if err != nil {
			return nil, fmt.Errorf("attach %s: %w", id, err)
		}
		dev := b.prefix + suffix
		_, err = b.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(inst), Device: aws.String(dev)})
		fault.Point("ebs.attach.requested")
		if code := apiCode(err); code == "InvalidParameterValue" && strings.Contains(err.Error(), "already in use") {
			b.alloc.release(inst, suffix, true)
			b.log.Info("device name taken; trying another", zap.String("instance", inst), zap.String("device", dev))
			continue
		}
		if apiCode(err) == "VolumeInUse" {
			// Attached already, perhaps by an earlier call whose
			// attachment EC2 does not describe yet.
			b.alloc.release(inst, suffix, false)
			return b.attachedSomewhere(ctx, id, inst)
		}
		if err != nil {
			b.alloc.release(inst, suffix, false)
			return nil, mapErr(err, fmt.Sprintf("attach %s to %s", id, inst))
		}
		b.log.Info("attaching volume", zap.String("id", id), zap.String("instance", inst), zap.String("device", dev), zap.Bool("byNode", rec.byNode))
		got, err := b.waitAttached(ctx, id, inst, true)
		if errors.Is(err, errStuck) {
			b.alloc.release(inst, suffix, true)
			if err := b.abortAttach(ctx, id, inst, dev); err != nil {
				return nil, err
			}
			continue
		}
		b.alloc.release(inst, suffix, false)
		if err != nil {
			return nil, err
		}
		if got != "" {
			dev = got
		}
		return publishContext(id, dev), nil
	}
	return nil, fmt.Errorf("%w: attach %s to %s: every device name tried was taken or got stuck", backends.ErrUnavailable, id, inst)
}

// attachedSomewhere handles VolumeInUse from AttachVolume: it waits until
// EC2 describes the attachment, then finishes it when it is inst's and
// refuses it when it is another instance's.
func (b *Backend) attachedSomewhere(ctx context.Context, id, inst string) (map[string]string, error) {
	var owner, dev string
	err := b.wait(ctx, b.attachWait, fmt.Sprintf("EC2 to describe the attachment of volume %s", id), func() (bool, error) {
		v, err := b.describeVolume(ctx, id)
		if err != nil {
			return false, retryable(err)
		}
		for _, a := range v.Attachments {
			if a.State != types.VolumeAttachmentStateDetached {
				owner, dev = aws.ToString(a.InstanceId), aws.ToString(a.Device)
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	if owner != inst {
		return nil, fmt.Errorf("%w: volume %s is attached to instance %s", backends.ErrConflict, id, owner)
	}
	got, err := b.waitAttached(ctx, id, inst, false)
	if errors.Is(err, errStuck) {
		if err := b.abortAttach(ctx, id, inst, dev); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: attach %s to %s: the attachment got stuck and was aborted; retry", backends.ErrUnavailable, id, inst)
	}
	if err != nil {
		return nil, err
	}
	if got != "" {
		dev = got
	}
	return publishContext(id, dev), nil
}

// waitAttached waits for the attachment to reach "attached" and returns its
// device name. issued says this call has just asked for the attachment, so
// that EC2 not describing it yet is its eventual consistency, not a
// detach. An attachment "attaching" for longer than the abort bound gives
// errStuck.
func (b *Backend) waitAttached(ctx context.Context, id, inst string, issued bool) (string, error) {
	var dev string
	err := b.wait(ctx, b.attachWait, fmt.Sprintf("volume %s to attach to %s", id, inst), func() (bool, error) {
		v, err := b.describeVolume(ctx, id)
		if err != nil {
			return false, retryable(err)
		}
		a, ok := ec2Attachment(v, inst)
		switch {
		case !ok && issued:
			return false, nil
		case !ok:
			return false, fmt.Errorf("%w: volume %s: the attachment to %s disappeared while attaching", backends.ErrUnavailable, id, inst)
		}
		dev = aws.ToString(a.Device)
		switch a.State {
		case types.VolumeAttachmentStateAttached:
			return true, nil
		case types.VolumeAttachmentStateBusy:
			return false, inTransition(id, inst)
		case types.VolumeAttachmentStateDetaching, types.VolumeAttachmentStateDetached:
			return false, fmt.Errorf("%w: volume %s is being detached from %s while attaching; retry", backends.ErrUnavailable, id, inst)
		}
		if t := aws.ToTime(a.AttachTime); !t.IsZero() && time.Since(t) > b.abortAfter {
			return false, fmt.Errorf("volume %s on %s as %s since %s: %w", id, inst, dev, t.Format(time.RFC3339), errStuck)
		}
		return false, nil
	})
	return dev, err
}

// abortAttach force-detaches an attachment stuck in "attaching" (the
// instance never saw the device, so nothing can be lost), waits until it
// is gone and keeps dev off this instance's names for later attaches.
func (b *Backend) abortAttach(ctx context.Context, id, inst, dev string) error {
	b.log.Warn("attachment stuck in attaching: detaching it to retry on another device name",
		zap.String("id", id), zap.String("instance", inst), zap.String("device", dev), zap.Duration("after", b.abortAfter))
	b.alloc.markBad(inst, suffixOf(dev))
	_, err := b.ec2.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(inst), Force: aws.Bool(true)})
	switch apiCode(err) {
	case "", "IncorrectState", "InvalidAttachment.NotFound":
	default:
		return mapErr(err, fmt.Sprintf("abort the stuck attachment of %s to %s", id, inst))
	}
	return b.waitDetached(ctx, id, inst)
}

// waitDetached waits until the volume has no attachment to inst.
func (b *Backend) waitDetached(ctx context.Context, id, inst string) error {
	return b.detachedWithin(ctx, id, inst, b.attachWait)
}

// Detach implements backends.Backend. A detach that outlasts the attach
// timeout returns ErrUnavailable (retryable) rather than blocking the CO:
// a retry finds the volume detaching and waits again.
func (b *Backend) Detach(ctx context.Context, id, node string) error {
	inst, err := b.instanceOf(ctx, node)
	if errors.Is(err, backends.ErrNodeNotFound) {
		// The node id no longer names an instance (a Mesos agent that
		// re-registered under a new id): the volume's own record of the
		// attachment does.
		if inst, err = b.recordedInstance(ctx, id, node); err != nil || inst == "" {
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("detach %s: %w", id, err)
	}
	unlock, err := b.locks.Lock(ctx, "vol:"+id)
	if err != nil {
		return err
	}
	defer unlock()
	v, err := b.describeVolume(ctx, id)
	if errors.Is(err, backends.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if a, ok := ec2Attachment(v, inst); ok && a.State != types.VolumeAttachmentStateDetached {
		if a.State == types.VolumeAttachmentStateBusy {
			return inTransition(id, inst)
		}
		if a.State != types.VolumeAttachmentStateDetaching {
			_, err := b.ec2.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(inst)})
			fault.Point("ebs.detach.requested")
			switch apiCode(err) {
			case "", "IncorrectState", "InvalidAttachment.NotFound", "InvalidVolume.NotFound":
			default:
				return mapErr(err, fmt.Sprintf("detach %s from %s", id, inst))
			}
			b.log.Info("detaching volume", zap.String("id", id), zap.String("instance", inst))
		}
		if err := b.waitDetachedOrDead(ctx, v, inst); err != nil {
			return err
		}
	}
	if rec, ok := parseAttachmentTag(tagMap(v.Tags)[TagAttachment]); ok && rec.instance == inst {
		if err := b.dropTags(ctx, id, TagAttachment); err != nil && !errors.Is(err, backends.ErrNotFound) {
			return err
		}
	}
	return nil
}

// recordedInstance returns the instance the volume's attachment record
// gives for the CO node id node, or "" when the record names another node
// (or there is none): then node has nothing attached.
func (b *Backend) recordedInstance(ctx context.Context, id, node string) (string, error) {
	v, err := b.describeVolume(ctx, id)
	if errors.Is(err, backends.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("detach %s: %w", id, err)
	}
	rec, ok := parseAttachmentTag(tagMap(v.Tags)[TagAttachment])
	if !ok || rec.node != node {
		return "", nil
	}
	if _, attached := ec2Attachment(v, rec.instance); !attached {
		return "", nil
	}
	b.log.Info("detach: node id maps to no instance now; using the attachment record", zap.String("id", id), zap.String("node", node), zap.String("instance", rec.instance))
	return rec.instance, nil
}
