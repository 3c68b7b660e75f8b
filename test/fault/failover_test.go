package fault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends/file"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// takeoverPoints are the steps of an automatic takeover on the node that
// takes the volume (the isolator path: NodeStage attaches it, taking it
// from the dead holder), and of its later release.
var takeoverPoints = []string{
	"file.metadata.updated",
	"file.takeover.recorded",
	"file.connected.updated",
	"node.stage.connected",
	"node.stage.mounted",
	"node.publish.target-created",
	"node.publish.mounted",
	"node.unpublish.unmounted",
	"node.unstage.unmounted",
	"file.disconnect.detached",
	"node.unstage.disconnected",
}

// matrixLease is short so a trial waits about two seconds for a lease.
const matrixLease = time.Second

// retryCall runs f as a CO retries it: after the injected crash it
// restarts the plugin without the fault and calls again, and it calls
// again on FAILED_PRECONDITION (the holder's lease has not expired yet)
// and UNAVAILABLE, until within has passed.
func retryCall[R any](tr *trial, what string, within time.Duration, f func(ctx context.Context, ctl csi.ControllerClient, node csi.NodeClient) (R, error)) R {
	tr.t.Helper()
	end := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		r, err := f(ctx, csi.NewControllerClient(tr.p.conn), csi.NewNodeClient(tr.p.conn))
		cancel()
		if err == nil {
			return r
		}
		code := status.Code(err)
		wait := 10 * time.Millisecond
		if code != codes.FailedPrecondition {
			wait = 2 * time.Second // a killed plugin's exit is on its way
		}
		select {
		case <-tr.p.done:
			if !strings.Contains(tr.p.stderr.String(), "fault: crash at "+tr.crashAt) {
				tr.t.Fatalf("%s: %v; the plugin died without the injected fault\n%s", what, err, tr.p.stderr)
			}
			tr.crashes++
			tr.p.conn.Close()
			tr.start(false)
			continue
		case <-time.After(wait):
		}
		if code != codes.FailedPrecondition && code != codes.Unavailable {
			tr.t.Fatalf("%s: %v (plugin still running)\n%s", what, err, tr.p.stderr)
		}
		if time.Now().After(end) {
			tr.t.Fatalf("%s: still refused after %v: %v", what, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type matrixMeta struct {
	Attachments []struct {
		Node      string `json:"node"`
		Connected bool   `json:"connected"`
	} `json:"attachments"`
}

func readAttachments(t *testing.T, pool, vol string) []string {
	t.Helper()
	_, native, _ := strings.Cut(vol, "/")
	metaPath, _ := file.PoolPaths(pool, native)
	data, err := os.ReadFile(metaPath)
	if err != nil {
		t.Fatal(err)
	}
	var m matrixMeta
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range m.Attachments {
		out = append(out, a.Node)
	}
	return out
}

// TestCrashDuringTakeover kills the node that takes a volume over from a
// dead holder at every hit of every step of the takeover and of its later
// release, restarts it and retries, as a CO would. The volume ends up with
// exactly one holder (the taker) and its data intact, and after the
// release nothing is left: no mount, no loop device (the dead holder's
// included), no attachment.
func TestCrashDuringTakeover(t *testing.T) {
	harness.RequireRoot(t)
	trials, crashes := 0, 0
	for _, point := range takeoverPoints {
		t.Run(point, func(t *testing.T) {
			n, c := everyHit(t, point, 20, func(hit int) int { return takeoverTrial(t, point, hit) })
			trials, crashes = trials+n, crashes+c
		})
	}
	t.Logf("takeover fault matrix: %d points, %d trials, %d crashes; every retry left one holder, data intact, nothing behind", len(takeoverPoints), trials, crashes)
}

func takeoverTrial(t *testing.T, point string, hit int) (crashes int) {
	dir := harness.TempDir(t)
	pool := filepath.Join(dir, "pool")
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "backends:\n  - name: local\n    type: file\n    dir: %s\n    lease: %s\n", pool, matrixLease), 0o600); err != nil {
		t.Fatal(err)
	}
	holder := &trial{t: t, dir: dir, sock: filepath.Join(dir, "holder.sock"), pool: pool, node: "holder", args: []string{"--config", cfg}}
	taker := &trial{t: t, dir: dir, sock: filepath.Join(dir, "taker.sock"), pool: pool, node: "taker", args: []string{"--config", cfg}, crashAt: point, hit: hit}
	holder.start(false)
	mnt := func(who, what string) string { return filepath.Join(dir, who, what) }
	for _, who := range []string{"holder", "taker"} {
		os.MkdirAll(filepath.Join(dir, who), 0o750)
	}
	vol := call(holder, "CreateVolume", func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.CreateVolumeResponse, error) {
		return c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "db", VolumeCapabilities: []*csi.VolumeCapability{snw}, CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}})
	}).GetVolume().GetVolumeId()
	call(holder, "NodeStage on the holder", func(ctx context.Context, _ csi.ControllerClient, n csi.NodeClient) (*csi.NodeStageVolumeResponse, error) {
		return n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: vol, StagingTargetPath: mnt("holder", "staging"), VolumeCapability: snw})
	})
	call(holder, "NodePublish on the holder", func(ctx context.Context, _ csi.ControllerClient, n csi.NodeClient) (*csi.NodePublishVolumeResponse, error) {
		return n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: vol, StagingTargetPath: mnt("holder", "staging"), TargetPath: mnt("holder", "target"), VolumeCapability: snw})
	})
	data := make([]byte, 256<<10)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(mnt("holder", "target"), "data"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	unix.Sync()
	// The holder's host dies: the plugin is killed, its mounts go with
	// its mount namespace; its loop device stays bound.
	holder.p.conn.Close()
	holder.p.cmd.Process.Signal(unix.SIGKILL)
	<-holder.p.done
	for _, m := range []string{mnt("holder", "target"), mnt("holder", "staging")} {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
	}

	taker.start(true)
	within := 4*matrixLease + 30*time.Second
	retryCall(taker, "NodeStage on the taker", within, func(ctx context.Context, _ csi.ControllerClient, n csi.NodeClient) (*csi.NodeStageVolumeResponse, error) {
		return n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: vol, StagingTargetPath: mnt("taker", "staging"), VolumeCapability: snw})
	})
	if got := readAttachments(t, pool, vol); len(got) != 1 || got[0] != "taker" {
		t.Fatalf("holders after the takeover: %v, want the taker alone", got)
	}
	retryCall(taker, "NodePublish on the taker", within, func(ctx context.Context, _ csi.ControllerClient, n csi.NodeClient) (*csi.NodePublishVolumeResponse, error) {
		return n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: vol, StagingTargetPath: mnt("taker", "staging"), TargetPath: mnt("taker", "target"), VolumeCapability: snw})
	})
	if got, err := os.ReadFile(filepath.Join(mnt("taker", "target"), "data")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("data on the taker: %v (missing or changed)", err)
	}
	retryCall(taker, "NodeUnpublish on the taker", within, func(ctx context.Context, _ csi.ControllerClient, n csi.NodeClient) (*csi.NodeUnpublishVolumeResponse, error) {
		return n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: vol, TargetPath: mnt("taker", "target")})
	})
	retryCall(taker, "NodeUnstage on the taker", within, func(ctx context.Context, _ csi.ControllerClient, n csi.NodeClient) (*csi.NodeUnstageVolumeResponse, error) {
		return n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: vol, StagingTargetPath: mnt("taker", "staging")})
	})
	if got := readAttachments(t, pool, vol); len(got) != 0 {
		t.Fatalf("holders after the taker's unstage: %v, want none", got)
	}
	retryCall(taker, "DeleteVolume", within, func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.DeleteVolumeResponse, error) {
		return c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol})
	})
	taker.stop()
	// The dead holder's lease file stays (nobody may remove another
	// node's lease); everything else must be gone.
	harness.AssertNoLeaks(t, harness.LeakCheck{
		Dir: dir, Files: pool, Keep: []string{"nodes", "pool.lock", "leases"},
		Empty: []string{filepath.Join(pool, "vols"), filepath.Join(pool, "volumes"), filepath.Join(pool, "names")},
	})
	if left, _ := os.ReadDir(filepath.Join(pool, "leases")); len(left) > 2 {
		t.Errorf("lease files: %v, want at most the dead holder's lease and the taker's reference", left)
	}
	return taker.crashes
}
