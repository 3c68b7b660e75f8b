package ebs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/fault"
)

// Automatic failover (docs/backends/ebs.md#failover). A volume attached to
// another instance moves on its own only when EC2 itself proves that the
// holder cannot write: its instance is stopped (the guest has shut down;
// EC2 keeps the volume attached, but nothing runs that could write) or
// terminated (it never runs again). Every other state refuses: pending
// and running instances write, stopping and shutting-down ones are still
// flushing their guest's caches to the volume.

// Proofs reported with backends.Takeover.
const (
	ProofInstanceStopped    = "instance-stopped"
	ProofInstanceTerminated = "instance-terminated"
)

// stateNotFound stands in for the state of an instance EC2 does not
// describe (an id from a stale record, or one terminated over an hour ago
// whose attachment EC2 still shows): not a proof of anything.
const stateNotFound = types.InstanceStateName("not described by EC2")

// proofOf returns the proof an instance state gives that the instance
// cannot write, if it gives one.
func proofOf(s types.InstanceStateName) (string, bool) {
	switch s {
	case types.InstanceStateNameStopped:
		return ProofInstanceStopped, true
	case types.InstanceStateNameTerminated:
		return ProofInstanceTerminated, true
	}
	return "", false
}

// instanceState asks EC2 for the state of instance inst.
func (b *Backend) instanceState(ctx context.Context, inst string) (types.InstanceStateName, error) {
	out, err := b.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{inst}})
	if apiCode(err) == "InvalidInstanceID.NotFound" {
		return stateNotFound, nil
	}
	if err != nil {
		return "", mapErr(err, "describe instance "+inst+" (the volume's holder)")
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if aws.ToString(in.InstanceId) == inst && in.State != nil {
				return in.State.Name, nil
			}
		}
	}
	return stateNotFound, nil
}

// holderOf returns the attachment of v to an instance other than inst
// that still holds it (anything but detached), if there is one. EBS
// volumes here attach to one instance at a time, so there is at most one.
func holderOf(v *types.Volume, inst string) (types.VolumeAttachment, bool) {
	for _, a := range v.Attachments {
		if aws.ToString(a.InstanceId) != inst && a.State != types.VolumeAttachmentStateDetached {
			return a, true
		}
	}
	return types.VolumeAttachment{}, false
}

// holderNode names the holder instance the way the CO knows it: the node
// id in the attachment record when the record is the holder's.
func (b *Backend) holderNode(v *types.Volume, inst string) string {
	if rec, ok := parseAttachmentTag(tagMap(v.Tags)[TagAttachment]); ok && rec.instance == inst && rec.node != "" {
		return rec.node
	}
	return b.nodeNameOf(inst)
}

// takeOver frees volume v, which instance inst wants for node req.Node,
// from the instance that holds it, when that instance is stopped or
// terminated; otherwise it refuses with ErrConflict (FAILED_PRECONDITION:
// the CO retries, and a later retry takes the volume once the proof
// holds) or, while a detach is under way, ErrUnavailable. It returns nil
// once the holder's attachment is gone; the caller then attaches as usual.
// The caller holds the volume's lock.
func (b *Backend) takeOver(ctx context.Context, v *types.Volume, inst string, req backends.AttachRequest, held types.VolumeAttachment) error {
	id := aws.ToString(v.VolumeId)
	holder := aws.ToString(held.InstanceId)
	from := b.holderNode(v, holder)
	state, err := b.instanceState(ctx, holder)
	if err != nil {
		return fmt.Errorf("attach %s to %s: %w", id, req.Node, err)
	}
	proof, dead := proofOf(state)
	if !dead {
		if held.State == types.VolumeAttachmentStateDetaching {
			return fmt.Errorf("%w: volume %s is still detaching from instance %s (%s); retry shortly", backends.ErrUnavailable, id, holder, state)
		}
		return b.refusal(id, holder, from, req.Node, state)
	}
	b.log.Warn("the volume's holder instance cannot write any more: detaching the volume from it to attach it elsewhere",
		zap.String("id", id), zap.String("holder", holder), zap.String("from", from), zap.String("to", req.Node),
		zap.String("instanceState", string(state)))
	if err := b.detachDead(ctx, id, holder, state, held); err != nil {
		return fmt.Errorf("attach %s to %s: take it from instance %s (%s): %w", id, req.Node, holder, state, err)
	}
	b.report(backends.Takeover{Backend: b.name, VolumeID: id, From: from, To: req.Node, Proof: proof})
	return nil
}

// refusal is the FAILED_PRECONDITION a conflicting attach gets while the
// holder may still write: it names the holder, its state, and what an
// operator can do who knows better than EC2.
func (b *Backend) refusal(id, holder, from, to string, state types.InstanceStateName) error {
	who := "instance " + holder
	if from != holder {
		who += " (node " + from + ")"
	}
	return fmt.Errorf("%w: volume %s is attached to %s, which is %s: it moves to node %s on its own only once EC2 reports %s stopped or terminated. "+
		"If that instance is dead, stop it (aws ec2 stop-instances --instance-ids %s --force), or take the volume by hand: "+
		"csi-libstorage force-detach --volume %s/%s --node %s --yes-the-node-is-dead",
		backends.ErrConflict, id, who, state, to, holder, holder, b.name, id, from)
}

// detachDead detaches volume id from instance inst, which state proves
// cannot write. A terminated instance never runs again, so its detach is
// forced at once. A stopped one may be started again at any time, so it
// first gets a normal detach: that completes on a stopped instance, and
// should the instance have been started in the meantime, it waits for the
// guest to let go of the device instead of tearing it from under a mounted
// filesystem. Only if the normal detach has not finished after a third of
// the attach timeout, and EC2 still reports the instance stopped, is it
// forced.
func (b *Backend) detachDead(ctx context.Context, id, inst string, state types.InstanceStateName, held types.VolumeAttachment) error {
	force := state == types.InstanceStateNameTerminated
	if force || held.State != types.VolumeAttachmentStateDetaching {
		if err := b.requestDetach(ctx, id, inst, force); err != nil {
			return err
		}
	}
	if force {
		return b.waitDetached(ctx, id, inst)
	}
	if done, err := b.waitNormal(ctx, id, inst); done || err != nil {
		return err
	}
	now, serr := b.instanceState(ctx, inst)
	if serr != nil {
		return serr
	}
	if _, dead := proofOf(now); !dead {
		b.slow.forget(id, inst)
		return fmt.Errorf("%w: volume %s is detaching from instance %s, which is %s again; it stays there until that detach completes or is undone",
			backends.ErrUnavailable, id, inst, now)
	}
	b.log.Warn("the detach from a stopped instance did not complete: forcing it", zap.String("id", id), zap.String("instance", inst))
	if err := b.requestDetach(ctx, id, inst, true); err != nil {
		return err
	}
	if err := b.waitDetached(ctx, id, inst); err != nil {
		return err
	}
	b.slow.forget(id, inst)
	return nil
}

// slowDetaches remembers when this process first waited for a normal
// detach that is not done yet, so that "force after a third of the attach
// timeout" counts across attempts whose deadlines are shorter than that.
// A restarted process starts counting again: it forces later, never
// sooner.
type slowDetaches struct {
	mu    sync.Mutex
	since map[string]time.Time
}

func (s *slowDetaches) start(id, inst string, now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.since == nil {
		s.since = map[string]time.Time{}
	}
	t, ok := s.since[id+" "+inst]
	if !ok {
		t = now
		s.since[id+" "+inst] = t
	}
	return t
}

func (s *slowDetaches) forget(id, inst string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.since, id+" "+inst)
}

// waitNormal waits for a normal detach of id from inst until a third of
// the attach timeout has passed since this process first waited for it.
// It returns done when the volume is detached, neither done nor an error
// when that bound has passed (the detach may be forced), and UNAVAILABLE
// when the request's deadline comes first.
func (b *Backend) waitNormal(ctx context.Context, id, inst string) (bool, error) {
	bound := b.attachWait / 3
	start := b.slow.start(id, inst, time.Now())
	err := b.detachedWithin(ctx, id, inst, max(bound-time.Since(start), 0))
	switch {
	case err == nil:
		b.slow.forget(id, inst)
		return true, nil
	case !errors.Is(err, backends.ErrUnavailable):
		return false, err
	case time.Since(start) < bound:
		return false, err
	}
	return false, nil
}

// requestDetach asks EC2 to detach; an attachment already gone is fine.
func (b *Backend) requestDetach(ctx context.Context, id, inst string, force bool) error {
	_, err := b.ec2.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(inst), Force: aws.Bool(force)})
	if force {
		fault.Point("ebs.takeover.force.requested")
	} else {
		fault.Point("ebs.takeover.detach.requested")
	}
	switch apiCode(err) {
	case "", "IncorrectState", "InvalidAttachment.NotFound":
		return nil
	}
	return mapErr(err, fmt.Sprintf("detach %s from %s (force=%t)", id, inst, force))
}

// detachedWithin waits, at most d, until the volume has no attachment to
// inst.
func (b *Backend) detachedWithin(ctx context.Context, id, inst string, d time.Duration) error {
	return b.wait(ctx, d, fmt.Sprintf("volume %s to detach from %s", id, inst), func() (bool, error) {
		v, err := b.describeVolume(ctx, id)
		if errors.Is(err, backends.ErrNotFound) {
			return true, nil
		}
		if err != nil {
			return false, retryable(err)
		}
		a, ok := ec2Attachment(v, inst)
		return !ok || a.State == types.VolumeAttachmentStateDetached, nil
	})
}

// waitDetachedOrDead is Detach's wait: a detach from an instance that EC2
// reports stopped or terminated does not hang on a detach EC2 never
// completes; after a third of the attach timeout it is forced (the
// instance cannot write) and reported as a takeover with no new holder.
func (b *Backend) waitDetachedOrDead(ctx context.Context, v *types.Volume, inst string) error {
	id := aws.ToString(v.VolumeId)
	if done, err := b.waitNormal(ctx, id, inst); done || err != nil {
		return err
	}
	state, serr := b.instanceState(ctx, inst)
	if serr != nil {
		// Without the instance's state there is no proof: wait as a
		// plain detach does.
		b.log.Debug("could not read the instance state of a slow detach", zap.String("instance", inst), zap.Error(serr))
		return b.waitDetached(ctx, id, inst)
	}
	proof, dead := proofOf(state)
	if !dead {
		b.slow.forget(id, inst)
		return b.waitDetached(ctx, id, inst)
	}
	b.log.Warn("the detach from an instance that cannot write did not complete: forcing it",
		zap.String("id", id), zap.String("instance", inst), zap.String("instanceState", string(state)))
	if err := b.requestDetach(ctx, id, inst, true); err != nil {
		return err
	}
	if err := b.waitDetached(ctx, id, inst); err != nil {
		return err
	}
	b.slow.forget(id, inst)
	b.report(backends.Takeover{Backend: b.name, VolumeID: id, From: b.holderNode(v, inst), Proof: proof})
	return nil
}

func (b *Backend) report(t backends.Takeover) {
	if b.events != nil {
		b.events.Takeover(t)
	}
}

// ForceDetach implements backends.ForceDetacher: the operator's way to
// take a volume from a node EC2 still reports running but which the
// operator knows is dead (csi-libstorage force-detach). The detach is
// forced at once.
func (b *Backend) ForceDetach(ctx context.Context, id, node string) error {
	inst, err := b.instanceOf(ctx, node)
	if errors.Is(err, backends.ErrNodeNotFound) {
		inst, err = b.recordedInstance(ctx, id, node)
		if err == nil && inst == "" {
			return fmt.Errorf("%w: volume %s is not attached to node %s", backends.ErrNotFound, id, node)
		}
	}
	if err != nil {
		return fmt.Errorf("force-detach %s: %w", id, err)
	}
	unlock, err := b.locks.Lock(ctx, "vol:"+id)
	if err != nil {
		return err
	}
	defer unlock()
	v, err := b.describeVolume(ctx, id)
	if err != nil {
		return fmt.Errorf("force-detach %s: %w", id, err)
	}
	if a, ok := ec2Attachment(v, inst); !ok || a.State == types.VolumeAttachmentStateDetached {
		return fmt.Errorf("%w: volume %s is not attached to instance %s", backends.ErrNotFound, id, inst)
	}
	b.log.Warn("force-detach requested by an operator", zap.String("id", id), zap.String("node", node), zap.String("instance", inst))
	if err := b.requestDetach(ctx, id, inst, true); err != nil {
		return err
	}
	if err := b.waitDetached(ctx, id, inst); err != nil {
		return err
	}
	if rec, ok := parseAttachmentTag(tagMap(v.Tags)[TagAttachment]); ok && rec.instance == inst {
		if err := b.dropTags(ctx, id, TagAttachment); err != nil && !errors.Is(err, backends.ErrNotFound) {
			return err
		}
	}
	return nil
}
