package ebs

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// The node on the Kubernetes path needs no EC2 permissions.
//
// Where a CO calls ControllerPublish before NodeStage (Kubernetes, Nomad),
// the controller's answer, the publish context, describes the volume as
// the node needs it: the device name EC2 gave the attachment, the volume
// id (whose NVMe serial proves the device), the access type, the creation
// parameters, the format mark and this node's attachment. The node then
// stages, publishes, reports stats, expands, unpublishes and unstages
// without one EC2 call: the device is proven by its serial, read from
// sysfs; nothing is looked up.
//
// The format mark (invariant 1 of DESIGN.md) is the one thing the node
// used to write: the raw mark before it hands a block volume out, and the
// filesystem type after it formats. On this path:
//
//   - The raw mark is written by the controller, at ControllerPublish of a
//     block volume, before it answers: no node can have the device from
//     this plugin before the mark exists, exactly as when the node wrote
//     it first thing in NodeStage. Raw content is what a probe can miss
//     (a database's pages need no signature), so this mark is kept whole.
//   - The filesystem mark is not recorded: the controller cannot learn
//     that a node formatted (nothing flows from node to controller), and
//     the node has no credentials to tag with. What guards a filesystem
//     the node makes is then the access type, pinned at create and
//     enforced by both sides: a volume created for mount access is never
//     handed out raw (the node refuses a block capability for it), so the
//     only content an unmarked mount volume can hold is a filesystem
//     mkfs made, with its superblock and metadata in the first MiB. The
//     node formats only when blkid -p finds no signature of any kind AND
//     the first and last MiB of the device are all zeros, right after the
//     serial proves the device. A restage therefore finds the filesystem
//     and adopts it; it never formats it again.
//   - What that loses against the Mesos path: a filesystem whose first and
//     last MiB were later zeroed by someone with raw access outside the
//     plugin would be formatted again, where a recorded mark would refuse
//     it. A mark that arrived some other way (a volume restored from a
//     snapshot or cloned carries its source's mark; a volume staged once
//     through the Mesos path was marked by that node) still arrives in the
//     publish context and is checked as before.
//
// On the Mesos volume/csi isolator path there is no ControllerPublish: the
// node attaches the volume itself (an attachment "by node"), and needs the
// EC2 permissions listed in docs/backends/ebs.md. Xen instance types,
// whose devices have no serial, need ec2:DescribeVolumes on the node to
// prove a device by its name, on either path.

// Publish context keys beyond PublishDevicePath and PublishVolumeID: the
// volume as the node needs it (PublishDescriber).
const (
	PublishAccess    = "access"    // mount or block
	PublishFormatted = "formatted" // the format mark, "" for none
	PublishNode      = "node"      // the CO's node id of the attachment
	PublishMode      = "mode"      // the access mode it was published for
	PublishReadOnly  = "readOnly"  // "true" for a read-only attachment
	// PublishParamPrefix prefixes each creation parameter.
	PublishParamPrefix = "param/"
)

// Attach implements backends.Backend. An attachment made for a
// ControllerPublish (not by the node itself) answers with the volume
// described for the node (see PublishDescriber), and a block volume gets
// its raw mark first.
func (b *Backend) Attach(ctx context.Context, id string, req backends.AttachRequest) (map[string]string, error) {
	pc, err := b.attach(ctx, id, req)
	if err != nil || req.ByNode {
		return pc, err
	}
	v, err := b.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("attach %s: describe it for the node: %w", id, err)
	}
	if v.Block && v.Formatted == "" {
		if err := b.MarkFormatted(ctx, id, backends.FormattedRaw); err != nil {
			return nil, fmt.Errorf("attach %s: mark it raw before a node gets it: %w", id, err)
		}
		v.Formatted = backends.FormattedRaw
		b.log.Info("block volume marked raw at publish", zap.String("id", id))
	}
	access := "mount"
	if v.Block {
		access = "block"
	}
	pc[PublishAccess] = access
	pc[PublishFormatted] = v.Formatted
	pc[PublishNode] = req.Node
	pc[PublishMode] = req.Mode.String()
	pc[PublishReadOnly] = fmt.Sprint(req.ReadOnly || req.Mode.ReadOnly())
	for k, val := range v.Parameters {
		pc[PublishParamPrefix+k] = val
	}
	return pc, nil
}

// described reports whether a publish context describes the volume.
func described(publish map[string]string) bool {
	a := publish[PublishAccess]
	return (a == "mount" || a == "block") && publish[PublishNode] != ""
}

// DescribedVolume implements backends.PublishDescriber.
func (b *Backend) DescribedVolume(id string, publish map[string]string) (*backends.Volume, bool) {
	if !described(publish) || publish[PublishVolumeID] != id || !volumeIDRE.MatchString(id) {
		return nil, false
	}
	mode, ok := backends.ParseAccessMode(publish[PublishMode])
	if !ok {
		return nil, false
	}
	v := &backends.Volume{
		ID:        id,
		Block:     publish[PublishAccess] == "block",
		Formatted: publish[PublishFormatted],
		Attachments: []backends.Attachment{{
			Node: publish[PublishNode], Mode: mode, ReadOnly: publish[PublishReadOnly] == "true",
		}},
	}
	for k, val := range publish {
		if p, ok := strings.CutPrefix(k, PublishParamPrefix); ok {
			if v.Parameters == nil {
				v.Parameters = map[string]string{}
			}
			v.Parameters[p] = val
		}
	}
	return v, true
}

// connectDescribed is Connect for a volume the publish context describes:
// ControllerPublish has seen the attachment "attached", so the node only
// waits for the device to show up and proves it by its serial, without
// EC2. A device without a serial (a Xen instance) is proven by its name,
// which asks EC2 whether another volume claims that name.
func (b *Backend) connectDescribed(ctx context.Context, id string, publish map[string]string) (backends.Device, error) {
	name := publish[PublishDevicePath]
	var inst, dev string
	err := b.wait(ctx, b.attachWait, fmt.Sprintf("device of volume %s (%s)", id, name), func() (bool, error) {
		if p, err := b.provenDevice(id); err != nil || p != "" {
			dev = p
			return p != "", err
		}
		if name == "" {
			return false, nil
		}
		if inst == "" {
			i, err := b.selfInstance(ctx)
			if err != nil {
				return false, retryable(err)
			}
			inst = i
		}
		p, err := b.findDevice(ctx, id, inst, name)
		dev = p
		return p != "", err
	})
	if err != nil {
		return backends.Device{}, err
	}
	b.log.Info("volume device found", zap.String("id", id), zap.String("device", dev))
	return backends.Device{Path: dev}, nil
}
