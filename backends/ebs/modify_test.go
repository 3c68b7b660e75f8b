package ebs

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/grpcerr"
	"github.com/csi-libstorage/csi-libstorage/test/sim/ec2"

	"google.golang.org/grpc/codes"
)

func TestModify(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	if !slices.Equal(ctrl.MutableParameters(), []string{"type", "iops", "throughput"}) {
		t.Fatalf("mutable parameters %v", ctrl.MutableParameters())
	}
	v := create(t, ctrl, "m", 10, nil) // gp3, 3000 IOPS, 125 MiB/s
	// The steps run in order on one volume; each names the shape EC2
	// reports afterwards and how many ModifyVolume calls it made.
	steps := []struct {
		name   string
		params map[string]string
		err    error
		msg    string
		typ    string
		iops   int32
		thr    int32
		calls  int
	}{
		{"unknown key", map[string]string{"size": "20"}, backends.ErrInvalid, `parameter "size" cannot be changed`, "gp3", 3000, 125, 0},
		{"io2 without iops", map[string]string{"type": "io2"}, backends.ErrInvalid, "type=io2 needs provisioned IOPS", "gp3", 3000, 125, 0},
		{"gp3 throughput too low", map[string]string{"throughput": "100"}, backends.ErrInvalid, "gp3 takes 125-2000 MiB/s", "gp3", 3000, 125, 0},
		{"gp3 throughput too high", map[string]string{"throughput": "2001"}, backends.ErrInvalid, "gp3 takes 125-2000 MiB/s", "gp3", 3000, 125, 0},
		{"iops out of range", map[string]string{"iops": "100"}, backends.ErrInvalid, "iops=100: volume type gp3 takes 3000-80000", "gp3", 3000, 125, 0},
		{"unknown type", map[string]string{"type": "gp9"}, backends.ErrInvalid, `type="gp9"`, "gp3", 3000, 125, 0},
		{"st1 below its minimum size", map[string]string{"type": "st1"}, backends.ErrInvalid, "need at least 125 GiB", "gp3", 3000, 125, 0},
		{"gp3 iops beyond the size", map[string]string{"iops": "6000"}, backends.ErrInvalid, "expand it to 12 GiB first", "gp3", 3000, 125, 0},
		{"gp3 throughput beyond the iops", map[string]string{"throughput": "1000"}, backends.ErrInvalid, "add iops=4000 or more", "gp3", 3000, 125, 0},
		{"gp3 iops and throughput", map[string]string{"iops": "4000", "throughput": "250"}, nil, "", "gp3", 4000, 250, 1},
		{"same again changes nothing", map[string]string{"iops": "4000", "throughput": "250"}, nil, "", "gp3", 4000, 250, 1},
		{"to io2", map[string]string{"type": "io2", "iops": "5000"}, nil, "", "io2", 5000, 0, 2},
		{"throughput on io2", map[string]string{"throughput": "300"}, backends.ErrInvalid, "throughput=300 applies to gp3 only, not io2", "io2", 5000, 0, 2},
		{"io2 iops only", map[string]string{"iops": "6000"}, nil, "", "io2", 6000, 0, 3},
		{"to gp2", map[string]string{"type": "gp2"}, nil, "", "gp2", 0, 0, 4},
	}
	e.sim.ResetCalls()
	for _, st := range steps {
		err := ctrl.Modify(ctx(t), v.ID, st.params)
		switch {
		case st.err == nil && err != nil:
			t.Fatalf("%s: %v", st.name, err)
		case st.err != nil && (!errors.Is(err, st.err) || !strings.Contains(err.Error(), st.msg)):
			t.Fatalf("%s: %v, want %v containing %q", st.name, err, st.err, st.msg)
		}
		got, err := ctrl.describeVolume(ctx(t), v.ID)
		if err != nil {
			t.Fatal(err)
		}
		iops, thr := aws.ToInt32(got.Iops), aws.ToInt32(got.Throughput)
		if string(got.VolumeType) != st.typ || (st.iops != 0 && iops != st.iops) || (st.thr != 0 && thr != st.thr) {
			t.Fatalf("%s: volume is %s/%d/%d, want %s/%d/%d", st.name, got.VolumeType, iops, thr, st.typ, st.iops, st.thr)
		}
		if n := e.sim.Calls("ModifyVolume"); n != st.calls {
			t.Fatalf("%s: %d ModifyVolume calls, want %d", st.name, n, st.calls)
		}
		// Modify returns once the change is usable ("optimizing"); EC2
		// refuses the next one until it completes, as the next step would
		// find on a slow run.
		waitModificationDone(t, ctrl, v.ID)
	}
	// That was the fourth modification today: EC2 refuses a fifth, and the
	// caller learns to come back later.
	if n := e.sim.Calls("ModifyVolume"); n != ec2sim.MaxModificationsPerDay {
		t.Fatalf("%d modifications so far, want %d", n, ec2sim.MaxModificationsPerDay)
	}
	err := ctrl.Modify(ctx(t), v.ID, map[string]string{"type": "gp3"})
	if !errors.Is(err, backends.ErrLimit) || !strings.Contains(err.Error(), "VolumeModificationRateExceeded") || grpcerr.Code(err) != codes.ResourceExhausted {
		t.Fatalf("fifth modification in a day: %v", err)
	}
	if err := e.sim.AgeModifications(v.ID, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := ctrl.Modify(ctx(t), v.ID, map[string]string{"type": "gp3"}); err != nil {
		t.Fatalf("modification a day later: %v", err)
	}
	if err := ctrl.Modify(ctx(t), "vol-00000000000000000", map[string]string{"type": "gp3"}); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("modify of a missing volume: %v", err)
	}
}

func TestConditions(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	v := create(t, ctrl, "h", 1, nil)
	check := func(want string) {
		t.Helper()
		conds, err := ctrl.Conditions(ctx(t), v.ID)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case want == "" && len(conds) != 0:
			t.Fatalf("healthy volume reported %+v", conds)
		case want != "" && (len(conds) != 1 || conds[0].Kind != backends.DataLoss || conds[0].Reason != "VolumeError" || !strings.Contains(conds[0].Message, want)):
			t.Fatalf("conditions %+v, want one DataLoss VolumeError containing %q", conds, want)
		}
	}
	check("")
	if err := e.sim.SetVolumeError(v.ID, true); err != nil {
		t.Fatal(err)
	}
	check(`EC2 reports volume ` + v.ID + ` in state "error"`)
	if err := e.sim.SetVolumeError(v.ID, false); err != nil {
		t.Fatal(err)
	}
	check("")
	if _, err := ctrl.Conditions(ctx(t), "vol-00000000000000000"); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("conditions of a missing volume: %v", err)
	}
}

// waitModificationDone waits until the volume's latest modification, if
// any, has completed.
func waitModificationDone(t *testing.T, b *Backend, id string) {
	t.Helper()
	c := ctx(t)
	for {
		m, err := b.modification(c, id)
		if err != nil {
			t.Fatal(err)
		}
		if m == nil || m.ModificationState == "completed" {
			return
		}
		select {
		case <-c.Done():
			t.Fatalf("modification of %s still %s", id, m.ModificationState)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
