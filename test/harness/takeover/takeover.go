// Package takeover runs, for the block backends whose volumes a node can
// hold alone (EBS, ScaleIO), the one scenario that proves a takeover
// through the CSI services: two plugins in process, each with its
// controller and node service; the first stages the volume (a real loop
// device, mkfs, mount) and writes to it; while the holder lives the second
// node is refused with FAILED_PRECONDITION naming it, through
// ControllerPublish or its own NodeStage; once the holder is dead the same
// call succeeds, the data is intact, the filesystem is the same one and
// fsck finds it clean, the takeover is counted once in
// csi_libstorage_takeovers_total, and the dead node's late
// ControllerUnpublish fails nothing. A backend's test says what differs (its
// simulator, its plugins' config, how its holder dies, what its refusals
// say) in a Rig. It is apart from package harness because it links the
// whole plugin, as package inproc does.
package takeover

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	"github.com/csi-libstorage/csi-libstorage/test/harness/inproc"
	ec2sim "github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
)

// Node is one plugin of the scenario, serving both its controller and its
// node service on one socket.
type Node struct {
	ID         string // its node id, which the refusals must name
	Plugin     *wiring.Plugin
	Controller csi.ControllerClient
	Node       csi.NodeClient
}

// Start writes yaml as the config of a plugin with node id id (dir/id.yaml),
// and serves that plugin in process, in mode all, on dir/id.sock with the
// given backend constructors.
func Start(t *testing.T, dir, id, yaml string, factories map[string]wiring.Factory) Node {
	t.Helper()
	cfgPath := filepath.Join(dir, id+".yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, id+".sock")
	p := inproc.Start(t, wiring.Options{Endpoint: "unix://" + sock, NodeID: id, Mode: wiring.ModeAll, Config: cfg,
		Logger: zaptest.NewLogger(t), MetricsAddress: "127.0.0.1:0", Factories: factories})
	conn := inproc.Dial(t, sock)
	return Node{ID: id, Plugin: p, Controller: csi.NewControllerClient(conn), Node: csi.NewNodeClient(conn)}
}

// Refusal is a refusal the new node must meet while the holder lives.
type Refusal struct {
	While string // when it is met, for failure messages: "the holder runs"
	Says  string // what the message says besides the holder's id: "running"
}

// Rig is what a backend brings to the scenario.
type Rig struct {
	Dir     string // the test's scratch directory (harness.TempDir)
	Backend string // the backend's name in the config: volume ids' prefix, metric label
	Proof   string // the proof label the takeover is counted under
	Old     Node   // the holder
	New     Node   // the node that takes over
	// Loops backs the volumes: the volume's image is checked with fsck at
	// the end, and its image directory must be empty after the delete.
	Loops *ec2sim.LoopDevices
	// Alive is the refusal met while the holder lives.
	Alive Refusal
	// Death names the holder's end in failure messages ("the old node's
	// shutdown"); Dead says when the takeover must succeed ("once the
	// holder is stopped").
	Death, Dead string
	// Kill makes the holder dead, once its guest has unmounted what it had
	// mounted, and returns when the takeover must succeed; refused checks
	// one more refusal on the way.
	Kill func(t *testing.T, refused func(Refusal))
	// Taken and Unpublished, when set, check the backend's own state after
	// the takeover and after the dead node's ControllerUnpublish.
	Taken, Unpublished func(t *testing.T)
}

// Run plays the scenario. With publish the CO calls ControllerPublish (the
// storage resource provider, Kubernetes); without, the new node's
// NodeStage attaches by itself (the Mesos volume/csi isolator).
func (r Rig) Run(t *testing.T, publish bool) {
	ctl1, node1, ctl2, node2 := r.Old.Controller, r.Old.Node, r.New.Controller, r.New.Node
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
	pub, err := ctl1.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: r.Old.ID, VolumeCapability: mnt})
	if err != nil {
		t.Fatal(err)
	}
	staging1, target1 := filepath.Join(r.Dir, "old", "staging"), filepath.Join(r.Dir, "old", "target")
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

	staging2, target2 := filepath.Join(r.Dir, "new", "staging"), filepath.Join(r.Dir, "new", "target")
	take := func() (map[string]string, error) {
		if !publish {
			_, err := node2.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging2, VolumeCapability: mnt})
			return nil, err
		}
		resp, err := ctl2.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: r.New.ID, VolumeCapability: mnt})
		return resp.GetPublishContext(), err
	}
	// While the holder lives: refused, and nothing moves.
	refused := func(f Refusal) {
		t.Helper()
		_, err := take()
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), r.Old.ID) || !strings.Contains(err.Error(), f.Says) {
			t.Fatalf("takeover while %s: %v, want FAILED_PRECONDITION naming %s and %s", f.While, err, r.Old.ID, f.Says)
		}
	}
	refused(r.Alive)
	// The holder dies: its guest goes down first, unmounting what it had
	// mounted, and its plugin with it.
	for _, m := range []string{target1, staging1} {
		if err := unix.Unmount(m, 0); err != nil {
			t.Fatalf("%s: unmount %s: %v", r.Death, m, err)
		}
	}
	r.Kill(t, refused)
	pc, err := take()
	if err != nil {
		t.Fatalf("takeover %s: %v", r.Dead, err)
	}
	if r.Taken != nil {
		r.Taken(t)
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
	if n := r.takeovers(t); n != 1 {
		t.Fatalf("csi_libstorage_takeovers_total{proof=%s} = %v, want 1", r.Proof, n)
	}
	// The dead node's ControllerUnpublish (Kubernetes after the
	// out-of-service taint) changes nothing.
	if _, err := ctl2.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: r.Old.ID}); err != nil {
		t.Fatalf("the dead node's ControllerUnpublish: %v", err)
	}
	if r.Unpublished != nil {
		r.Unpublished(t)
	}
	if _, err := node2.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target2}); err != nil {
		t.Fatal(err)
	}
	if _, err := node2.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging2}); err != nil {
		t.Fatal(err)
	}
	if publish {
		if _, err := ctl2.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: r.New.ID}); err != nil {
			t.Fatal(err)
		}
	}
	img := r.Loops.ImagePath(strings.TrimPrefix(id, r.Backend+"/"))
	if out, err := exec.Command("fsck.ext4", "-n", "-f", img).CombinedOutput(); err != nil {
		t.Fatalf("fsck -n after the new node unstaged: %v\n%s", err, out)
	}
	if _, err := ctl2.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}
	if n := r.takeovers(t); n != 1 {
		t.Fatalf("takeovers counted %v times by the end, want 1", n)
	}
	harness.AssertNoLeaks(t, harness.LeakCheck{Dir: r.Dir, Empty: []string{r.Loops.ImageDir}, Settle: 5 * time.Second})
}

// takeovers reads csi_libstorage_takeovers_total{backend,proof} of the new
// node's plugin.
func (r Rig) takeovers(t *testing.T) float64 {
	t.Helper()
	mfs, err := r.New.Plugin.Metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "csi_libstorage_takeovers_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["backend"] == r.Backend && labels["proof"] == r.Proof {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
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
