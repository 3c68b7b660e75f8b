package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/csi-libstorage/csi-libstorage/internal/loop"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// agent is one node plugin in its own mount namespace, with the mount
// root of its Mesos agent.
type agent struct {
	*plugin
	id   string
	root string
}

func (e *env) agent(id string, cfg string) *agent {
	e.t.Helper()
	p := e.nodePlugin(id, id, cfg, true)
	if res := mesosInit(e.t, p, false, true); res.nodeID != id {
		e.t.Fatalf("%s: NodeGetInfo node_id %q", id, res.nodeID)
	}
	return &agent{plugin: p, id: id, root: filepath.Join(e.dir, id, "csi", "csi.libstorage.io", "default", "mounts")}
}

func (a *agent) paths(volID string) mesosPaths { return volumePaths(a.root, volID) }

func (a *agent) stage(t *testing.T, volID string, cap *csi.VolumeCapability, pc map[string]string) error {
	t.Helper()
	p := a.paths(volID)
	mesosMkdirs(t, p)
	_, err := call(t, func(ctx context.Context) (*csi.NodeStageVolumeResponse, error) {
		return a.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: volID, PublishContext: pc, StagingTargetPath: p.staging, VolumeCapability: cap})
	})
	return err
}

func (a *agent) publish(t *testing.T, volID string, cap *csi.VolumeCapability, pc map[string]string, readOnly bool) {
	t.Helper()
	p := a.paths(volID)
	must(t, a.id+": NodePublishVolume", func(ctx context.Context) (*csi.NodePublishVolumeResponse, error) {
		return a.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
			VolumeId: volID, PublishContext: pc, StagingTargetPath: p.staging, TargetPath: p.target, VolumeCapability: cap, Readonly: readOnly,
		})
	})
	if ms := a.mountsAt(p.target); len(ms) != 1 || ms[0].readOnly() != readOnly {
		t.Errorf("%s: mounts at the target in its namespace: %+v, want one with ro=%t", a.id, ms, readOnly)
	}
}

func (a *agent) stagePublish(t *testing.T, volID string, cap *csi.VolumeCapability, pc map[string]string, readOnly bool) {
	t.Helper()
	if err := a.stage(t, volID, cap, pc); err != nil {
		t.Fatalf("%s: NodeStageVolume: %v", a.id, err)
	}
	a.publish(t, volID, cap, pc, readOnly)
}

func (a *agent) unpublishUnstage(t *testing.T, volID string) {
	t.Helper()
	p := a.paths(volID)
	must(t, a.id+": NodeUnpublishVolume", func(ctx context.Context) (*csi.NodeUnpublishVolumeResponse, error) {
		return a.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: volID, TargetPath: p.target})
	})
	must(t, a.id+": NodeUnstageVolume", func(ctx context.Context) (*csi.NodeUnstageVolumeResponse, error) {
		return a.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: volID, StagingTargetPath: p.staging})
	})
	if ms := a.mountsUnder(filepath.Dir(p.staging)); len(ms) > 0 {
		t.Errorf("%s: mounts left in its namespace: %+v", a.id, ms)
	}
}

// writeFile writes data to a file under the volume's target inside the
// agent's namespace, with fsync, and returns its sha256.
func (a *agent) writeFile(t *testing.T, volID, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(a.paths(volID).target, name)
	if _, err := a.nsenter(data, "dd", "of="+path, "bs=1M", "conv=fsync", "status=none"); err != nil {
		t.Fatalf("%s: write %s: %v", a.id, path, err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// sha256 reads a file under the volume's target inside the agent's
// namespace.
func (a *agent) sha256(t *testing.T, volID, name string) string {
	t.Helper()
	out, err := a.nsenter(nil, "sha256sum", filepath.Join(a.paths(volID).target, name))
	if err != nil {
		t.Errorf("%s: %v", a.id, err)
		return ""
	}
	return strings.Fields(out)[0]
}

// canWrite tries to create a file under the target inside the namespace.
func (a *agent) canWrite(t *testing.T, volID string) (bool, string) {
	t.Helper()
	out, err := a.nsenter(nil, "sh", "-c", `echo x > "$1/probe-write" 2>&1`, "sh", a.paths(volID).target)
	if err != nil {
		return false, err.Error() + out
	}
	return true, ""
}

// fsUUID returns the UUID of the filesystem staged for volID on the agent,
// probed from the device itself.
func (a *agent) fsUUID(t *testing.T, volID string) string {
	t.Helper()
	ms := a.mountsAt(a.paths(volID).staging)
	if len(ms) != 1 {
		t.Fatalf("%s: mounts at staging: %+v", a.id, ms)
	}
	out, err := exec.Command("blkid", "-p", "-s", "UUID", "-o", "value", ms[0].Source).Output()
	if err != nil {
		t.Fatalf("blkid -p %s: %v", ms[0].Source, err)
	}
	return strings.TrimSpace(string(out))
}

func controllerPublish(t *testing.T, ctl *plugin, volID, node string, cap *csi.VolumeCapability, readOnly bool) (map[string]string, error) {
	t.Helper()
	r, err := call(t, func(ctx context.Context) (*csi.ControllerPublishVolumeResponse, error) {
		return ctl.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: volID, NodeId: node, VolumeCapability: cap, Readonly: readOnly})
	})
	return r.GetPublishContext(), err
}

func controllerUnpublish(t *testing.T, ctl *plugin, volID, node string) {
	t.Helper()
	must(t, "ControllerUnpublishVolume "+node, func(ctx context.Context) (*csi.ControllerUnpublishVolumeResponse, error) {
		return ctl.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: volID, NodeId: node})
	})
}

// TestTwoAgents runs one controller and two node plugins, agent-a and
// agent-b, each node in a mount namespace of its own, all on one pool
// directory (the shared storage network). It proves that a volume moves
// between agents with its data and its filesystem intact, that the
// single-node-writer rule holds on both the ControllerPublish path and the
// isolator's self-attach path, that MULTI_NODE_READER_ONLY readers share a
// volume read-only, and what an operator can do when an agent dies holding
// a volume.
func TestTwoAgents(t *testing.T) {
	e := newEnv(t)
	pool := filepath.Join(e.dir, "pool")
	cfg := e.config(isolatorConfig, pool)
	ctl := e.controllerPlugin("controller", cfg)
	a := e.agent("agent-a", cfg)
	b := e.agent("agent-b", cfg)
	cap := mountCap("ext4", snw)

	t.Run("move with ControllerPublish", func(t *testing.T) {
		vol := createVolume(t, ctl, "moving", 64*mib, map[string]string{"fsType": "ext4"}, cap).GetVolumeId()
		pc, err := controllerPublish(t, ctl, vol, a.id, cap, false)
		if err != nil {
			t.Fatal(err)
		}
		a.stagePublish(t, vol, cap, pc, false)
		if m := readMeta(t, pool, vol); m.Formatted != "ext4" {
			t.Errorf("formatted mark after the first stage: %q", m.Formatted)
		}
		sum := a.writeFile(t, vol, "data", randomData(t, 1<<20))
		if got := a.sha256(t, vol, "data"); got != sum {
			t.Fatalf("read back on agent-a: %s, want %s", got, sum)
		}
		uuid := a.fsUUID(t, vol)
		// The mounts live in agent-a's namespace only.
		if ms := harness.MountsUnder(t, e.dir); len(ms) > 0 {
			t.Errorf("agent-a's mounts leaked into the host namespace: %v", ms)
		}
		if ms := b.mountsUnder(e.dir); len(ms) > 0 {
			t.Errorf("agent-a's mounts visible in agent-b's namespace: %v", ms)
		}

		// Single node writer, while published read-write on agent-a.
		_, err = controllerPublish(t, ctl, vol, b.id, cap, false)
		wantCode(t, "ControllerPublish to agent-b while agent-a writes", err, codes.FailedPrecondition)
		_, err = controllerPublish(t, ctl, vol, b.id, cap, true)
		wantCode(t, "read-only ControllerPublish to agent-b while agent-a writes", err, codes.FailedPrecondition)
		wantCode(t, "NodeStage on agent-b without ControllerPublish while agent-a writes", b.stage(t, vol, cap, nil), codes.FailedPrecondition)
		if ms := b.mountsUnder(e.dir); len(ms) > 0 {
			t.Errorf("agent-b mounted something after a refused stage: %v", ms)
		}
		if m := readMeta(t, pool, vol); len(m.Attachments) != 1 || m.Attachments[0].Node != a.id {
			t.Errorf("attachments: %+v, want agent-a only", m.Attachments)
		}

		a.unpublishUnstage(t, vol)
		controllerUnpublish(t, ctl, vol, a.id)
		if ls := volumeLoops(t, pool, vol); len(ls) != 0 {
			t.Errorf("loop devices after agent-a let go: %v", ls)
		}

		pc, err = controllerPublish(t, ctl, vol, b.id, cap, false)
		if err != nil {
			t.Fatalf("ControllerPublish to agent-b after agent-a let go: %v", err)
		}
		b.stagePublish(t, vol, cap, pc, false)
		if got := b.sha256(t, vol, "data"); got != sum {
			t.Errorf("agent-b reads sha256 %s, agent-a wrote %s", got, sum)
		}
		if got := b.fsUUID(t, vol); got != uuid {
			t.Errorf("filesystem UUID on agent-b %q, on agent-a %q: the volume was formatted again", got, uuid)
		}
		b.unpublishUnstage(t, vol)
		controllerUnpublish(t, ctl, vol, b.id)
		deleteVolume(t, ctl, vol)
	})

	t.Run("move on the isolator path", func(t *testing.T) {
		vol := createVolume(t, ctl, "isolated", 64*mib, nil, cap).GetVolumeId()
		a.stagePublish(t, vol, cap, nil, false) // attaches itself
		if m := readMeta(t, pool, vol); len(m.Attachments) != 1 || m.Attachments[0].Node != a.id || !m.Attachments[0].ByNode {
			t.Errorf("attachments after agent-a's stage: %+v, want agent-a by node", m.Attachments)
		}
		sum := a.writeFile(t, vol, "data", randomData(t, 256<<10))
		for i := 0; i < 2; i++ { // Mesos retries nothing here, but a second task on agent-b would ask again
			wantCode(t, "NodeStage on agent-b while agent-a has the volume staged", b.stage(t, vol, cap, nil), codes.FailedPrecondition)
		}
		if ls := volumeLoops(t, pool, vol); len(ls) != 1 {
			t.Errorf("loop devices after agent-b's refused stage: %v, want agent-a's only", ls)
		}
		a.unpublishUnstage(t, vol)
		if m := readMeta(t, pool, vol); len(m.Attachments) != 0 {
			t.Errorf("attachments after agent-a's unstage: %+v", m.Attachments)
		}
		b.stagePublish(t, vol, cap, nil, false)
		if got := b.sha256(t, vol, "data"); got != sum {
			t.Errorf("agent-b reads sha256 %s, agent-a wrote %s", got, sum)
		}
		wantCode(t, "NodeStage on agent-a while agent-b has the volume staged", a.stage(t, vol, cap, nil), codes.FailedPrecondition)
		b.unpublishUnstage(t, vol)
		deleteVolume(t, ctl, vol)
	})

	t.Run("multi-node readers", func(t *testing.T) {
		ro := mountCap("ext4", mnro)
		// A volume is written once and read by many only if it is
		// created for both modes: the pool stores the modes and refuses
		// any other at attach time.
		vol := createVolume(t, ctl, "site-content", 64*mib, nil, cap, ro).GetVolumeId()
		a.stagePublish(t, vol, cap, nil, false)
		sum := a.writeFile(t, vol, "index.html", randomData(t, 128<<10))
		a.unpublishUnstage(t, vol)

		// Volume.mode RO with MULTI_NODE_READER_ONLY on both agents at
		// once (the readers-csi.json app).
		a.stagePublish(t, vol, ro, nil, true)
		b.stagePublish(t, vol, ro, nil, true)
		m := readMeta(t, pool, vol)
		if len(m.Attachments) != 2 {
			t.Errorf("attachments: %+v, want both agents", m.Attachments)
		}
		for _, at := range m.Attachments {
			if !at.ReadOnly || at.Mode != "MULTI_NODE_READER_ONLY" {
				t.Errorf("attachment %+v is not a read-only reader", at)
			}
		}
		for _, ag := range []*agent{a, b} {
			if got := ag.sha256(t, vol, "index.html"); got != sum {
				t.Errorf("%s reads sha256 %s, want %s", ag.id, got, sum)
			}
			if ok, _ := ag.canWrite(t, vol); ok {
				t.Errorf("%s could write to a MULTI_NODE_READER_ONLY volume", ag.id)
			}
			if ms := ag.mountsAt(ag.paths(vol).staging); len(ms) != 1 || !ms[0].readOnly() {
				t.Errorf("%s: staging mounts %+v, want one read-only", ag.id, ms)
			}
		}
		// A writer cannot join the readers.
		wantCode(t, "ControllerPublish SINGLE_NODE_WRITER while readers hold the volume", func() error {
			_, err := controllerPublish(t, ctl, vol, a.id, cap, false)
			return err
		}(), codes.AlreadyExists)

		a.unpublishUnstage(t, vol)
		if got := b.sha256(t, vol, "index.html"); got != sum {
			t.Errorf("agent-b reads sha256 %s after agent-a left, want %s", got, sum)
		}
		b.unpublishUnstage(t, vol)
		if ls := volumeLoops(t, pool, vol); len(ls) != 0 {
			t.Errorf("loop devices after both readers left: %v", ls)
		}
		if m := readMeta(t, pool, vol); len(m.Attachments) != 0 {
			t.Errorf("attachments after both readers left: %+v", m.Attachments)
		}
		deleteVolume(t, ctl, vol)

		// A volume created for MULTI_NODE_READER_ONLY alone can never be
		// written by this plugin (it has no content sources): it is
		// refused for a writer.
		only := createVolume(t, ctl, "readers-only", 64*mib, nil, ro).GetVolumeId()
		_, err := controllerPublish(t, ctl, only, a.id, cap, false)
		wantCode(t, "ControllerPublish SINGLE_NODE_WRITER of a reader-only volume", err, codes.InvalidArgument)
		deleteVolume(t, ctl, only)
	})

	t.Run("take over from a dead agent", func(t *testing.T) {
		vol := createVolume(t, ctl, "orphaned", 64*mib, nil, cap).GetVolumeId()
		pc, err := controllerPublish(t, ctl, vol, a.id, cap, false)
		if err != nil {
			t.Fatal(err)
		}
		a.stagePublish(t, vol, cap, pc, false)
		sum := a.writeFile(t, vol, "data", randomData(t, 512<<10))
		loops := volumeLoops(t, pool, vol)
		if len(loops) != 1 {
			t.Fatalf("loop devices: %v", loops)
		}

		// agent-a's host dies: the plugin is killed and its mount
		// namespace goes with it. The loop device stays bound.
		a.kill9()
		deadline := time.Now().Add(10 * time.Second)
		for {
			busy, err := loop.InUse(loops[0].Device)
			if err != nil {
				t.Fatal(err)
			}
			if !busy {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is still held 10 s after agent-a's namespace died", loops[0].Device)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if ls := volumeLoops(t, pool, vol); len(ls) != 1 {
			t.Errorf("loop devices after the kill: %v, want the dead agent's one", ls)
		}
		// The pool still records agent-a: nothing tells the plugin that
		// it died, so agent-b is refused.
		if m := readMeta(t, pool, vol); len(m.Attachments) != 1 || m.Attachments[0].Node != a.id {
			t.Errorf("attachments after the kill: %+v", m.Attachments)
		}
		_, err = controllerPublish(t, ctl, vol, b.id, cap, false)
		wantCode(t, "ControllerPublish to agent-b while the dead agent-a holds the volume", err, codes.FailedPrecondition)

		// A CO's ControllerUnpublish cannot take it either: the pool
		// records that agent-a still has the device connected, and the
		// plugin cannot tell a dead agent from a partitioned one.
		_, err = call(t, func(ctx context.Context) (*csi.ControllerUnpublishVolumeResponse, error) {
			return ctl.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vol, NodeId: a.id})
		})
		wantCode(t, "ControllerUnpublish from the dead agent-a", err, codes.FailedPrecondition)
		if err == nil || !strings.Contains(err.Error(), "force-detach") {
			t.Errorf("the refusal does not tell the operator what to do: %v", err)
		}

		// The operator's action, after fencing agent-a: force the detach.
		out, err := exec.Command(binary, "force-detach", "--config", cfg, "--volume", vol, "--node", a.id).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "yes-the-node-is-dead") {
			t.Fatalf("force-detach without confirmation: %v\n%s", err, out)
		}
		out, err = exec.Command(binary, "force-detach", "--config", cfg, "--volume", vol, "--node", a.id, "--yes-the-node-is-dead").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "forcibly detached") {
			t.Fatalf("force-detach: %v\n%s", err, out)
		}
		pc, err = controllerPublish(t, ctl, vol, b.id, cap, false)
		if err != nil {
			t.Fatalf("ControllerPublish to agent-b after the operator detached agent-a: %v", err)
		}
		b.stagePublish(t, vol, cap, pc, false)
		if got := b.sha256(t, vol, "data"); got != sum {
			t.Errorf("agent-b reads sha256 %s, dead agent-a wrote %s", got, sum)
		}

		// agent-a comes back (same id, new namespace) while agent-b has
		// the volume: it cannot take it back, and the unstage a
		// recovering agent sends for its old staging path does not
		// disturb agent-b.
		a2 := e.agent("agent-a", cfg)
		a2.root = a.root
		wantCode(t, "NodeStage on the restarted agent-a", a2.stage(t, vol, cap, nil), codes.FailedPrecondition)
		_, err = controllerPublish(t, ctl, vol, a2.id, cap, false)
		wantCode(t, "ControllerPublish to the restarted agent-a", err, codes.FailedPrecondition)
		must(t, "NodeUnstage of the old staging path on the restarted agent-a", func(ctx context.Context) (*csi.NodeUnstageVolumeResponse, error) {
			return a2.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: vol, StagingTargetPath: a2.paths(vol).staging})
		})
		if got := b.sha256(t, vol, "data"); got != sum {
			t.Errorf("agent-b reads sha256 %s after agent-a's unstage, want %s", got, sum)
		}
		if m := readMeta(t, pool, vol); len(m.Attachments) != 1 || m.Attachments[0].Node != b.id {
			t.Errorf("attachments after the restarted agent-a's unstage: %+v, want agent-b", m.Attachments)
		}

		b.unpublishUnstage(t, vol)
		controllerUnpublish(t, ctl, vol, b.id)
		if ls := volumeLoops(t, pool, vol); len(ls) != 0 {
			t.Errorf("loop devices after agent-b let go: %v (the dead agent's device must not leak)", ls)
		}
		deleteVolume(t, ctl, vol)
		e.assertClean(a2.plugin, b.plugin)
		a2.stop()
	})

	b.stop()
	ctl.stop()
	if !a.stopped {
		a.stop()
	}
	e.assertClean()
}
