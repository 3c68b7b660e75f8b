package ebs

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// Conditions implements backends.ConditionReporter from the volume state
// EC2 reports. AWS documents "error" as a failure of the hardware under
// the volume with the data not recoverable.
func (b *Backend) Conditions(ctx context.Context, id string) ([]backends.Condition, error) {
	v, err := b.describeVolume(ctx, id)
	if err != nil {
		return nil, err
	}
	if v.State == types.VolumeStateError {
		return []backends.Condition{{
			Kind:   backends.DataLoss,
			Reason: "VolumeError",
			Message: fmt.Sprintf("EC2 reports volume %s in state \"error\": the hardware under it failed and AWS considers its data unrecoverable; create a new volume from the latest snapshot of %s, then delete this one",
				id, id),
		}}, nil
	}
	return nil, nil
}
