package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"

	"github.com/csi-libstorage/csi-libstorage/internal/loop"
)

// failoverLease is the lease the failover tests run with: short, so a test
// waits seconds, and long enough for a loaded CI machine not to fence a
// live node.
const failoverLease = 2 * time.Second

// withLease rewrites a plugin configuration so its file backends use the
// given lease.
func withLease(t *testing.T, cfg string, lease time.Duration) {
	t.Helper()
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, b := range m["backends"].([]any) {
		if be := b.(map[string]any); be["type"] == "file" {
			be["lease"] = lease.String()
		}
	}
	if data, err = yaml.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitReleased waits until a dead agent's loop device is no longer held
// (its mount namespace died with it).
func waitReleased(t *testing.T, dev string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		busy, err := loop.InUse(dev)
		if err != nil {
			t.Fatal(err)
		}
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still held 10 s after the agent's namespace died", dev)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fsckImage checks a volume's image with fsck -n -f; the volume must be
// unstaged everywhere.
func fsckImage(t *testing.T, pool, vol string) {
	t.Helper()
	if out, err := exec.Command("fsck.ext4", "-n", "-f", imagePath(t, pool, vol)).CombinedOutput(); err != nil {
		t.Errorf("fsck -n of %s: %v\n%s", vol, err, out)
	}
}

// refusedUntilTaken retries try, as a CO retries, until it succeeds. Every
// failure before must be FAILED_PRECONDITION whose message contains each
// of want; at least one must come before the success when mustRefuse.
func refusedUntilTaken(t *testing.T, what string, within time.Duration, want []string, try func() error) (refusals int, took time.Time) {
	t.Helper()
	end := time.Now().Add(within)
	for {
		err := try()
		if err == nil {
			return refusals, time.Now()
		}
		refusals++
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("%s: %v, want FAILED_PRECONDITION until the takeover", what, err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: refusal %q does not say %q", what, err, w)
			}
		}
		if time.Now().After(end) {
			t.Fatalf("%s: still refused after %v: %v", what, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestFailover: automatic failover of file-pool volumes between two agents
// (node plugins in mount namespaces of their own on one pool), with a
// short lease. A killed holder's volume moves after its lease expired a
// period ago, with its data and filesystem; a holder cut off from the
// pool fences itself before anyone takes its volume; a live holder is
// never taken; ControllerUnpublish of a dead node succeeds only after
// expiry.
func TestFailover(t *testing.T) {
	e := newEnv(t)
	pool := filepath.Join(e.dir, "pool")
	cfg := e.config(isolatorConfig, pool)
	withLease(t, cfg, failoverLease)
	ctl := e.controllerPlugin("controller", cfg)
	a := e.agent("agent-a", cfg)
	b := e.agent("agent-b", cfg)
	cap := mountCap("ext4", snw)
	takeWithin := 2*failoverLease + 20*time.Second // generous: the CPU is shared
	holderNamed := []string{"agent-a", "may be taken over from", "force-detach"}

	t.Run("holder killed", func(t *testing.T) {
		vol := createVolume(t, ctl, "killed-holder", 64*mib, nil, cap).GetVolumeId()
		a.stagePublish(t, vol, cap, nil, false) // the isolator path: a attaches itself
		sum := a.writeFile(t, vol, "data", randomData(t, 1<<20))
		uuid := a.fsUUID(t, vol)
		loops := volumeLoops(t, pool, vol)
		if len(loops) != 1 {
			t.Fatalf("loop devices: %v", loops)
		}
		a.kill9()
		killed := time.Now()
		waitReleased(t, loops[0].Device)
		refusals, took := refusedUntilTaken(t, "NodeStage on agent-b", takeWithin, holderNamed, func() error { return b.stage(t, vol, cap, nil) })
		if refusals == 0 {
			t.Error("agent-b's first NodeStage after the kill succeeded: the dead holder's lease was not waited for")
		}
		if d := took.Sub(killed); d < 2*failoverLease-failoverLease/5 {
			t.Errorf("taken over %v after the kill, sooner than the lease allows", d)
		}
		t.Logf("failover after SIGKILL: %v (%d refusals)", took.Sub(killed).Round(time.Millisecond), refusals)
		if m := readMeta(t, pool, vol); len(m.Attachments) != 1 || m.Attachments[0].Node != b.id {
			t.Errorf("attachments after the takeover: %+v, want agent-b only", m.Attachments)
		}
		b.publish(t, vol, cap, nil, false)
		if got := b.sha256(t, vol, "data"); got != sum {
			t.Errorf("agent-b reads sha256 %s, dead agent-a wrote %s", got, sum)
		}
		if got := b.fsUUID(t, vol); got != uuid {
			t.Errorf("filesystem UUID on agent-b %q, on agent-a %q: formatted again", got, uuid)
		}
		b.unpublishUnstage(t, vol)
		fsckImage(t, pool, vol)
		if !strings.Contains(ctl.log.String()+b.log.String(), `"proof":"lease-expired"`) {
			t.Error("the takeover was not logged with its proof")
		}
		deleteVolume(t, ctl, vol)
	})

	// agent-a comes back for the remaining cases (stopped first if the
	// case above did not run).
	if !a.stopped {
		a.stop()
	}
	a = e.agent("agent-a", cfg)

	t.Run("holder cut off from the pool", func(t *testing.T) {
		vol := createVolume(t, ctl, "cut-off-holder", 64*mib, nil, cap).GetVolumeId()
		a.stagePublish(t, vol, cap, nil, false)
		sum := a.writeFile(t, vol, "before", randomData(t, 256<<10))
		// Only agent-a's lease writes fail: the lease directory turns
		// read-only in its namespace, while its images stay writable.
		leases := filepath.Join(pool, "leases")
		if out, err := a.nsenter(nil, "mount", "--bind", "-o", "ro", leases, leases); err != nil {
			t.Fatalf("cut agent-a off: %v %s", err, out)
		}
		cut := time.Now()
		var fencedAt time.Time
		var writeErr string
		_, took := refusedUntilTaken(t, "NodeStage on agent-b", takeWithin, []string{"agent-a"}, func() error {
			if fencedAt.IsZero() {
				if ok, why := a.canWrite(t, vol); !ok {
					fencedAt, writeErr = time.Now(), why
				}
			}
			return b.stage(t, vol, cap, nil)
		})
		if fencedAt.IsZero() || !fencedAt.Before(took) {
			t.Fatalf("agent-b took the volume over %v after the cut, before agent-a fenced itself (fenced at %v)", took.Sub(cut), fencedAt)
		}
		if !strings.Contains(writeErr, "Input/output error") && !strings.Contains(writeErr, "Read-only file system") {
			t.Errorf("a writer on the fenced agent-a got %q, want EIO or EROFS", writeErr)
		}
		t.Logf("agent-a fenced %v after the cut; agent-b took over %v after it", fencedAt.Sub(cut).Round(time.Millisecond), took.Sub(cut).Round(time.Millisecond))
		h, err := a.node.NodeGetVolumeHealth(context.Background(), &csi.NodeGetVolumeHealthRequest{VolumeId: vol, StagingTargetPath: a.paths(vol).staging})
		if err != nil || !strings.Contains(h.String(), "Fenced") {
			t.Errorf("volume health on the fenced agent-a: %v, %v; want a Fenced condition", h, err)
		}
		if !strings.Contains(a.log.String(), "node fenced its volumes read-only") {
			t.Error("agent-a did not log its fence")
		}
		b.publish(t, vol, cap, nil, false)
		if got := b.sha256(t, vol, "before"); got != sum {
			t.Errorf("agent-b reads sha256 %s, agent-a wrote (and synced) %s before it was cut off", got, sum)
		}
		sumB := b.writeFile(t, vol, "after", randomData(t, 256<<10))
		// agent-a's CO cleans up; then agent-b lets go.
		a.unpublishUnstage(t, vol)
		if got := b.sha256(t, vol, "after"); got != sumB {
			t.Errorf("agent-b's write reads back %s after agent-a's unstage, want %s", got, sumB)
		}
		b.unpublishUnstage(t, vol)
		fsckImage(t, pool, vol)
		if out, err := a.nsenter(nil, "umount", leases); err != nil {
			t.Fatalf("reconnect agent-a: %v %s", err, out)
		}
		// agent-a renews again and can stage a volume normally.
		deleteVolume(t, ctl, vol)
		again := createVolume(t, ctl, "after-the-fence", 64*mib, nil, cap).GetVolumeId()
		refusedUntilTaken(t, "NodeStage on agent-a after it renews again", 3*failoverLease+10*time.Second, nil, func() error {
			err := a.stage(t, again, cap, nil)
			if status.Code(err) == codes.Unavailable {
				return status.Error(codes.FailedPrecondition, err.Error())
			}
			return err
		})
		a.publish(t, again, cap, nil, false)
		if ok, why := a.canWrite(t, again); !ok {
			t.Errorf("agent-a cannot write a new volume after renewing: %s", why)
		}
		a.unpublishUnstage(t, again)
		deleteVolume(t, ctl, again)
	})

	t.Run("holder alive", func(t *testing.T) {
		vol := createVolume(t, ctl, "live-holder", 64*mib, nil, cap).GetVolumeId()
		a.stagePublish(t, vol, cap, nil, false)
		end := time.Now().Add(4 * failoverLease)
		for n := 0; time.Now().Before(end) || n < 3; n++ {
			err := b.stage(t, vol, cap, nil)
			wantCode(t, "NodeStage on agent-b while agent-a lives", err, codes.FailedPrecondition)
			if err != nil && !strings.Contains(err.Error(), "agent-a") {
				t.Errorf("refusal does not name the holder: %v", err)
			}
			_, err = controllerPublish(t, ctl, vol, b.id, cap, false)
			wantCode(t, "ControllerPublish to agent-b while agent-a lives", err, codes.FailedPrecondition)
			time.Sleep(300 * time.Millisecond)
		}
		if ok, why := a.canWrite(t, vol); !ok {
			t.Errorf("the live holder cannot write: %s", why)
		}
		a.unpublishUnstage(t, vol)
		deleteVolume(t, ctl, vol)
	})

	t.Run("ControllerUnpublish and ControllerPublish after the holder died", func(t *testing.T) {
		vol := createVolume(t, ctl, "unpublish-dead", 64*mib, nil, cap).GetVolumeId()
		vol2 := createVolume(t, ctl, "publish-over-dead", 64*mib, nil, cap).GetVolumeId()
		sums := map[string]string{}
		for _, v := range []string{vol, vol2} {
			pc, err := controllerPublish(t, ctl, v, a.id, cap, false)
			if err != nil {
				t.Fatal(err)
			}
			a.stagePublish(t, v, cap, pc, false)
			sums[v] = a.writeFile(t, v, "data", randomData(t, 128<<10))
		}
		loops := append(volumeLoops(t, pool, vol), volumeLoops(t, pool, vol2)...)
		a.kill9()
		for _, l := range loops {
			waitReleased(t, l.Device)
		}
		refusals, _ := refusedUntilTaken(t, "ControllerUnpublish of the dead agent-a", takeWithin, holderNamed, func() error {
			_, err := call(t, func(ctx context.Context) (*csi.ControllerUnpublishVolumeResponse, error) {
				return ctl.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vol, NodeId: a.id})
			})
			return err
		})
		if refusals == 0 {
			t.Error("ControllerUnpublish of the dead agent-a succeeded before its lease expired")
		}
		// The lease is long expired now: ControllerPublish takes vol2
		// over at once.
		pc2, err := controllerPublish(t, ctl, vol2, b.id, cap, false)
		if err != nil {
			t.Fatalf("ControllerPublish of vol2 to agent-b after agent-a's lease expired: %v", err)
		}
		pc, err := controllerPublish(t, ctl, vol, b.id, cap, false)
		if err != nil {
			t.Fatal(err)
		}
		for v, p := range map[string]map[string]string{vol: pc, vol2: pc2} {
			b.stagePublish(t, v, cap, p, false)
			if got := b.sha256(t, v, "data"); got != sums[v] {
				t.Errorf("agent-b reads %s of %s, agent-a wrote %s", got, v, sums[v])
			}
			b.unpublishUnstage(t, v)
			controllerUnpublish(t, ctl, v, b.id)
			if m := readMeta(t, pool, v); len(m.Attachments) != 0 {
				t.Errorf("attachments of %s after agent-b let go: %+v", v, m.Attachments)
			}
			fsckImage(t, pool, v)
			deleteVolume(t, ctl, v)
		}
	})

	b.stop()
	ctl.stop()
	e.assertClean()
}
