package health

import (
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

func TestVolume(t *testing.T) {
	tests := []struct {
		name  string
		conds []backends.Condition
		want  []*csi.VolumeHealth_VolumeHealthEntry
	}{
		{"healthy", nil, nil},
		{
			"kinds map one to one",
			[]backends.Condition{{Kind: backends.Degraded, Reason: "A", Message: "a"}, {Kind: backends.Inaccessible, Reason: "B"}, {Kind: backends.DataLoss, Reason: "C"}},
			[]*csi.VolumeHealth_VolumeHealthEntry{
				{Status: csi.VolumeHealthErrorType_DEGRADED, Reason: "A", Message: "a"},
				{Status: csi.VolumeHealthErrorType_INACCESSIBLE, Reason: "B"},
				{Status: csi.VolumeHealthErrorType_DATA_LOSS, Reason: "C"},
			},
		},
		{
			// The spec forbids two entries with one status and reason.
			"repeats dropped, first message kept",
			[]backends.Condition{{Kind: backends.Degraded, Reason: "A", Message: "first"}, {Kind: backends.Degraded, Reason: "A", Message: "second"}, {Kind: backends.DataLoss, Reason: "A"}},
			[]*csi.VolumeHealth_VolumeHealthEntry{
				{Status: csi.VolumeHealthErrorType_DEGRADED, Reason: "A", Message: "first"},
				{Status: csi.VolumeHealthErrorType_DATA_LOSS, Reason: "A"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Volume("b/v", tt.conds)
			if got.GetVolumeId() != "b/v" || len(got.GetHealthStatuses()) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i, w := range tt.want {
				g := got.GetHealthStatuses()[i]
				if g.GetStatus() != w.GetStatus() || g.GetReason() != w.GetReason() || g.GetMessage() != w.GetMessage() {
					t.Errorf("entry %d = %v, want %v", i, g, w)
				}
			}
		})
	}
}
