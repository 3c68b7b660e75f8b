package node

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/backends/ebs"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	ec2sim "github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
)

// TestStatsAskNoStorage: kubelet polls NodeGetVolumeStats for every volume
// on every node; with EBS each poll used to be a DescribeVolumes call,
// enough to exhaust an account's EC2 request rate at scale. The device's
// identity is proven locally instead.
func TestStatsAskNoStorage(t *testing.T) {
	harness.RequireRoot(t)
	dir := harness.TempDir(t)
	const inst = "i-0123456789abcdef0"
	loops := &ec2sim.LoopDevices{ImageDir: filepath.Join(dir, "images"), ByIDDir: filepath.Join(dir, "by-id"), PerInstance: true}
	sim, err := ec2sim.New(ec2sim.Options{Region: "us-east-1", Instances: []ec2sim.Instance{{ID: inst, AvailabilityZone: "us-east-1a"}}, StateDelay: 10 * time.Millisecond, Devices: loops})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	b, err := ebs.New(ebs.Config{Name: "aws", Type: ebs.Type, Region: "us-east-1", Endpoint: sim.Start(), IMDSEndpoint: sim.IMDSURL(inst),
		AccessKeyID: "AKID", SecretAccessKey: "SECRET", ClusterID: "c1", Zone: "us-east-1a", ByIDDir: loops.LinkDir(inst), PollInterval: "10ms"},
		ebs.Options{NodeID: inst, Serial: loops.Serial})
	if err != nil {
		t.Fatal(err)
	}
	set, err := backends.NewSet(b)
	if err != nil {
		t.Fatal(err)
	}
	svc := New(set, Options{NodeID: inst, Mounter: NewLinuxMounter()})
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := b.Create(ctx, backends.CreateRequest{Name: "stats", RequiredBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := b.Attach(ctx, v.ID, backends.AttachRequest{Node: inst, Mode: backends.SingleNodeWriter})
	if err != nil {
		t.Fatal(err)
	}
	id := "aws/" + v.ID
	staging := filepath.Join(dir, "staging")
	if _, err := svc.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: capMount("ext4"), PublishContext: pc}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := svc.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
			t.Error(err)
		}
		if err := b.Detach(ctx, v.ID, inst); err != nil {
			t.Error(err)
		}
	}()
	sim.ResetCalls()
	st, err := svc.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: staging})
	if err != nil || len(st.Usage) == 0 || st.Usage[0].Total == 0 {
		t.Fatalf("stats: %v %v", st, err)
	}
	if calls := sim.CallCounts(); len(calls) != 0 {
		t.Fatalf("NodeGetVolumeStats called EC2: %v", calls)
	}
	// Another path is still NOT_FOUND, without EC2 either.
	if _, err := svc.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: dir}); err == nil {
		t.Fatal("stats of a path where the volume is not")
	}
}
