package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/backends/ebs"
	"github.com/csi-libstorage/csi-libstorage/controller"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	ec2sim "github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
)

func capBlockRW() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
	}
}

// TestKubernetesPathNodeNeedsNoEC2: where ControllerPublish runs first, the
// node starts, stages, publishes, reports stats, unpublishes and unstages
// with credentials EC2 refuses every call of, and it makes no call at all.
// A second stage of the same volume (kubelet restages without a new
// ControllerPublish) finds the data and never formats again; a node
// process restarted in between still unstages. The node id is the
// instance id, or the Kubernetes node name the shipped DaemonSet passes
// (the instance's private DNS name), which the node does not tag.
func TestKubernetesPathNodeNeedsNoEC2(t *testing.T) {
	harness.RequireRoot(t)
	for _, tc := range []struct {
		name          string
		block, byName bool
	}{{"mount", false, false}, {"block", true, false}, {"mount-node-name", false, true}} {
		t.Run(tc.name, func(t *testing.T) { kubernetesPathWithoutEC2(t, tc.block, tc.byName) })
	}
}

func kubernetesPathWithoutEC2(t *testing.T, block, byName bool) {
	dir := harness.TempDir(t)
	defer harness.AssertNoLeaks(t, harness.LeakCheck{Dir: dir, Settle: 3 * time.Second})
	const inst, nodeKey = "i-0123456789abcdef0", "AKIDNODE"
	loops := &ec2sim.LoopDevices{ImageDir: filepath.Join(dir, "images"), ByIDDir: filepath.Join(dir, "by-id"), PerInstance: true}
	sim, err := ec2sim.New(ec2sim.Options{Region: "us-east-1", Instances: []ec2sim.Instance{{ID: inst, AvailabilityZone: "us-east-1a"}}, StateDelay: 10 * time.Millisecond, Devices: loops})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	sim.Restrict(nodeKey) // an IAM policy that allows nothing
	url := sim.Start()
	nodeID := inst
	if byName {
		nodeID = ec2sim.PrivateDNSName("us-east-1", inst)
	}
	mk := func(key, node string) *ebs.Backend {
		b, err := ebs.New(ebs.Config{Name: "aws", Type: ebs.Type, Region: "us-east-1", Endpoint: url, IMDSEndpoint: sim.IMDSURL(inst),
			AccessKeyID: key, SecretAccessKey: "SECRET", ClusterID: "c1", Zone: "us-east-1a", ByIDDir: loops.LinkDir(inst), PollInterval: "10ms", AttachTimeout: "5s"},
			ebs.Options{NodeID: node, Serial: loops.Serial})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ctrlB := mk("AKIDCTRL", "")
	ctrlSet, err := backends.NewSet(ctrlB)
	if err != nil {
		t.Fatal(err)
	}
	ctrl := controller.New(ctrlSet, controller.Options{})
	m := &recorder{LinuxMounter: NewLinuxMounter()}
	newNode := func() *Service {
		set, err := backends.NewSet(mk(nodeKey, nodeID))
		if err != nil {
			t.Fatal(err)
		}
		svc := New(set, Options{NodeID: nodeID, Mounter: m})
		if err := svc.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return svc
	}
	node := newNode()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	v, err := ctrlB.Create(ctx, backends.CreateRequest{Name: "zero-iam", RequiredBytes: 1 << 30, Block: block})
	if err != nil {
		t.Fatal(err)
	}
	id := "aws/" + v.ID
	vc := capMount("ext4")
	if block {
		vc = capBlockRW()
	}
	pub, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: nodeID, VolumeCapability: vc})
	if err != nil {
		t.Fatal(err)
	}
	pc := pub.GetPublishContext()
	staging, target := filepath.Join(dir, "staging"), filepath.Join(dir, "target")
	data := bytes.Repeat([]byte("kept across stages "), 1000)
	const offset = 300 << 20 // raw data mid-device: no probe of the first or last MiB sees it

	stageAndPublish := func(svc *Service) {
		t.Helper()
		if _, err := svc.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: vc, PublishContext: pc}); err != nil {
			t.Fatalf("stage: %v", err)
		}
		if _, err := svc.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: vc, PublishContext: pc}); err != nil {
			t.Fatalf("publish: %v", err)
		}
		if _, err := svc.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target}); err != nil {
			t.Fatalf("stats: %v", err)
		}
	}
	unpublishAndUnstage := func(svc *Service) {
		t.Helper()
		if _, err := svc.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			t.Fatalf("unpublish: %v", err)
		}
		if _, err := svc.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
			t.Fatalf("unstage: %v", err)
		}
	}
	write := func() {
		t.Helper()
		if !block {
			if err := os.WriteFile(filepath.Join(target, "data"), data, 0o600); err != nil {
				t.Fatal(err)
			}
			return
		}
		f, err := os.OpenFile(target, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(data, offset); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	intact := func() {
		t.Helper()
		var got []byte
		if !block {
			got, err = os.ReadFile(filepath.Join(target, "data"))
		} else {
			got = make([]byte, len(data))
			var f *os.File
			if f, err = os.Open(target); err == nil {
				_, err = f.ReadAt(got, offset)
				f.Close()
			}
		}
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("data after restage: %v (equal: %t)", err, bytes.Equal(got, data))
		}
	}

	stageAndPublish(node)
	write()
	unpublishAndUnstage(node)
	// kubelet stages again with the same publish context.
	stageAndPublish(node)
	intact()
	if block {
		// The controller marked the volume raw before the node got it: a
		// mount capability is refused whatever a probe would say.
		if got, err := ctrlB.Get(ctx, v.ID); err != nil || got.Formatted != backends.FormattedRaw {
			t.Fatalf("block volume after publish: %+v %v, want marked raw", got, err)
		}
		_, err := node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: filepath.Join(dir, "other"), VolumeCapability: capMount("ext4"), PublishContext: pc})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("mount stage of a block volume: %v, want InvalidArgument", err)
		}
	}
	if calls := sim.CallsBy(nodeKey); len(calls) != 0 {
		t.Fatalf("the node called EC2: %v", calls)
	}
	if want := map[bool]int{false: 1, true: 0}[block]; m.formats != want {
		t.Fatalf("%d formats over two stages, want %d", m.formats, want)
	}

	// A node process restarted while the volume is staged no longer knows
	// how it was attached; EC2 refuses it a look, so it cannot have
	// attached the volume itself, and unstage goes on.
	unpublishAndUnstage(newNode())
	if calls := sim.CallsBy(nodeKey); len(calls) > 1 || calls["DescribeVolumes"] > 1 {
		t.Fatalf("the restarted node called EC2: %v, want at most the one refused look", calls)
	}
	if _, err := ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: nodeID}); err != nil {
		t.Fatal(err)
	}
	if got, err := ctrlB.Get(ctx, v.ID); err != nil || len(got.Attachments) != 0 {
		t.Fatalf("after ControllerUnpublish: %+v %v", got, err)
	}
}

// mesosNodeActions are the EC2 actions docs/backends/ebs.md lists for a
// node on the Mesos volume/csi isolator path, where the node attaches the
// volume itself.
var mesosNodeActions = []string{"DescribeVolumes", "DescribeInstances", "AttachVolume", "DetachVolume", "CreateTags", "DeleteTags"}

// TestMesosPathNodeNeedsItsEC2Actions: without ControllerPublish the node
// attaches, marks and detaches itself. With no permissions it is refused
// (PERMISSION_DENIED, nothing formatted); with exactly the documented
// actions it stages, records the format mark and detaches on unstage.
func TestMesosPathNodeNeedsItsEC2Actions(t *testing.T) {
	harness.RequireRoot(t)
	dir := harness.TempDir(t)
	defer harness.AssertNoLeaks(t, harness.LeakCheck{Dir: dir, Settle: 3 * time.Second})
	const inst = "i-0123456789abcdef0"
	loops := &ec2sim.LoopDevices{ImageDir: filepath.Join(dir, "images"), ByIDDir: filepath.Join(dir, "by-id"), PerInstance: true}
	sim, err := ec2sim.New(ec2sim.Options{Region: "us-east-1", Instances: []ec2sim.Instance{{ID: inst, AvailabilityZone: "us-east-1a"}}, StateDelay: 10 * time.Millisecond, Devices: loops})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	sim.Restrict("AKIDNONE")
	sim.Restrict("AKIDMESOS", mesosNodeActions...)
	url := sim.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mk := func(key, node string) *ebs.Backend {
		b, err := ebs.New(ebs.Config{Name: "aws", Type: ebs.Type, Region: "us-east-1", Endpoint: url, IMDSEndpoint: sim.IMDSURL(inst),
			AccessKeyID: key, SecretAccessKey: "SECRET", ClusterID: "c1", Zone: "us-east-1a", ByIDDir: loops.LinkDir(inst), PollInterval: "10ms", AttachTimeout: "5s"},
			ebs.Options{NodeID: node, Serial: loops.Serial})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ctrl := mk("AKIDCTRL", "")
	v, err := ctrl.Create(ctx, backends.CreateRequest{Name: "mesos", RequiredBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	id := "aws/" + v.ID
	staging := filepath.Join(dir, "staging")
	m := &recorder{LinuxMounter: NewLinuxMounter()}
	for _, tc := range []struct {
		key  string
		want codes.Code
	}{{"AKIDNONE", codes.PermissionDenied}, {"AKIDMESOS", codes.OK}} {
		set, err := backends.NewSet(mk(tc.key, inst))
		if err != nil {
			t.Fatal(err)
		}
		svc := New(set, Options{NodeID: inst, Mounter: m})
		if err := svc.Start(ctx); err != nil {
			t.Fatal(err)
		}
		_, err = svc.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: capMount("ext4"), PublishContext: map[string]string{}})
		if status.Code(err) != tc.want {
			t.Fatalf("%s: stage without ControllerPublish: %v, want %s", tc.key, err, tc.want)
		}
		if err != nil {
			if m.formats != 0 {
				t.Fatalf("%s: formatted although the stage failed", tc.key)
			}
			continue
		}
		if got, err := ctrl.Get(ctx, v.ID); err != nil || got.Formatted != "ext4" || len(got.Attachments) != 1 || !got.Attachments[0].ByNode {
			t.Fatalf("after a node-side stage: %+v %v, want marked ext4 and attached by the node", got, err)
		}
		if _, err := svc.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
			t.Fatal(err)
		}
		if got, err := ctrl.Get(ctx, v.ID); err != nil || len(got.Attachments) != 0 {
			t.Fatalf("after unstage: %+v %v, want detached", got, err)
		}
	}
}
