package ebs_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/backends/ebs"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	"github.com/csi-libstorage/csi-libstorage/test/harness/inproc"
	ec2sim "github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
)

const (
	oldInst = "i-0123456789abcdef0"
	newInst = "i-0fedcba9876543210"
)

// TestTakeoverThroughTheServices: two plugins on two simulated instances,
// each with its controller and node service. The first stages the volume
// (a real loop device, mkfs, mount) and writes to it. While its instance
// runs, the second node is refused, through ControllerPublish (the storage
// resource provider, Kubernetes) or its own NodeStage (the Mesos
// volume/csi isolator), with FAILED_PRECONDITION naming the holder. Once
// EC2 reports the first instance stopped, the same call succeeds: the
// data is intact, the filesystem is the same one and fsck finds it clean,
// the takeover is counted once in csi_libstorage_takeovers_total, and the
// dead node's late ControllerUnpublish leaves the new holder alone.
func TestTakeoverThroughTheServices(t *testing.T) {
	for _, tc := range []struct {
		name    string
		publish bool // the CO calls ControllerPublish; else NodeStage attaches
	}{
		{"ControllerPublish", true},
		{"NodeStage attaches by itself", false},
	} {
		t.Run(tc.name, func(t *testing.T) { takeoverThroughServices(t, tc.publish) })
	}
}

func takeoverThroughServices(t *testing.T, publish bool) {
	harness.RequireRoot(t)
	dir := harness.TempDir(t)
	loops := &ec2sim.LoopDevices{ImageDir: filepath.Join(dir, "images"), ByIDDir: filepath.Join(dir, "by-id"), PerInstance: true}
	sim, err := ec2sim.New(ec2sim.Options{
		Region: "us-east-1",
		Instances: []ec2sim.Instance{
			{ID: oldInst, AvailabilityZone: "us-east-1a", RootDeviceName: "/dev/xvda"},
			{ID: newInst, AvailabilityZone: "us-east-1a", RootDeviceName: "/dev/xvda"},
		},
		StateDelay: 10 * time.Millisecond,
		Devices:    loops,
	})
	if err != nil {
		t.Fatal(err)
	}
	endpoint := sim.Start()
	t.Cleanup(func() { sim.Close() })
	factories := map[string]wiring.Factory{ebs.Type: func(e config.Entry, o wiring.BackendOptions) (backends.Backend, error) {
		var c ebs.Config
		if err := e.Decode(&c); err != nil {
			return nil, err
		}
		c.Name = e.Name
		return ebs.New(c, ebs.Options{NodeID: o.NodeID, Logger: o.Logger, Events: o.Events, Serial: loops.Serial})
	}}
	start := func(inst string) (*wiring.Plugin, csi.ControllerClient, csi.NodeClient) {
		cfgPath := filepath.Join(dir, inst+".yaml")
		yaml := fmt.Sprintf("backends:\n  - name: aws\n    type: ebs\n    region: us-east-1\n    endpoint: %s\n    imdsEndpoint: %s\n    accessKeyID: AKIDTAKEOVER\n    secretAccessKey: SECRETTAKEOVER\n    clusterID: takeover\n    byIDDir: %s\n    attachTimeout: 6s\n    pollInterval: 10ms\n",
			endpoint, sim.IMDSURL(inst), loops.LinkDir(inst))
		if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(dir, inst+".sock")
		p := inproc.Start(t, wiring.Options{Endpoint: "unix://" + sock, NodeID: inst, Mode: wiring.ModeAll, Config: cfg,
			Logger: zaptest.NewLogger(t), MetricsAddress: "127.0.0.1:0", Factories: factories})
		conn := inproc.Dial(t, sock)
		return p, csi.NewControllerClient(conn), csi.NewNodeClient(conn)
	}
	_, ctl1, node1 := start(oldInst)
	p2, ctl2, node2 := start(newInst)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	mnt := &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
	}
	cv, err := ctl1.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "moving", VolumeCapabilities: []*csi.VolumeCapability{mnt}, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	id := cv.GetVolume().GetVolumeId()
	pub, err := ctl1.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: oldInst, VolumeCapability: mnt})
	if err != nil {
		t.Fatal(err)
	}
	staging1, target1 := filepath.Join(dir, "old", "staging"), filepath.Join(dir, "old", "target")
	if _, err := node1.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging1, VolumeCapability: mnt, PublishContext: pub.PublishContext}); err != nil {
		t.Fatal(err)
	}
	if _, err := node1.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging1, TargetPath: target1, VolumeCapability: mnt, PublishContext: pub.PublishContext}); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20)
	rand.Read(data)
	want := sha256.Sum256(data)
	if err := os.WriteFile(filepath.Join(target1, "data"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	uuid := fsUUID(t, staging1)

	staging2, target2 := filepath.Join(dir, "new", "staging"), filepath.Join(dir, "new", "target")
	take := func() (map[string]string, error) {
		if !publish {
			_, err := node2.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging2, VolumeCapability: mnt})
			return nil, err
		}
		r, err := ctl2.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: newInst, VolumeCapability: mnt})
		return r.GetPublishContext(), err
	}
	// While the holder runs: refused, and nothing moves.
	_, err = take()
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), oldInst) || !strings.Contains(err.Error(), "running") {
		t.Fatalf("takeover while the holder runs: %v, want FAILED_PRECONDITION naming %s and running", err, oldInst)
	}
	// The instance stops: its guest shuts down (unmounting what it had
	// mounted), its plugin goes with it; EC2 keeps the volume attached.
	for _, m := range []string{target1, staging1} {
		if err := unix.Unmount(m, 0); err != nil {
			t.Fatalf("the old node's shutdown: unmount %s: %v", m, err)
		}
	}
	if err := sim.StopInstance(oldInst); err != nil {
		t.Fatal(err)
	}
	for sim.InstanceState(oldInst) != ec2sim.StateStopped {
		time.Sleep(5 * time.Millisecond)
	}
	pc, err := take()
	if err != nil {
		t.Fatalf("takeover once the holder is stopped: %v", err)
	}
	if publish {
		if _, err := node2.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging2, VolumeCapability: mnt, PublishContext: pc}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := node2.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging2, TargetPath: target2, VolumeCapability: mnt, PublishContext: pc}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(target2, "data"))
	if err != nil || sha256.Sum256(got) != want {
		t.Fatalf("data on the new node: %v (missing or checksum mismatch)", err)
	}
	if u := fsUUID(t, staging2); u != uuid {
		t.Fatalf("filesystem %s on the new node, was %s: it was formatted again", u, uuid)
	}
	if n := takeovers(t, p2, "instance-stopped"); n != 1 {
		t.Fatalf("csi_libstorage_takeovers_total{proof=instance-stopped} = %v, want 1", n)
	}
	// The dead node's ControllerUnpublish (Kubernetes after the
	// out-of-service taint) changes nothing.
	if _, err := ctl2.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: oldInst}); err != nil {
		t.Fatalf("the dead node's ControllerUnpublish: %v", err)
	}
	for _, v := range sim.Volumes() {
		if v.Tags[ebs.TagName] == "moving" && (v.InstanceID != newInst || v.AttachmentState != "attached") {
			t.Fatalf("after the dead node's unpublish the volume is on %q (%s)", v.InstanceID, v.AttachmentState)
		}
	}
	if _, err := node2.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target2}); err != nil {
		t.Fatal(err)
	}
	if _, err := node2.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging2}); err != nil {
		t.Fatal(err)
	}
	if publish {
		if _, err := ctl2.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: newInst}); err != nil {
			t.Fatal(err)
		}
	}
	img := loops.ImagePath(strings.TrimPrefix(id, "aws/"))
	if out, err := exec.Command("fsck.ext4", "-n", "-f", img).CombinedOutput(); err != nil {
		t.Fatalf("fsck -n after the new node unstaged: %v\n%s", err, out)
	}
	if _, err := ctl2.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}
	if n := takeovers(t, p2, "instance-stopped"); n != 1 {
		t.Fatalf("takeovers counted %v times by the end, want 1", n)
	}
	harness.AssertNoLeaks(t, harness.LeakCheck{Dir: dir, Empty: []string{loops.ImageDir}, Settle: 5 * time.Second})
}

// takeovers reads csi_libstorage_takeovers_total{backend="aws",proof} of p.
func takeovers(t *testing.T, p *wiring.Plugin, proof string) float64 {
	t.Helper()
	mfs, err := p.Metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "csi_libstorage_takeovers_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "backend") == "aws" && label(m, "proof") == proof {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// fsUUID reads the filesystem UUID of what is mounted at path.
func fsUUID(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("findmnt", "-n", "-o", "UUID", "--target", path).Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("uuid at %s: %v %q", path, err, out)
	}
	return strings.TrimSpace(string(out))
}
