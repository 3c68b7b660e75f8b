package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
)

// isolatorVolume is a pre-provisioned volume as a task declares it
// (Volume.Source.CSIVolume.StaticProvisioning) plus the task's Volume.mode.
type isolatorVolume struct {
	id       string
	cap      *csi.VolumeCapability
	context  map[string]string
	readOnly bool // Volume.mode RO
	paths    mesosPaths
}

// isolatorPublish replays what the volume/csi isolator does when it
// prepares a container that uses v (csi_server.cpp publishVolume): create
// staging, NodeStage without publish_context or secrets, create the
// target's parent, NodePublish, and fail unless the target exists.
func isolatorPublish(t *testing.T, p *plugin, v isolatorVolume) error {
	t.Helper()
	mesosMkdirs(t, v.paths)
	if _, err := call(t, func(ctx context.Context) (*csi.NodeStageVolumeResponse, error) {
		return p.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{
			VolumeId: v.id, PublishContext: map[string]string{}, StagingTargetPath: v.paths.staging,
			VolumeCapability: v.cap, VolumeContext: v.context,
		})
	}); err != nil {
		return err
	}
	if _, err := call(t, func(ctx context.Context) (*csi.NodePublishVolumeResponse, error) {
		return p.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
			VolumeId: v.id, PublishContext: map[string]string{}, StagingTargetPath: v.paths.staging,
			TargetPath: v.paths.target, VolumeCapability: v.cap, Readonly: v.readOnly, VolumeContext: v.context,
		})
	}); err != nil {
		return err
	}
	if _, err := os.Stat(v.paths.target); err != nil {
		t.Errorf("Mesos fails the container: target path %s not created: %v", v.paths.target, err)
	}
	return nil
}

// isolatorUnpublish replays the cleanup after the last container using the
// volume: NodeUnpublish (after which Mesos requires the target to be gone),
// then NodeUnstage.
func isolatorUnpublish(t *testing.T, p *plugin, v isolatorVolume) {
	t.Helper()
	must(t, "NodeUnpublishVolume", func(ctx context.Context) (*csi.NodeUnpublishVolumeResponse, error) {
		return p.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.id, TargetPath: v.paths.target})
	})
	if _, err := os.Lstat(v.paths.target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Mesos fails the cleanup: target %s still exists after NodeUnpublish (%v)", v.paths.target, err)
	}
	must(t, "NodeUnstageVolume", func(ctx context.Context) (*csi.NodeUnstageVolumeResponse, error) {
		return p.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.paths.staging})
	})
}

func createVolume(t *testing.T, ctl *plugin, name string, bytes int64, params map[string]string, caps ...*csi.VolumeCapability) *csi.Volume {
	t.Helper()
	r := must(t, "CreateVolume "+name, func(ctx context.Context) (*csi.CreateVolumeResponse, error) {
		return ctl.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{
			Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: bytes},
			VolumeCapabilities: caps, Parameters: params,
		})
	})
	return r.GetVolume()
}

func deleteVolume(t *testing.T, ctl *plugin, id string) {
	t.Helper()
	must(t, "DeleteVolume "+id, func(ctx context.Context) (*csi.DeleteVolumeResponse, error) {
		return ctl.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
	})
}

// TestIsolatorPreProvisioned replays the volume/csi isolator (Mesos 1.11)
// on a pre-provisioned volume: the managed node plugin, launched from the
// shipped config, gets NodeStage and NodePublish without ControllerPublish
// at <root>/<url-encoded id>/{staging,target}; a second container repeats
// both calls identically; a read-only task gets a read-only mount; the
// cleanup after the last container leaves no mount, no loop device and no
// attachment.
func TestIsolatorPreProvisioned(t *testing.T) {
	e := newEnv(t)
	pool := filepath.Join(e.dir, "pool")
	cfg := e.config(isolatorConfig, pool)
	const agent = "d6f4a3c5-0a4b-4c1e-9a57-2f3c1b7c0e11-S3"

	node := e.nodePlugin("node", agent, cfg, false) // the node registers itself
	ctl := e.controllerPlugin("controller", cfg)
	mesosInit(t, node, false, true)
	root := filepath.Join(e.dir, "agent", "csi", "csi.libstorage.io", "default", "mounts")

	cap := mountCap("ext4", snw)
	rw := createVolume(t, ctl, "pgdata", 64*mib, map[string]string{"fsType": "ext4"}, cap)
	ro := createVolume(t, ctl, "site-content", 64*mib, nil, cap)
	vrw := isolatorVolume{id: rw.GetVolumeId(), cap: cap, context: rw.GetVolumeContext(), paths: volumePaths(root, rw.GetVolumeId())}
	vro := isolatorVolume{id: ro.GetVolumeId(), cap: cap, context: ro.GetVolumeContext(), readOnly: true, paths: volumePaths(root, ro.GetVolumeId())}
	if filepath.Base(filepath.Dir(vrw.paths.target)) == filepath.Base(rw.GetVolumeId()) {
		t.Fatalf("volume id %q was not URL-encoded into the path", rw.GetVolumeId())
	}

	// First container.
	if err := isolatorPublish(t, node, vrw); err != nil {
		t.Fatalf("first container: %v", err)
	}
	m := readMeta(t, pool, vrw.id)
	if len(m.Attachments) != 1 || m.Attachments[0].Node != agent || !m.Attachments[0].ByNode {
		t.Errorf("after NodeStage without ControllerPublish: attachments %+v, want one by-node attachment to %s", m.Attachments, agent)
	}
	if m.Formatted != "ext4" {
		t.Errorf("formatted mark %q, want ext4", m.Formatted)
	}
	data := randomData(t, 256<<10)
	if err := os.WriteFile(filepath.Join(vrw.paths.target, "data"), data, 0o600); err != nil {
		t.Fatalf("write through the target: %v", err)
	}
	loops := volumeLoops(t, pool, vrw.id)
	if len(loops) != 1 {
		t.Fatalf("loop devices of the volume: %v, want one", loops)
	}

	// Second container on the same agent: the identical calls again.
	if err := isolatorPublish(t, node, vrw); err != nil {
		t.Fatalf("second container (identical NodeStage + NodePublish): %v", err)
	}
	if n := len(node.mountsAt(vrw.paths.target)); n != 1 {
		t.Errorf("%d mounts stacked at the target after the repeat, want 1", n)
	}
	if n := len(node.mountsAt(vrw.paths.staging)); n != 1 {
		t.Errorf("%d mounts stacked at staging after the repeat, want 1", n)
	}
	if again := volumeLoops(t, pool, vrw.id); len(again) != 1 || again[0].Device != loops[0].Device {
		t.Errorf("loop devices after the repeat: %v, want only %s", again, loops[0].Device)
	}
	if got, err := os.ReadFile(filepath.Join(vrw.paths.target, "data")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("data after the repeat: %d bytes, %v", len(got), err)
	}
	if m2 := readMeta(t, pool, vrw.id); len(m2.Attachments) != 1 {
		t.Errorf("attachments after the repeat: %+v", m2.Attachments)
	}

	// A task with Volume.mode RO: readonly=true in NodePublish.
	if err := isolatorPublish(t, node, vro); err != nil {
		t.Fatalf("read-only container: %v", err)
	}
	ms := node.mountsAt(vro.paths.target)
	if len(ms) != 1 || !ms[0].readOnly() {
		t.Errorf("read-only volume mounts at the target: %+v, want one ro mount", ms)
	}
	err := os.WriteFile(filepath.Join(vro.paths.target, "x"), []byte("x"), 0o600)
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("write to a read-only publish: %v, want EROFS", err)
	}

	// The last containers go away.
	for _, v := range []isolatorVolume{vrw, vro} {
		isolatorUnpublish(t, node, v)
		if ls := volumeLoops(t, pool, v.id); len(ls) != 0 {
			t.Errorf("%s: loop devices left after NodeUnstage: %v", v.id, ls)
		}
		if m := readMeta(t, pool, v.id); len(m.Attachments) != 0 {
			t.Errorf("%s: attachments left after NodeUnstage: %+v", v.id, m.Attachments)
		}
		if ms := node.mountsUnder(filepath.Dir(v.paths.target)); len(ms) != 0 {
			t.Errorf("%s: mounts left: %+v", v.id, ms)
		}
		// An agent that restarts in the middle of the cleanup sends both
		// again.
		isolatorUnpublish(t, node, v)
	}

	// The data survives the cleanup and a new stage on the same agent.
	if err := isolatorPublish(t, node, vrw); err != nil {
		t.Fatalf("publish again: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(vrw.paths.target, "data")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("data after unstage and restage: %d bytes, %v", len(got), err)
	}
	isolatorUnpublish(t, node, vrw)

	deleteVolume(t, ctl, vrw.id)
	deleteVolume(t, ctl, vro.id)
	node.stop()
	ctl.stop()
	e.assertClean()
}

// TestIsolatorReadOnlyNeverWritten stages, on the isolator path, a volume
// that has never been written with a reader-only access mode (a task with
// Volume.mode RO and SINGLE_NODE_READER_ONLY, e.g. a reader started before
// its writer). There is nothing to read, and a read-only stage must not
// write the device: the plugin should refuse with FAILED_PRECONDITION
// before it touches the device (k8s mount-utils refuses the same way), and
// NodeUnstage must give back whatever the failed stage took.
func TestIsolatorReadOnlyNeverWritten(t *testing.T) {
	e := newEnv(t)
	pool := filepath.Join(e.dir, "pool")
	cfg := e.config(isolatorConfig, pool)
	node := e.nodePlugin("node", "agent-ro-S0", cfg, false)
	ctl := e.controllerPlugin("controller", cfg)
	root := filepath.Join(e.dir, "agent", "mounts")
	for _, mode := range []csi.VolumeCapability_AccessMode_Mode{csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, mnro} {
		cap := mountCap("ext4", mode)
		vol := createVolume(t, ctl, "fresh-"+mode.String(), 64*mib, nil, cap)
		v := isolatorVolume{id: vol.GetVolumeId(), cap: cap, readOnly: true, paths: volumePaths(root, vol.GetVolumeId())}
		err := isolatorPublish(t, node, v)
		wantCode(t, mode.String()+" NodeStage of a never-formatted volume", err, codes.FailedPrecondition)
		if m := readMeta(t, pool, v.id); m.Formatted != "" {
			t.Errorf("%s: a read-only stage marked the volume formatted %q", mode, m.Formatted)
		}
		isolatorUnpublish(t, node, v)
		if ls := volumeLoops(t, pool, v.id); len(ls) != 0 {
			t.Errorf("%s: loop devices after NodeUnstage: %v", mode, ls)
		}
		if m := readMeta(t, pool, v.id); len(m.Attachments) != 0 {
			t.Errorf("%s: attachments after NodeUnstage: %+v", mode, m.Attachments)
		}
		deleteVolume(t, ctl, v.id)
	}
	node.stop()
	ctl.stop()
	e.assertClean()
}
