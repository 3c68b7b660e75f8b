package file

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/loop"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// testLease is short, for tests only; the CPU is shared, so every
// assertion below is about order and generous bounds, not exact timing.
const testLease = 600 * time.Millisecond

// leaseNode is one node's backend on a shared pool, holding its lease
// until the test ends (or stop).
type leaseNode struct {
	*Backend
	ev   *harness.Events
	stop context.CancelFunc
	// cut makes every renewal fail, as a node cut off from the pool.
	cut func()
	// setHook runs h before every renewal from now on.
	setHook func(h func() error)
}

// held creates a volume and attaches it to the node itself, as a
// ControllerPublish to it would.
func (n *leaseNode) held(t *testing.T, name string, size int64) *backends.Volume {
	t.Helper()
	ctx := context.Background()
	v, err := n.Create(ctx, req(name, size))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Attach(ctx, v.ID, backends.AttachRequest{Node: n.node, Mode: backends.SingleNodeWriter}); err != nil {
		t.Fatal(err)
	}
	return v
}

func newLeaseNode(t *testing.T, dir, node, lease string) *leaseNode {
	t.Helper()
	ev := harness.NewEvents()
	b, err := New(Config{Name: "local", Dir: dir, Lease: lease}, Options{NodeID: node, Events: ev})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var hook func() error
	b.renewHook = func() error {
		mu.Lock()
		h := hook
		mu.Unlock()
		if h != nil {
			return h()
		}
		return nil
	}
	setHook := func(h func() error) { mu.Lock(); hook = h; mu.Unlock() }
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := b.RegisterNode(ctx, node); err != nil {
		t.Fatal(err)
	}
	if err := b.KeepLease(ctx); err != nil {
		t.Fatal(err)
	}
	return &leaseNode{Backend: b, ev: ev, stop: cancel, setHook: setHook,
		cut: func() { setHook(func() error { return errors.New("test: cut off from the pool") }) }}
}

func TestLeaseConfig(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"", DefaultLease, false},
		{"15s", 15 * time.Second, false},
		{"0", 0, false},
		{"2s", 2 * time.Second, false},
		{"-1s", 0, true},
		{"10ms", 0, true},
		{"soon", 0, true},
	}
	for _, tt := range tests {
		got, err := parseLease(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseLease(%q) = %v, %v; want %v, error %t", tt.in, got, err, tt.want, tt.err)
		}
	}
	if _, err := New(Config{Name: "x", Dir: filepath.Join(t.TempDir(), "p"), Lease: "1ms"}, Options{}); err == nil || !strings.Contains(err.Error(), "lease") {
		t.Errorf("New with lease 1ms: %v", err)
	}
}

// attachUntil retries an attach as a CO would, until it succeeds or the
// deadline passes, and returns the last refusal seen before success.
func attachUntil(t *testing.T, b *Backend, id string, r backends.AttachRequest, deadline time.Duration) (at time.Time, refusal error) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		_, err := b.Attach(context.Background(), id, r)
		if err == nil {
			return time.Now(), refusal
		}
		if !errors.Is(err, backends.ErrConflict) {
			t.Fatalf("attach: %v, want success or ErrConflict", err)
		}
		refusal = err
		if time.Now().After(end) {
			t.Fatalf("attach still refused after %v: %v", deadline, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTakeoverAfterLeaseExpiry: a holder that stops renewing (killed) is
// refused to every other node, with a message naming it and when its
// lease ends, until its lease expired more than one period ago; then the
// first attach takes the volume over, and the takeover is reported.
func TestTakeoverAfterLeaseExpiry(t *testing.T) {
	dir := filepath.Join(harness.TempDir(t), "pool")
	a := newLeaseNode(t, dir, "agent-a", testLease.String())
	b := newLeaseNode(t, dir, "agent-b", testLease.String())
	v := a.held(t, "db", 20*units.MiB)
	// agent-a's plugin dies: no more renewals, and nothing released.
	a.cut()
	died := time.Now()
	took, refusal := attachUntil(t, b.Backend, v.ID, backends.AttachRequest{Node: "agent-b", Mode: backends.SingleNodeWriter, ByNode: true}, 20*testLease)
	if refusal == nil {
		t.Fatal("the first attach after the holder died succeeded: the lease was not waited for")
	}
	for _, want := range []string{"agent-a", "may be taken over from", "force-detach --volume local/" + v.ID + " --node agent-a"} {
		if !strings.Contains(refusal.Error(), want) {
			t.Errorf("refusal %q does not say %q", refusal, want)
		}
	}
	// The last renewal was at most one renewal interval before the
	// holder died, so the takeover cannot come sooner than this.
	if min := 2*testLease - renewEvery(testLease); took.Sub(died) < min {
		t.Errorf("taken over %v after the holder died, sooner than %v", took.Sub(died), min)
	}
	m, err := b.readMeta(v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Node != "agent-b" || !m.Attachments[0].ByNode {
		t.Fatalf("attachments after the takeover: %+v", m.Attachments)
	}
	got := b.ev.Takeovers()
	if len(got) != 1 || got[0].From != "agent-a" || got[0].To != "agent-b" || got[0].Proof != ProofLeaseExpired || got[0].LeaseAge <= 2*testLease {
		t.Fatalf("takeovers reported: %+v", got)
	}
}

// TestLiveHolderIsNeverTaken: a holder that renews keeps its volume across
// many lease periods, whatever path asks; so does a node without a lease
// file (leases off, or stopped on purpose).
func TestLiveHolderIsNeverTaken(t *testing.T) {
	dir := filepath.Join(harness.TempDir(t), "pool")
	a := newLeaseNode(t, dir, "agent-a", testLease.String())
	off := newLeaseNode(t, dir, "agent-off", "0")
	b := newLeaseNode(t, dir, "agent-b", testLease.String())
	ctx := context.Background()
	var ids []string
	for _, holder := range []*leaseNode{a, off} {
		v := holder.held(t, "held-by-"+holder.node, 20*units.MiB)
		if err := holder.lockedSetConnected(v.ID); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	end := time.Now().Add(4 * testLease)
	for time.Now().Before(end) {
		for i, id := range ids {
			holder := []string{"agent-a", "agent-off"}[i]
			_, err := b.Attach(ctx, id, backends.AttachRequest{Node: "agent-b", Mode: backends.SingleNodeWriter})
			if !errors.Is(err, backends.ErrConflict) || !strings.Contains(err.Error(), holder) {
				t.Fatalf("attach of %s's volume: %v, want a refusal naming it", holder, err)
			}
			if err := b.Detach(ctx, id, holder); !errors.Is(err, backends.ErrInUse) {
				t.Fatalf("detach of %s's connected volume: %v, want ErrInUse", holder, err)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := b.ev.Takeovers(); len(got) != 0 {
		t.Fatalf("takeovers from live or lease-less holders: %+v", got)
	}
	_, err := b.Attach(ctx, ids[1], backends.AttachRequest{Node: "agent-b", Mode: backends.SingleNodeWriter})
	if !strings.Contains(err.Error(), "holds no lease") {
		t.Errorf("refusal for a lease-less holder does not say so: %v", err)
	}
	// A node stopped on purpose gives its lease up: never taken either.
	a.stop()
	waitFor(t, "agent-a's lease file to go", 5*time.Second, func() bool {
		_, err := os.Stat(a.leases.Path("agent-a"))
		return os.IsNotExist(err)
	})
	time.Sleep(3 * testLease)
	if _, err := b.Attach(ctx, ids[0], backends.AttachRequest{Node: "agent-b", Mode: backends.SingleNodeWriter}); !errors.Is(err, backends.ErrConflict) {
		t.Fatalf("attach after the holder stopped on purpose: %v, want ErrConflict", err)
	}
}

// TestDetachOfDeadNode: ControllerUnpublish for a node that still has the
// volume connected is refused while its lease lives and succeeds once it
// expired more than one period ago (Kubernetes, after an out-of-service
// taint).
func TestDetachOfDeadNode(t *testing.T) {
	dir := filepath.Join(harness.TempDir(t), "pool")
	a := newLeaseNode(t, dir, "agent-a", testLease.String())
	ctl := newLeaseNode(t, dir, "controller-1", testLease.String())
	ctx := context.Background()
	v := a.held(t, "db", 20*units.MiB)
	if err := a.lockedSetConnected(v.ID); err != nil {
		t.Fatal(err)
	}
	a.cut()
	err := ctl.Detach(ctx, v.ID, "agent-a")
	if !errors.Is(err, backends.ErrInUse) || !strings.Contains(err.Error(), "agent-a") || !strings.Contains(err.Error(), "force-detach") {
		t.Fatalf("detach right after the holder died: %v, want ErrInUse naming it", err)
	}
	waitFor(t, "the detach to succeed", 20*testLease, func() bool { return ctl.Detach(ctx, v.ID, "agent-a") == nil })
	m, _ := ctl.readMeta(v.ID)
	if len(m.Attachments) != 0 {
		t.Fatalf("attachments after the detach: %+v", m.Attachments)
	}
	if got := ctl.ev.Takeovers(); len(got) != 1 || got[0].From != "agent-a" || got[0].To != "" {
		t.Fatalf("takeovers reported: %+v", got)
	}
}

// TestConcurrentTakersOneWins: two nodes that try to take one expired
// volume at once: exactly one wins, and the volume has one holder.
func TestConcurrentTakersOneWins(t *testing.T) {
	dir := filepath.Join(harness.TempDir(t), "pool")
	a := newLeaseNode(t, dir, "agent-a", testLease.String())
	takers := []*leaseNode{newLeaseNode(t, dir, "agent-b", testLease.String()), newLeaseNode(t, dir, "agent-c", testLease.String())}
	ctx := context.Background()
	v := a.held(t, "db", 20*units.MiB)
	a.cut()
	waitFor(t, "agent-a's lease to become takeable", 20*testLease, func() bool { return takers[0].judge("agent-a").takeable })
	var wg sync.WaitGroup
	errs := make([]error, len(takers))
	for i, tk := range takers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = tk.Attach(ctx, v.ID, backends.AttachRequest{Node: tk.node, Mode: backends.SingleNodeWriter})
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else if !errors.Is(err, backends.ErrConflict) {
			t.Errorf("loser's error: %v, want ErrConflict", err)
		}
	}
	m, _ := a.readMeta(v.ID)
	if won != 1 || len(m.Attachments) != 1 {
		t.Fatalf("%d takers won (%v); attachments %+v", won, errs, m.Attachments)
	}
}

// TestSelfFence: a holder that cannot renew fences its volume before its
// lease expires (a writer gets EIO or EROFS, the volume reports a Fenced
// condition, the node connects nothing more), and only later does another
// node take the volume over, on a device of its own; its writes land and
// the filesystem checks clean.
func TestSelfFence(t *testing.T) {
	harness.RequireRoot(t)
	tmp := harness.TempDir(t)
	dir := filepath.Join(tmp, "pool")
	a := newLeaseNode(t, dir, "agent-a", testLease.String())
	b := newLeaseNode(t, dir, "agent-b", testLease.String())
	ctx := context.Background()
	v := a.held(t, "db", 32*units.MiB)
	da, err := a.Connect(ctx, v.ID, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.Detach(da.Path) })
	if out, err := exec.Command("mkfs.ext4", "-q", da.Path).CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v\n%s", err, out)
	}
	mnt := filepath.Join(tmp, "a")
	mustMount(t, da.Path, mnt)
	w, err := os.OpenFile(filepath.Join(mnt, "log"), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write([]byte("before\n")); err != nil {
		t.Fatal(err)
	}
	// What was synced before the fence survives it; the fence writes
	// nothing more, not even the journal.
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}

	a.cut()
	cut := time.Now()
	select {
	case <-a.ev.FenceSignals():
	case <-time.After(20 * testLease):
		t.Fatal("agent-a did not fence itself")
	}
	fencedAt := time.Now()
	// Fenced before anyone may take the volume: agent-b is refused now.
	if _, err := b.Attach(ctx, v.ID, backends.AttachRequest{Node: "agent-b", Mode: backends.SingleNodeWriter}); !errors.Is(err, backends.ErrConflict) {
		t.Fatalf("attach by agent-b right after agent-a fenced: %v, want ErrConflict", err)
	}
	if fencedAt.Sub(cut) < FenceAfter(testLease)-renewEvery(testLease) {
		t.Errorf("fenced %v after the cut, before %v", fencedAt.Sub(cut), FenceAfter(testLease))
	}
	_, werr := w.Write([]byte("after\n"))
	if werr == nil {
		werr = w.Sync()
	}
	if !errors.Is(werr, unix.EIO) && !errors.Is(werr, unix.EROFS) {
		t.Errorf("a write after the fence: %v, want EIO or EROFS", werr)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new"), []byte("x"), 0o600); !errors.Is(err, unix.EIO) && !errors.Is(err, unix.EROFS) {
		t.Errorf("a new file after the fence: %v, want EIO or EROFS", err)
	}
	if ro, err := loop.BlockReadOnly(da.Path); err != nil || !ro {
		t.Errorf("%s read-only after the fence: %t, %v", da.Path, ro, err)
	}
	conds, err := a.Conditions(ctx, v.ID)
	if err != nil || len(conds) != 1 || conds[0].Reason != "Fenced" {
		t.Errorf("conditions on the fenced node: %+v, %v", conds, err)
	}
	if _, err := a.Connect(ctx, v.ID, nil, false); !errors.Is(err, backends.ErrInUse) || !strings.Contains(err.Error(), "unstage it on node agent-a") {
		t.Errorf("connect of the fenced volume on the fenced node: %v, want ErrInUse telling to unstage it", err)
	}
	if f := a.ev.Fences(); len(f) != 1 || len(f[0].Volumes) != 1 || f[0].Volumes[0] != v.ID {
		t.Errorf("fences reported: %+v", f)
	}

	// agent-b takes over once the lease expired a period ago.
	if took, _ := attachUntil(t, b.Backend, v.ID, backends.AttachRequest{Node: "agent-b", Mode: backends.SingleNodeWriter}, 20*testLease); !took.After(fencedAt) {
		t.Fatal("taken over before the holder fenced")
	}
	db, err := b.Connect(ctx, v.ID, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.Detach(db.Path) })
	if db.Path == da.Path {
		t.Fatalf("agent-b got agent-a's fenced device %s", da.Path)
	}
	mntB := filepath.Join(tmp, "b")
	mustMount(t, db.Path, mntB)
	if got, err := os.ReadFile(filepath.Join(mntB, "log")); err != nil || string(got) != "before\n" {
		t.Errorf("agent-b reads %q, %v; want what agent-a wrote before the fence", got, err)
	}
	if err := os.WriteFile(filepath.Join(mntB, "b"), []byte("agent-b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// agent-a's CO cleans up: unmount, disconnect. The fence goes with it.
	w.Close()
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.Disconnect(ctx, v.ID); err != nil {
		t.Fatalf("disconnect on the fenced node: %v", err)
	}
	// The device is free again, without the fence's flag for its next
	// user.
	if ro, err := loop.BlockReadOnly(da.Path); err != nil || ro {
		t.Errorf("%s after the fenced node released it: read-only %t, %v", da.Path, ro, err)
	}
	if conds, _ := a.Conditions(ctx, v.ID); len(conds) != 0 {
		t.Errorf("conditions after unstage on agent-a: %+v", conds)
	}
	if err := unix.Unmount(mntB, 0); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("fsck.ext4", "-n", "-f", db.Path).CombinedOutput(); err != nil {
		t.Errorf("fsck -n after agent-b unmounted: %v\n%s", err, out)
	}
	if err := b.Disconnect(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
	img, _ := b.ImagePath(v.ID)
	if devs, _ := loop.Find(img); len(devs) != 0 {
		t.Errorf("loop devices left: %+v", devs)
	}
}

func mustMount(t *testing.T, dev, dir string) { mustMountFS(t, dev, dir, "ext4") }

func mustMountFS(t *testing.T, dev, dir, fsType string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dev, dir, fsType, 0, ""); err != nil {
		t.Fatalf("mount %s at %s: %v", dev, dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !ok() {
		if time.Now().After(end) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockedSetConnected marks this node's attachment connected, as Connect
// does, without making a device.
func (b *Backend) lockedSetConnected(id string) error {
	l, err := b.lockVolume(context.Background(), id)
	if err != nil {
		return err
	}
	defer l.Close()
	return b.setConnected(id, true)
}

// TestFenceWhileRenewalHangs: a renewal that never returns (a hung NFS
// server) does not hold the fence decision up: the node stops taking
// volumes at the fence point all the same.
func TestFenceWhileRenewalHangs(t *testing.T) {
	dir := filepath.Join(harness.TempDir(t), "pool")
	a := newLeaseNode(t, dir, "agent-a", testLease.String())
	hang := make(chan struct{})
	defer close(hang)
	a.setHook(func() error { <-hang; return nil })
	a.keeper.mu.Lock()
	last := a.keeper.lastOK
	a.keeper.mu.Unlock()
	waitFor(t, "the node to fence itself", 20*testLease, func() bool { return errors.Is(a.alive(), backends.ErrUnavailable) })
	if d := time.Since(last); d < FenceAfter(testLease) {
		t.Errorf("fenced %v after the last renewal, before the fence point %v", d, FenceAfter(testLease))
	}
}

// TestSelfFenceBtrfs: btrfs has no shutdown (Linux 6.18), and the block
// layer lets a mounted filesystem write to a read-only device, so the
// fence remounts it read-only: with no file open for writing that
// succeeds, and new writes fail with EROFS.
func TestSelfFenceBtrfs(t *testing.T) {
	harness.RequireRoot(t)
	tmp := harness.TempDir(t)
	a := newLeaseNode(t, filepath.Join(tmp, "pool"), "agent-a", testLease.String())
	ctx := context.Background()
	v := a.held(t, "db", MinSizeXFS)
	d, err := a.Connect(ctx, v.ID, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.Detach(d.Path) })
	if out, err := exec.Command("mkfs.btrfs", "-q", "-f", d.Path).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.btrfs: %v\n%s", err, out)
	}
	mnt := filepath.Join(tmp, "a")
	mustMountFS(t, d.Path, mnt, "btrfs")
	if err := os.WriteFile(filepath.Join(mnt, "before"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.cut()
	select {
	case <-a.ev.FenceSignals():
	case <-time.After(20 * testLease):
		t.Fatal("agent-a did not fence itself")
	}
	if err := os.WriteFile(filepath.Join(mnt, "after"), []byte("x"), 0o600); !errors.Is(err, unix.EROFS) && !errors.Is(err, unix.EIO) {
		t.Errorf("a write to the fenced btrfs volume: %v, want EROFS or EIO", err)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.Disconnect(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
}
