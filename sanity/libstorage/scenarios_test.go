package libstorage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func mountCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

var snw = mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)

func (e *env) create(ctx context.Context, name, backend string) (*csi.Volume, error) {
	resp, err := e.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{
		Name:               name,
		CapacityRange:      &csi.CapacityRange{RequiredBytes: 1 << 30},
		VolumeCapabilities: []*csi.VolumeCapability{snw},
		Parameters:         map[string]string{"backend": backend},
	})
	return resp.GetVolume(), err
}

func (e *env) mustCreate(t *testing.T, name, backend string) *csi.Volume {
	t.Helper()
	v, err := e.create(context.Background(), name, backend)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return v
}

func named(vols []libstoragesimVolume, name string) int {
	n := 0
	for _, v := range vols {
		if v.Name == name {
			n++
		}
	}
	return n
}

// TestCreateRetries: a create whose answer is lost, or whose task outlives
// the server's task timeout or the caller's deadline, never leaves two
// volumes of one name (the server itself makes a second one).
func TestCreateRetries(t *testing.T) {
	timeouts := make(chan int, 16)
	e := newEnv(t, envOptions{taskTimeout: 100 * time.Millisecond, onTimeout: func(_ string, id int) { timeouts <- id }})

	t.Run("lost answer", func(t *testing.T) {
		e.sim.LoseResponses("create", 1)
		v, err := e.create(context.Background(), "lost", "rexray")
		if err != nil {
			// A failed call is fine as long as the retry finds the
			// volume instead of making another.
			if v, err = e.create(context.Background(), "lost", "rexray"); err != nil {
				t.Fatalf("retry: %v", err)
			}
		}
		again := e.mustCreate(t, "lost", "rexray")
		if again.VolumeId != v.VolumeId {
			t.Errorf("retry gave %s, first call %s", again.VolumeId, v.VolumeId)
		}
		if n := named(simVolumes(e, "cinder"), "lost"); n != 1 {
			t.Errorf("server holds %d volumes called lost, want 1", n)
		}
	})

	t.Run("408 then success", func(t *testing.T) {
		release := e.sim.Hold("cinder")
		done := make(chan error, 1)
		go func() {
			_, err := e.create(context.Background(), "slow", "rexray")
			done <- err
		}()
		<-timeouts // the server answered 408 with the task
		release()
		if err := <-done; err != nil {
			t.Fatalf("create after a 408: %v", err)
		}
		if n := named(simVolumes(e, "cinder"), "slow"); n != 1 {
			t.Errorf("server holds %d volumes called slow, want 1", n)
		}
	})

	t.Run("deadline then retry", func(t *testing.T) {
		release := e.sim.Hold("cinder")
		defer release()
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		_, err := e.create(ctx, "late", "rexray")
		cancel()
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
			t.Errorf("create past its deadline: %v, want UNAVAILABLE or DEADLINE_EXCEEDED (never ABORTED)", err)
		}
		<-timeouts
		// The retry comes while the first task still waits in the
		// server's queue: it must follow that task, not queue another.
		mark := len(e.sim.Calls())
		done := make(chan error, 1)
		go func() {
			_, err := e.create(context.Background(), "late", "rexray")
			done <- err
		}()
		waitFor(t, func() bool {
			for _, c := range e.sim.Calls()[mark:] {
				if strings.HasPrefix(c.Path, "/tasks/") || c.Method == "POST" {
					return true
				}
			}
			return false
		})
		release()
		if err := <-done; err != nil {
			t.Fatalf("retry: %v", err)
		}
		if n := named(simVolumes(e, "cinder"), "late"); n != 1 {
			t.Errorf("server holds %d volumes called late, want 1", n)
		}
	})

	for _, n := range []string{"lost", "slow", "late"} {
		for _, v := range simVolumes(e, "cinder") {
			if v.Name == n {
				if _, err := e.ctl.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: "rexray/" + v.ID}); err != nil {
					t.Errorf("delete %s: %v", v.ID, err)
				}
			}
		}
	}
	e.assertNoVolumes(t, "cinder")
}

// TestAttachGuards covers the server's traps around attachments on a vfs
// service, which enforces nothing itself.
func TestAttachGuards(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	v := e.mustCreate(t, "guarded", "vfs")
	native := strings.TrimPrefix(v.VolumeId, "vfs/")
	publish := func(node string) error {
		_, err := e.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.VolumeId, NodeId: node, VolumeCapability: snw})
		return err
	}
	unpublish := func(node string) error {
		_, err := e.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.VolumeId, NodeId: node})
		return err
	}
	holders := func() []string {
		for _, sv := range simVolumes(e, "vfs") {
			if sv.ID == native {
				var out []string
				for _, a := range sv.Attachments {
					out = append(out, a.InstanceID.ID)
				}
				return out
			}
		}
		t.Fatalf("volume %s is gone", native)
		return nil
	}

	// The attach carries the target node's instance id, not the
	// plugin's own (rexray#913). Its answer is lost on the way: the
	// plugin finds the attachment it made.
	e.sim.LoseResponses("attach", 1)
	if err := publish(otherNode); err != nil {
		t.Fatalf("publish to %s: %v", otherNode, err)
	}
	if h := holders(); len(h) != 1 || h[0] != otherInstance {
		t.Fatalf("holders after publish to %s: %v, want [%s]", otherNode, h, otherInstance)
	}
	// A second writer is refused by the plugin (vfs would accept it).
	if err := publish(nodeID); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second writer: %v, want FAILED_PRECONDITION", err)
	}
	// A delete of an attached volume is refused (the server would do it).
	if _, err := e.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("delete while attached: %v, want FAILED_PRECONDITION", err)
	}
	// Unpublishing from a node that does not hold the volume sends no
	// detach (the server would remove node-b's attachment).
	before := len(e.sim.Calls())
	if err := unpublish(nodeID); err != nil {
		t.Fatalf("unpublish from a non-holder: %v", err)
	}
	for _, c := range e.sim.Calls()[before:] {
		if strings.Contains(c.Query, "detach") {
			t.Errorf("a detach was sent for a node that does not hold the volume: %+v", c)
		}
	}
	if h := holders(); len(h) != 1 || h[0] != otherInstance {
		t.Errorf("holders after unpublish from %s: %v, want [%s]", nodeID, h, otherInstance)
	}
	// The holder's unpublish detaches with the holder's instance id.
	before = len(e.sim.Calls())
	if err := unpublish(otherNode); err != nil {
		t.Fatalf("unpublish from the holder: %v", err)
	}
	sent := false
	for _, c := range e.sim.Calls()[before:] {
		if strings.Contains(c.Query, "detach") {
			sent = true
			if !strings.HasSuffix(c.InstanceID, "="+otherInstance) {
				t.Errorf("detach sent with instance %q, want the holder's %s", c.InstanceID, otherInstance)
			}
		}
	}
	if !sent {
		t.Error("no detach was sent for the holder")
	}
	if h := holders(); len(h) != 0 {
		t.Errorf("holders after the holder's unpublish: %v", h)
	}
	if _, err := e.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	e.assertNoVolumes(t, "vfs")
}

// TestVFSEndToEnd stages a vfs volume the way the Mesos volume/csi
// isolator does (no ControllerPublish): the node attaches it itself, binds
// the volume's directory at the staging path and the target, and
// detaches it again on unstage.
func TestVFSEndToEnd(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	v := e.mustCreate(t, "vfs-e2e", "vfs")
	native := strings.TrimPrefix(v.VolumeId, "vfs/")
	staging := filepath.Join(e.dir, "mesos", "staging")
	target := filepath.Join(e.dir, "mesos", "target")
	for range 2 { // idempotent
		if _, err := e.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: staging, VolumeCapability: snw}); err != nil {
			t.Fatalf("stage: %v", err)
		}
	}
	if a := simVolumes(e, "vfs")[0].Attachments; len(a) != 1 {
		t.Errorf("attachments after stage: %+v, want this node's", a)
	}
	for range 2 {
		if _, err := e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: staging, TargetPath: target, VolumeCapability: snw}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	if err := os.WriteFile(filepath.Join(target, "data"), []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(e.vfsRoot, "vol", native, "data"))
	if err != nil || string(got) != "kept" {
		t.Errorf("the volume's directory holds %q, %v; want what the task wrote", got, err)
	}
	if _, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: staging}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("unstage while published: %v, want FAILED_PRECONDITION", err)
	}
	if _, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.VolumeId, TargetPath: target}); err != nil {
		t.Fatalf("unpublish: %v", err)
	}
	if _, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.VolumeId, StagingTargetPath: staging}); err != nil {
		t.Fatalf("unstage: %v", err)
	}
	if a := simVolumes(e, "vfs")[0].Attachments; len(a) != 0 {
		t.Errorf("attachments after unstage: %+v, want none (the node's own attach is undone)", a)
	}
	if _, err := e.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.vfsRoot, "vol", native)); !os.IsNotExist(err) {
		t.Errorf("volume directory after delete: %v", err)
	}
	e.assertNoVolumes(t, "vfs")
}

// waitFor polls cond, which watches state another goroutine changes, for
// up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCopiesCarryData: a volume made from a snapshot, or cloned from a
// volume, of a block service stages with the source's filesystem and data
// (the test server copies the volume's image, as the real drivers copy
// the disk).
func TestCopiesCarryData(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	ext4 := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	use := func(id string, write bool) string {
		t.Helper()
		staging := filepath.Join(e.dir, "use", strings.ReplaceAll(id, "/", "_"), "staging")
		target := filepath.Join(e.dir, "use", strings.ReplaceAll(id, "/", "_"), "target")
		if _, err := e.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: ext4}); err != nil {
			t.Fatalf("stage %s: %v", id, err)
		}
		if _, err := e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: ext4}); err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
		if write {
			if err := os.WriteFile(filepath.Join(target, "data"), []byte("from the source"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		got, _ := os.ReadFile(filepath.Join(target, "data"))
		if _, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			t.Fatalf("unpublish %s: %v", id, err)
		}
		if _, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
			t.Fatalf("unstage %s: %v", id, err)
		}
		return string(got)
	}
	create := func(name string, src *csi.VolumeContentSource) string {
		t.Helper()
		resp, err := e.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30},
			VolumeCapabilities: []*csi.VolumeCapability{ext4}, VolumeContentSource: src})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return resp.GetVolume().GetVolumeId()
	}
	src := create("source", nil)
	use(src, true)
	snap, err := e.ctl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{SourceVolumeId: src, Name: "snap"})
	if err != nil {
		t.Fatal(err)
	}
	fromSnap := create("from-snap", &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.GetSnapshot().GetSnapshotId()}}})
	clone := create("clone", &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: src}}})
	for _, id := range []string{fromSnap, clone} {
		if got := use(id, false); got != "from the source" {
			t.Errorf("%s holds %q, want the source's data", id, got)
		}
	}
	if _, err := e.ctl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshot().GetSnapshotId()}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{src, fromSnap, clone} {
		if _, err := e.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Fatalf("delete %s: %v", id, err)
		}
	}
	e.assertNoVolumes(t, "cinder")
}

// TestReadOnlyBlock: a read-only publication hands out a device that
// refuses writes at the kernel.
func TestReadOnlyBlock(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	roCap := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY},
	}
	resp, err := e.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "ro", VolumeCapabilities: []*csi.VolumeCapability{roCap}})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetVolume().GetVolumeId()
	pub, err := e.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: nodeID, VolumeCapability: roCap, Readonly: true})
	if err != nil {
		t.Fatal(err)
	}
	staging, target := filepath.Join(e.dir, "ro", "staging"), filepath.Join(e.dir, "ro", "target")
	if _, err := e.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: roCap, PublishContext: pub.GetPublishContext()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: roCap, PublishContext: pub.GetPublishContext(), Readonly: true}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(target, os.O_WRONLY, 0)
	if err == nil {
		_, err = f.Write(make([]byte, 512))
		f.Close()
	}
	if err == nil {
		t.Error("a read-only block publication took a write")
	}
	if _, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: nodeID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}
	e.assertNoVolumes(t, "cinder")
}
