package ebs

import (
	"context"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// mutableKeys are what EC2 ModifyVolume changes besides the size (which
// ControllerExpandVolume owns).
var mutableKeys = []string{ParamType, ParamIOPS, ParamThroughput}

// gp3 performance rules beyond the ranges in volumeTypes: a free baseline,
// IOPS above it bounded by the size, throughput bounded by the IOPS.
const (
	gp3BaseIOPS   = 3000
	gp3IOPSPerGiB = 500
)

// MutableParameters implements backends.Modifier.
func (b *Backend) MutableParameters() []string { return slices.Clone(mutableKeys) }

// modifyTarget is the performance shape a modify asks for, completed from
// the volume's current shape for what the caller left out.
type modifyTarget struct {
	volType          string
	iops, throughput int32
	sendIOPS         bool
	sendThroughput   bool
}

// target checks a modify request against the EBS rules and the volume's
// current shape. The creation tags are left as they were: they record what
// CreateVolume was asked for, which a retried create must still match.
func target(v *types.Volume, params map[string]string) (*modifyTarget, error) {
	for k := range params {
		if !slices.Contains(mutableKeys, k) {
			return nil, invalidf("parameter %q cannot be changed on an EBS volume; mutable: type, iops, throughput", k)
		}
	}
	t := &modifyTarget{volType: string(v.VolumeType), iops: aws.ToInt32(v.Iops), throughput: aws.ToInt32(v.Throughput)}
	if s, ok := params[ParamType]; ok {
		t.volType = s
	}
	ty, ok := volumeTypes[t.volType]
	if !ok {
		return nil, invalidf("parameter type=%q: use one of %s", t.volType, typeList())
	}
	var err error
	if s, ok := params[ParamIOPS]; ok {
		if t.iops, err = positive(ParamIOPS, s, 1<<20); err != nil {
			return nil, err
		}
		t.sendIOPS = true
	}
	if s, ok := params[ParamThroughput]; ok {
		if t.throughput, err = positive(ParamThroughput, s, 1<<20); err != nil {
			return nil, err
		}
		t.sendThroughput = true
	}
	changesType := t.volType != string(v.VolumeType)
	size := aws.ToInt32(v.Size)
	if changesType && t.volType == "gp3" {
		// A volume that becomes gp3 starts from gp3's baseline.
		if !t.sendIOPS {
			t.iops = gp3BaseIOPS
		}
		if !t.sendThroughput {
			t.throughput = minThroughput
		}
	}
	switch {
	case size < ty.minGiB:
		return nil, invalidf("type=%s: the volume is %d GiB and %s volumes need at least %d GiB; expand it first", t.volType, size, t.volType, ty.minGiB)
	case t.sendIOPS && !ty.iops:
		return nil, invalidf("iops=%d: volume type %s has no provisioned IOPS; drop iops or use gp3, io1 or io2", t.iops, t.volType)
	case ty.needIOPS && changesType && !t.sendIOPS:
		return nil, invalidf("type=%s needs provisioned IOPS: add iops (%d-%d)", t.volType, ty.minIOPS, ty.maxIOPS)
	case t.sendIOPS && (t.iops < ty.minIOPS || t.iops > ty.maxIOPS):
		return nil, invalidf("iops=%d: volume type %s takes %d-%d", t.iops, t.volType, ty.minIOPS, ty.maxIOPS)
	case t.sendThroughput && !ty.throughput:
		return nil, invalidf("throughput=%d applies to gp3 only, not %s; drop it or add type=gp3", t.throughput, t.volType)
	case t.sendThroughput && (t.throughput < minThroughput || t.throughput > maxThroughput):
		return nil, invalidf("throughput=%d: gp3 takes %d-%d MiB/s", t.throughput, minThroughput, maxThroughput)
	case t.volType == "gp3" && t.iops > gp3BaseIOPS && t.iops > gp3IOPSPerGiB*size:
		return nil, invalidf("iops=%d: a gp3 volume gets at most %d IOPS per GiB above the %d baseline, and this one is %d GiB; expand it to %d GiB first or ask for fewer IOPS",
			t.iops, gp3IOPSPerGiB, gp3BaseIOPS, size, (t.iops+gp3IOPSPerGiB-1)/gp3IOPSPerGiB)
	case t.volType == "gp3" && t.throughput*4 > t.iops:
		return nil, invalidf("throughput=%d with %d IOPS: gp3 allows at most 0.25 MiB/s per provisioned IOPS (%d MiB/s); add iops=%d or more", t.throughput, t.iops, t.iops/4, t.throughput*4)
	}
	if !ty.iops {
		t.iops = 0
	}
	if !ty.throughput {
		t.throughput = 0
	}
	return t, nil
}

// same reports whether the volume already has the shape asked for.
func (t *modifyTarget) same(volType string, iops, throughput int32) bool {
	return t.volType == volType && (!t.sendIOPS || t.iops == iops) && (!t.sendThroughput || t.throughput == throughput)
}

// Modify implements backends.Modifier with EC2 ModifyVolume. It returns
// once EC2 reports the modification "optimizing" (the new type and
// performance apply) or done. EC2 allows a few modifications per volume a
// day; beyond that its VolumeModificationRateExceeded comes back as
// ErrLimit.
func (b *Backend) Modify(ctx context.Context, id string, params map[string]string) error {
	unlock, err := b.locks.Lock(ctx, "vol:"+id)
	if err != nil {
		return err
	}
	defer unlock()
	v, err := b.describeVolume(ctx, id)
	if err != nil {
		return err
	}
	t, err := target(v, params)
	if err != nil {
		return err
	}
	pend, err := b.modification(ctx, id)
	if err != nil {
		return err
	}
	if pend != nil && pend.ModificationState == types.VolumeModificationStateModifying {
		if t.same(string(pend.TargetVolumeType), aws.ToInt32(pend.TargetIops), aws.ToInt32(pend.TargetThroughput)) {
			return b.waitModifiedShape(ctx, id)
		}
		return fmt.Errorf("%w: volume %s is being modified (to type %s); retry when that is done", backends.ErrUnavailable, id, pend.TargetVolumeType)
	}
	if t.same(string(v.VolumeType), aws.ToInt32(v.Iops), aws.ToInt32(v.Throughput)) {
		return nil
	}
	in := &ec2.ModifyVolumeInput{VolumeId: aws.String(id), VolumeType: types.VolumeType(t.volType)}
	if t.sendIOPS {
		in.Iops = aws.Int32(t.iops)
	}
	if t.sendThroughput {
		in.Throughput = aws.Int32(t.throughput)
	}
	if _, err := b.ec2.ModifyVolume(ctx, in); err != nil {
		return mapErr(err, "modify volume "+id)
	}
	b.log.Info("volume modifying", zap.String("id", id), zap.String("fromType", string(v.VolumeType)), zap.String("toType", t.volType),
		zap.Int32("iops", t.iops), zap.Int32("throughput", t.throughput))
	return b.waitModifiedShape(ctx, id)
}

// waitModifiedShape waits until the latest modification of the volume is
// optimizing or completed.
func (b *Backend) waitModifiedShape(ctx context.Context, id string) error {
	return b.wait(ctx, 4*b.attachWait, "volume "+id+" to be modified", func() (bool, error) {
		m, err := b.modification(ctx, id)
		if err != nil || m == nil {
			return false, err
		}
		switch m.ModificationState {
		case types.VolumeModificationStateOptimizing, types.VolumeModificationStateCompleted:
			return true, nil
		case types.VolumeModificationStateFailed:
			return false, fmt.Errorf("modification of volume %s failed: %s", id, aws.ToString(m.StatusMessage))
		}
		return false, nil
	})
}
