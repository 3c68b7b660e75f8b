package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/csi-libstorage/csi-libstorage/internal/fsutil"
)

// poolLock takes the lock the file pool uses for a volume or a name
// reservation (a byte of <pool>/pool.lock, keyed "volume <id>" or
// "name names/<sha256 of name>"), as another agent's plugin process on the
// shared pool would hold it, and returns its release.
func poolLock(t *testing.T, pool, key string) func() {
	t.Helper()
	l, err := fsutil.NewKeyLocks(filepath.Join(pool, "pool.lock")).Lock(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			l.Close()
		}
	}
	t.Cleanup(release)
	return release
}

func volumeLockKey(t *testing.T, volID string) string { return "volume " + nativeID(t, volID) }

func nameLockKey(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "name names/" + hex.EncodeToString(sum[:])
}

// serverCode waits for the plugin to log the next call of method (for key,
// a volume id or name) after the first `after` such calls, and returns the
// code the plugin answered. When the caller's deadline passes, the client
// reports DEADLINE_EXCEEDED by itself; only the plugin's log tells what
// the plugin answered.
func serverCode(t *testing.T, p *plugin, method, key string, after int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		for _, c := range p.calls() {
			if c.Method == method && (c.Volume == key || c.Name == key) {
				n++
				if n > after {
					return c.Code
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log call %d of %s for %s", p.name, after+1, method, key)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countCalls(p *plugin, method, key string) int {
	n := 0
	for _, c := range p.calls() {
		if c.Method == method && (c.Volume == key || c.Name == key) {
			n++
		}
	}
	return n
}

// busy checks a call that finds its volume (or name) busy for longer than
// its deadline d: it must wait (not fail fast) and end with
// DEADLINE_EXCEEDED, which Mesos retries, never ABORTED, which it does not.
//
// With gRPC the plugin cannot turn a wait that reaches the deadline into
// anything else: the client's deadline fires first (the server learns it
// from grpc-timeout a little later) and the client reports
// DEADLINE_EXCEEDED, while grpc-go's server transport resets the stream at
// its own deadline. So the plugin's log shows CANCELLED or
// DEADLINE_EXCEEDED for such a call, and what matters is that it waited:
// an ABORTED "busy" answer would come back before the deadline.
func busy(t *testing.T, p *plugin, what, method, key string, d time.Duration, do func(ctx context.Context) error) {
	t.Helper()
	before := countCalls(p, method, key)
	began := time.Now()
	_, err := callWithin(t, d, func(ctx context.Context) (struct{}, error) { return struct{}{}, do(ctx) })
	if took := time.Since(began); took < d*9/10 {
		t.Errorf("%s: answered after %v (%v), before its %v deadline: a busy volume must be waited for", what, took, err, d)
	}
	wantCode(t, what, err, codes.DeadlineExceeded)
	if got := serverCode(t, p, method, key, before); got != codes.Canceled.String() && got != codes.DeadlineExceeded.String() {
		t.Errorf("%s: the plugin logged %s, want CANCELLED or DEADLINE_EXCEEDED", what, got)
	}
}

const (
	mStage     = "/csi.v1.Node/NodeStageVolume"
	mCPublish  = "/csi.v1.Controller/ControllerPublishVolume"
	mCreate    = "/csi.v1.Controller/CreateVolume"
	mDelete    = "/csi.v1.Controller/DeleteVolume"
	shortWait  = 300 * time.Millisecond
	mediumWait = 500 * time.Millisecond
)

// TestRetryableCodes checks the codes Mesos acts on. Mesos retries only
// UNAVAILABLE and DEADLINE_EXCEEDED and gives up on ABORTED, so a call that
// waits for a busy volume must end with DEADLINE_EXCEEDED at its deadline,
// whether the volume is busy in this process (a concurrent stage) or in
// another one on the shared pool (its pool lock is held). Calls in wrong
// states get the codes the spec gives, and the undo calls are idempotent.
func TestRetryableCodes(t *testing.T) {
	e := newEnv(t)
	pool := filepath.Join(e.dir, "local-pool")
	const agent = "agent-retry-S0"
	p := e.slrpPlugin("slrp", agent, e.config(slrpConfig, pool))
	mesosInit(t, p, true, true)
	root := filepath.Join(e.dir, "agent", "mounts")
	backend := backendName(t, slrpConfig)
	cap := mountCap("ext4", snw)
	params := map[string]string{"backend": backend}
	vol := createVolume(t, p, "retry-"+uuid4(), 64*mib, params, cap)
	id := vol.GetVolumeId()
	paths := volumePaths(root, id)
	mesosMkdirs(t, paths)
	stageReq := &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: paths.staging, VolumeCapability: cap, VolumeContext: vol.GetVolumeContext()}
	publishReq := &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: paths.staging, TargetPath: paths.target, VolumeCapability: cap}
	unknown := backend + "/00000000000000000000000000000000"

	t.Run("wrong states", func(t *testing.T) {
		for _, c := range []struct {
			name string
			want codes.Code
			do   func(ctx context.Context) error
		}{
			{"NodePublish before NodeStage", codes.FailedPrecondition, func(ctx context.Context) error {
				_, err := p.node.NodePublishVolume(ctx, publishReq)
				return err
			}},
			{"NodeStage of an unknown volume", codes.NotFound, func(ctx context.Context) error {
				r := proto.Clone(stageReq).(*csi.NodeStageVolumeRequest)
				r.VolumeId = unknown
				_, err := p.node.NodeStageVolume(ctx, r)
				return err
			}},
			{"NodeStage of an id that climbs out of the pool", codes.NotFound, func(ctx context.Context) error {
				r := proto.Clone(stageReq).(*csi.NodeStageVolumeRequest)
				r.VolumeId = backend + "/../../etc"
				_, err := p.node.NodeStageVolume(ctx, r)
				return err
			}},
			{"NodeStage of a malformed id", codes.InvalidArgument, func(ctx context.Context) error {
				r := proto.Clone(stageReq).(*csi.NodeStageVolumeRequest)
				r.VolumeId = backend + "/" + strings.Repeat("0", 200) // over the 128 bytes of the spec
				_, err := p.node.NodeStageVolume(ctx, r)
				return err
			}},
			{"NodeStage with block access of a mount volume", codes.InvalidArgument, func(ctx context.Context) error {
				r := proto.Clone(stageReq).(*csi.NodeStageVolumeRequest)
				r.VolumeCapability = &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}, AccessMode: cap.AccessMode}
				_, err := p.node.NodeStageVolume(ctx, r)
				return err
			}},
			{"ControllerPublish to an unregistered node", codes.NotFound, func(ctx context.Context) error {
				_, err := p.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "agent-never-started", VolumeCapability: cap})
				return err
			}},
			{"ControllerPublish of an unknown volume", codes.NotFound, func(ctx context.Context) error {
				_, err := p.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: unknown, NodeId: agent, VolumeCapability: cap})
				return err
			}},
			{"CreateVolume again with another size", codes.AlreadyExists, func(ctx context.Context) error {
				_, err := p.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: readMeta(t, pool, id).Name, CapacityRange: &csi.CapacityRange{RequiredBytes: 128 * mib, LimitBytes: 128 * mib}, VolumeCapabilities: []*csi.VolumeCapability{cap}, Parameters: params})
				return err
			}},
			{"ValidateVolumeCapabilities of an unknown volume", codes.NotFound, func(ctx context.Context) error {
				_, err := p.ctl.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: unknown, VolumeCapabilities: []*csi.VolumeCapability{cap}})
				return err
			}},
			{"NodeUnpublish of a target never published", codes.OK, func(ctx context.Context) error {
				_, err := p.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: paths.target})
				return err
			}},
			{"NodeUnstage of a volume never staged", codes.OK, func(ctx context.Context) error {
				_, err := p.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: paths.staging})
				return err
			}},
			{"ControllerUnpublish of a volume not attached", codes.OK, func(ctx context.Context) error {
				_, err := p.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: agent})
				return err
			}},
			{"DeleteVolume of an unknown volume", codes.OK, func(ctx context.Context) error {
				_, err := p.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: unknown})
				return err
			}},
		} {
			_, err := call(t, func(ctx context.Context) (struct{}, error) { return struct{}{}, c.do(ctx) })
			wantCode(t, c.name, err, c.want)
		}
		// Attached: DeleteVolume must refuse, not destroy.
		must(t, "ControllerPublishVolume", func(ctx context.Context) (*csi.ControllerPublishVolumeResponse, error) {
			return p.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: agent, VolumeCapability: cap})
		})
		_, err := call(t, func(ctx context.Context) (*csi.DeleteVolumeResponse, error) {
			return p.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
		})
		wantCode(t, "DeleteVolume of an attached volume", err, codes.FailedPrecondition)
		if _, err := os.Stat(metaPath(t, pool, id)); err != nil {
			t.Errorf("volume gone after a refused delete: %v", err)
		}
	})

	t.Run("busy in this process", func(t *testing.T) {
		// A stage that cannot finish yet: another process holds the
		// volume's pool lock, so the stage holds this process's lock on
		// the volume while it waits.
		release := poolLock(t, pool, volumeLockKey(t, id))
		before := countCalls(p, mStage, id)
		first := make(chan error, 1)
		go func() {
			_, err := callWithin(t, mesosCallDeadline, func(ctx context.Context) (*csi.NodeStageVolumeResponse, error) {
				return p.node.NodeStageVolume(ctx, stageReq)
			})
			first <- err
		}()
		time.Sleep(200 * time.Millisecond) // let the first stage take the volume
		if n := countCalls(p, mStage, id); n != before {
			t.Fatalf("the first stage returned early (%d calls logged)", n-before)
		}
		busy(t, p, "NodeStage during a concurrent NodeStage", mStage, id, shortWait, func(ctx context.Context) error {
			_, err := p.node.NodeStageVolume(ctx, stageReq)
			return err
		})
		busy(t, p, "ControllerPublish during a NodeStage", mCPublish, id, shortWait, func(ctx context.Context) error {
			_, err := p.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: agent, VolumeCapability: cap})
			return err
		})
		release()
		if err := <-first; err != nil {
			t.Fatalf("the first stage, once the volume was free: %v", err)
		}
		if n := len(p.mountsAt(paths.staging)); n != 1 {
			t.Errorf("%d mounts at staging, want 1", n)
		}
	})

	t.Run("busy in another process", func(t *testing.T) {
		release := poolLock(t, pool, volumeLockKey(t, id))
		for _, c := range []struct {
			name, method string
			do           func(ctx context.Context) error
		}{
			{"NodeStage", mStage, func(ctx context.Context) error {
				_, err := p.node.NodeStageVolume(ctx, stageReq)
				return err
			}},
			{"ControllerPublish", mCPublish, func(ctx context.Context) error {
				_, err := p.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: agent, VolumeCapability: cap})
				return err
			}},
			{"DeleteVolume", mDelete, func(ctx context.Context) error {
				_, err := p.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
				return err
			}},
		} {
			busy(t, p, c.name+" while another process holds the pool lock", c.method, id, mediumWait, c.do)
		}
		release()

		// A CreateVolume whose name another process is creating.
		name := uuid4()
		releaseName := poolLock(t, pool, nameLockKey(name))
		busy(t, p, "CreateVolume while another process creates the name", mCreate, name, mediumWait, func(ctx context.Context) error {
			_, err := p.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, CapacityRange: &csi.CapacityRange{RequiredBytes: 32 * mib, LimitBytes: 32 * mib}, VolumeCapabilities: []*csi.VolumeCapability{cap}, Parameters: params})
			return err
		})
		releaseName()
		// Mesos retries the create: it completes, once.
		v := createVolume(t, p, name, 32*mib, params, cap)
		again := createVolume(t, p, name, 32*mib, params, cap)
		if v.GetVolumeId() != again.GetVolumeId() {
			t.Errorf("retried create gave %s and %s", v.GetVolumeId(), again.GetVolumeId())
		}
		deleteVolume(t, p, v.GetVolumeId())
	})

	// Undo everything.
	must(t, "NodeUnstageVolume", func(ctx context.Context) (*csi.NodeUnstageVolumeResponse, error) {
		return p.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: paths.staging})
	})
	must(t, "ControllerUnpublishVolume", func(ctx context.Context) (*csi.ControllerUnpublishVolumeResponse, error) {
		return p.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: agent})
	})
	deleteVolume(t, p, id)
	p.stop() // also fails the test if the plugin answered ABORTED to anything
	e.assertClean()
}
