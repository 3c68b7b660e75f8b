// Package health turns the abnormal volume conditions that backends and the
// node find into the CSI 1.13 volume health messages, the same way for the
// controller and the node service.
package health

import (
	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// Volume returns the health of volume id with the given conditions. The
// spec forbids two entries with one (status, reason), so repeats are
// dropped; the first message wins.
func Volume(id string, conds []backends.Condition) *csi.VolumeHealth {
	out := &csi.VolumeHealth{VolumeId: id}
	type key struct {
		s csi.VolumeHealthErrorType
		r string
	}
	seen := map[key]bool{}
	for _, c := range conds {
		k := key{status(c.Kind), c.Reason}
		if seen[k] {
			continue
		}
		seen[k] = true
		out.HealthStatuses = append(out.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{Status: k.s, Reason: c.Reason, Message: c.Message})
	}
	return out
}

func status(k backends.ConditionKind) csi.VolumeHealthErrorType {
	switch k {
	case backends.Degraded:
		return csi.VolumeHealthErrorType_DEGRADED
	case backends.Inaccessible:
		return csi.VolumeHealthErrorType_INACCESSIBLE
	case backends.DataLoss:
		return csi.VolumeHealthErrorType_DATA_LOSS
	}
	return csi.VolumeHealthErrorType_UNKNOWN_VOLUME_HEALTH_TYPE
}
