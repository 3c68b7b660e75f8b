package file

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/sys/mountinfo"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/fsutil"
	"github.com/csi-libstorage/csi-libstorage/internal/loop"
)

// Automatic failover for the pool (docs/failover.md). Each node service
// renews a lease on the pool; a node that cannot renew fences the volumes
// it holds at FenceFraction of the lease, and another node may take a
// volume over only once the holder's lease expired more than one period
// ago, judged by the pool filesystem's own clock.

const (
	// DefaultLease is the lease period when the configuration names none.
	DefaultLease = 15 * time.Second
	// MinLease is the shortest lease accepted; production wants seconds.
	MinLease = 100 * time.Millisecond
	// ProofLeaseExpired is the proof a lease takeover reports.
	ProofLeaseExpired = "lease-expired"
	// judgeController is the reference file name of a plugin without a
	// node id; node ids start with a letter or digit, so it is no node's.
	judgeController = "_controller"
)

// renewEvery and fenceAfter are fractions of the lease: a node tries to
// renew five times per period and fences itself when it has not
// succeeded for two thirds of one, well before the period ends and
// four thirds of a period before anyone may take its volumes.
func renewEvery(lease time.Duration) time.Duration { return lease / 5 }

// FenceAfter is how long after its last successful renewal a node fences
// its volumes.
func FenceAfter(lease time.Duration) time.Duration { return lease * 2 / 3 }

func parseLease(s string) (time.Duration, error) {
	if s == "" {
		return DefaultLease, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("lease %q: want a duration such as 15s, or 0 to turn automatic failover off", s)
	}
	if d < 0 || (d > 0 && d < MinLease) {
		return 0, fmt.Errorf("lease %s: want 0 (automatic failover off) or at least %s", d, MinLease)
	}
	return d, nil
}

// keeper is the state of this node's lease and of what it fenced.
type keeper struct {
	mu      sync.Mutex
	running bool
	// lastOK is when the last successful renewal started, by this
	// node's monotonic clock: the pool set the lease's time after it.
	lastOK time.Time
	failed error
	// fenced: the node has fenced its volumes since its last renewal
	// and connects no volume until it renews again.
	fenced bool
	// volumes are the fenced volumes, by id, with the reason; an entry
	// goes when the volume is disconnected here.
	volumes map[string]string
}

// KeepLease implements backends.LeaseKeeper. With lease 0 the node holds
// no lease file at all, so nothing it holds is ever taken over
// automatically.
func (b *Backend) KeepLease(ctx context.Context) error {
	if !nodeRE.MatchString(b.node) {
		return fmt.Errorf("%w: node id %q cannot hold a lease", backends.ErrInvalid, b.node)
	}
	if b.lease == 0 {
		if err := b.leases.Release(b.node); err != nil {
			return fmt.Errorf("remove the old lease of node %s: %w", b.node, err)
		}
		b.log.Info("automatic failover is off (lease: 0): volumes of this node move only by an operator's force-detach")
		return nil
	}
	b.keeper.mu.Lock()
	defer b.keeper.mu.Unlock()
	if b.keeper.running {
		return nil
	}
	started := time.Now()
	if err := b.leases.Start(b.node, b.lease); err != nil {
		return fmt.Errorf("start the lease of node %s in %s: %w", b.node, b.leases.Dir(), err)
	}
	b.keeper.running, b.keeper.lastOK = true, started
	go b.keepLease(ctx)
	b.log.Info("holding a lease on the pool", zap.Duration("lease", b.lease), zap.Duration("fenceAfter", FenceAfter(b.lease)))
	return nil
}

type renewal struct {
	started time.Time
	err     error
}

// keepLease renews the lease until ctx is done. Each renewal runs in a
// goroutine of its own and the fence is judged by the time since the last
// success, so a renewal hung on a dead server cannot delay the fence.
func (b *Backend) keepLease(ctx context.Context) {
	tick := time.NewTicker(b.lease / 10)
	defer tick.Stop()
	done := make(chan renewal, 1)
	inflight := false
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			b.stopLease(done, inflight)
			return
		case r := <-done:
			inflight = false
			b.renewed(r)
		case <-tick.C:
		}
		if !inflight && time.Since(last) >= renewEvery(b.lease) {
			inflight, last = true, time.Now()
			go func(started time.Time) { done <- renewal{started, b.renew()} }(last)
		}
		b.checkFence()
	}
}

// renew renews the lease once; tests replace it to cut the node off.
func (b *Backend) renew() error {
	if b.renewHook != nil {
		if err := b.renewHook(); err != nil {
			return err
		}
	}
	return b.leases.Renew(b.node)
}

// stopLease gives the lease up when the node service stops: a node that
// is shut down on purpose may still have tasks writing to its volumes,
// so they must not be taken over while it is away. A renewal still under
// way cannot bring the file back (Renew never creates it).
func (b *Backend) stopLease(done chan renewal, inflight bool) {
	if inflight {
		select {
		case <-done:
		case <-time.After(b.lease):
		}
	}
	b.keeper.mu.Lock()
	b.keeper.running = false
	b.keeper.mu.Unlock()
	if err := b.leases.Release(b.node); err != nil {
		b.log.Warn("could not give up the lease on the pool; this node's volumes may be taken over while it is stopped", zap.Error(err))
		return
	}
	b.log.Info("gave up the lease on the pool: this node's volumes move only by force-detach until it runs again")
}

func (b *Backend) renewed(r renewal) {
	b.keeper.mu.Lock()
	defer b.keeper.mu.Unlock()
	if r.err != nil {
		if b.keeper.failed == nil {
			b.log.Warn("could not renew the lease on the pool; the node fences its volumes if this lasts",
				zap.Error(r.err), zap.Duration("fenceAfter", FenceAfter(b.lease)), zap.Duration("sinceRenewal", time.Since(b.keeper.lastOK)))
		}
		b.keeper.failed = r.err
		return
	}
	if r.started.After(b.keeper.lastOK) {
		b.keeper.lastOK = r.started
	}
	if b.keeper.failed != nil {
		b.log.Info("lease on the pool renewed again; volumes fenced meanwhile stay read-only until unstaged",
			zap.Int("fenced", len(b.keeper.volumes)))
	}
	b.keeper.failed, b.keeper.fenced = nil, false
}

// checkFence fences this node's volumes once per outage, when the lease
// has not been renewed for FenceAfter.
func (b *Backend) checkFence() {
	b.keeper.mu.Lock()
	since := time.Since(b.keeper.lastOK)
	if b.keeper.fenced || since < FenceAfter(b.lease) {
		b.keeper.mu.Unlock()
		return
	}
	b.keeper.fenced = true
	why := "no error yet: the renewal has not returned"
	if b.keeper.failed != nil {
		why = b.keeper.failed.Error()
	}
	b.keeper.mu.Unlock()
	b.fence(fmt.Sprintf("node %s could not renew its lease on pool %s for %s (%s); the lease of %s would let another node take its volumes %s after the last renewal",
		b.node, b.dir, since.Round(time.Millisecond), why, b.lease, 2*b.lease))
}

// alive refuses new connections while the node is fenced.
func (b *Backend) alive() error {
	if b.lease == 0 {
		return nil
	}
	b.keeper.mu.Lock()
	defer b.keeper.mu.Unlock()
	if !b.keeper.running || !b.keeper.fenced {
		return nil
	}
	return fmt.Errorf("%w: node %s has not renewed its lease on pool %s for %s and has fenced its volumes; it connects no volume until it can renew again (is the pool reachable from this node?)",
		backends.ErrUnavailable, b.node, b.dir, time.Since(b.keeper.lastOK).Round(time.Millisecond))
}

// fence makes every device of this pool that this node holds read-only
// and shuts down the filesystems mounted from them, so nothing more is
// written to the images. It reads nothing from the pool: the pool may be
// what is unreachable.
func (b *Backend) fence(reason string) {
	ids := b.fenceDevices(b.heldDevices(), reason)
	if len(ids) == 0 {
		b.log.Warn("lease not renewed in time; this node holds no volume of the pool to fence", zap.String("reason", reason))
		return
	}
	if b.events != nil {
		b.events.Fenced(backends.Fence{Backend: b.name, Volumes: ids, Reason: reason})
	}
}

// fenceDevices sets held read-only, shuts down the filesystems mounted
// from them and records their volumes as fenced (for the Fenced
// condition, and so that Connect refuses them until they are released).
// It returns the volumes' ids.
func (b *Backend) fenceDevices(held []heldDevice, reason string) []string {
	var ids []string
	for _, h := range held {
		if err := loop.SetReadOnly(h.dev); err != nil {
			b.log.Error("fence: could not set the device read-only", zap.String("id", h.id), zap.String("device", h.dev), zap.Error(err))
		}
		for _, mp := range h.mounts {
			// A shutdown stops the filesystem at once; the call may then
			// wait for I/O to a pool that does not answer.
			err, _ := within(time.Second, func() error { return fsutil.Shutdown(mp) })
			if err != nil {
				// btrfs has no shutdown: a read-only remount of the
				// filesystem (all its mounts) is the next best, and
				// fails while files are open for writing.
				b.log.Warn("fence: could not shut the filesystem down; remounting it read-only", zap.String("id", h.id), zap.String("mount", mp), zap.Error(err))
				var late bool
				err, late = within(time.Second, func() error { return unix.Mount("", mp, "", unix.MS_REMOUNT|unix.MS_RDONLY, "") })
				if late {
					err = errors.New("the read-only remount did not finish within 1s")
				}
			}
			if err != nil {
				b.log.Error("fence: could not stop the filesystem writing; its device is read-only, which a mounted filesystem ignores", zap.String("id", h.id), zap.String("mount", mp), zap.Error(err))
				continue
			}
			break // one mount stops the filesystem in all of them
		}
		if !slices.Contains(ids, h.id) {
			ids = append(ids, h.id)
		}
	}
	b.keeper.mu.Lock()
	if b.keeper.volumes == nil {
		b.keeper.volumes = map[string]string{}
	}
	at := time.Now().UTC().Format(time.RFC3339)
	for _, id := range ids {
		b.keeper.volumes[id] = "fenced at " + at + ": " + reason
	}
	b.keeper.mu.Unlock()
	return ids
}

// fenceLost fences, at start-up, each volume this node still has
// connected whose attachment to this node is gone from the pool. A
// plugin that was killed while its node and tasks kept running renewed
// nothing and fenced nothing, so another node may have taken the volume
// over (its lease expired) or an operator force-detached it, while this
// node's tasks still write through the mounts the dead plugin left.
// Renewing the lease and serving on would make two writers; the new
// holder cannot tell, so this node must stop writing before it serves.
// Only a positive answer fences: metadata that cannot be read proves
// nothing, and while this node renews its lease nobody takes the volume.
func (b *Backend) fenceLost() []string {
	byID := map[string][]heldDevice{}
	var order []string
	for _, h := range b.heldDevices() {
		if _, ok := byID[h.id]; !ok {
			order = append(order, h.id)
		}
		byID[h.id] = append(byID[h.id], h)
	}
	var done []string
	for _, id := range order {
		m, err := b.readMeta(id)
		if errors.Is(err, backends.ErrNotFound) {
			// Deleted: its image is unlinked and no other node can
			// attach it, so this node is the only writer there is.
			continue
		}
		if err != nil {
			b.log.Error("start-up: could not read the metadata of a volume this node still has connected; not fencing it on that account (the lease protects it while this node renews)",
				zap.String("id", id), zap.Error(err))
			continue
		}
		if _, ok := m.volume().AttachedTo(b.node); ok {
			continue
		}
		now := describeAttachments(m)
		reason := fmt.Sprintf("volume %s is no longer attached to node %s (it is %s): it was taken over or force-detached while this node's plugin was not running, and this node's mounts of it must not write any more",
			id, b.node, now)
		b.log.Error("FENCING a volume this node still has connected but no longer holds: another node may be writing it",
			zap.String("id", id), zap.String("node", b.node), zap.String("nowAttached", now),
			zap.Strings("devices", devicesOf(byID[id])))
		if ids := b.fenceDevices(byID[id], reason); len(ids) > 0 && b.events != nil {
			b.events.Fenced(backends.Fence{Backend: b.name, Volumes: ids, Reason: reason, TakenWhileDown: true})
		}
		done = append(done, "fenced "+reason)
	}
	return done
}

func devicesOf(held []heldDevice) []string {
	var out []string
	for _, h := range held {
		out = append(out, h.dev)
	}
	return out
}

// within runs a fence step without waiting more than d for it, so a step
// stuck on the pool cannot hold the others up; late says it was still
// running.
func within(d time.Duration, step func() error) (err error, late bool) {
	done := make(chan error, 1)
	go func() { done <- step() }()
	select {
	case err := <-done:
		return err, false
	case <-time.After(d):
		return nil, true
	}
}

type heldDevice struct {
	id, dev string
	mounts  []string // filesystem mounts of the device
}

// heldDevices finds this node's devices of the pool: loop devices over
// the pool's images that this process connected or that are mounted (or
// bound, for a block volume) in its mount namespace. Another node
// service's devices on the same kernel (tests) are neither.
func (b *Backend) heldDevices() []heldDevice {
	devs, err := loop.List()
	if err != nil {
		b.log.Error("fence: list loop devices", zap.Error(err))
		return nil
	}
	ms, err := mountinfo.GetMounts(nil)
	if err != nil {
		b.log.Error("fence: read the mount table", zap.Error(err))
	}
	b.loops.mu.Lock()
	mine := map[string]bool{}
	for _, d := range b.loops.m {
		mine[d] = true
	}
	b.loops.mu.Unlock()
	var out []heldDevice
	for _, d := range devs {
		id, _, ok := b.imageOf(d.BackingFile)
		if !ok {
			continue
		}
		h := heldDevice{id: id, dev: d.Device}
		var st unix.Stat_t
		bound := false
		if err := unix.Stat(d.Device, &st); err == nil {
			maj, min := int(unix.Major(st.Rdev)), int(unix.Minor(st.Rdev))
			for _, m := range ms {
				switch {
				case m.FSType == "devtmpfs" && m.Root == "/"+filepath.Base(d.Device):
					bound = true
				case m.Major == maj && m.Minor == min, m.Source == d.Device && m.FSType != "devtmpfs":
					// btrfs shows an anonymous device number, not its
					// device's: its mounts are found by their source.
					h.mounts = append(h.mounts, m.Mountpoint)
				}
			}
		}
		if mine[d.Device] || bound || len(h.mounts) > 0 {
			out = append(out, h)
		}
	}
	return out
}

// fencedCondition reports a volume this node fenced.
func (b *Backend) fencedCondition(id string) (backends.Condition, bool) {
	b.keeper.mu.Lock()
	why, ok := b.keeper.volumes[id]
	b.keeper.mu.Unlock()
	if !ok {
		return backends.Condition{}, false
	}
	return backends.Condition{
		Kind:   backends.Inaccessible,
		Reason: "Fenced",
		Message: fmt.Sprintf("volume %s was fenced on node %s: its device is read-only and its filesystem shut down, so reads and writes fail (%s). It never resumes on its own: unpublish and unstage it on this node (the CO does when it moves the task), and stage it again where the task runs",
			id, b.node, why),
	}, true
}

// stillFenced refuses to connect a volume this node fenced and has not
// released yet: its staging mount is shut down, so a stage that found it
// would hand out a volume that fails every access.
func (b *Backend) stillFenced(id string) error {
	b.keeper.mu.Lock()
	why, ok := b.keeper.volumes[id]
	b.keeper.mu.Unlock()
	if !ok {
		return nil
	}
	return fmt.Errorf("%w: volume %s was %s. It stays unusable here until it is released: unpublish and unstage it on node %s, then stage it again",
		backends.ErrInUse, id, why, b.node)
}

// unfence forgets a fenced volume once its device is gone from this node.
func (b *Backend) unfence(id string) {
	b.keeper.mu.Lock()
	delete(b.keeper.volumes, id)
	b.keeper.mu.Unlock()
}

// verdict is one judgement of a holder's lease.
type verdict struct {
	node     string
	reading  fsutil.LeaseReading
	period   time.Duration
	takeable bool
	err      error
}

// judge reads a holder's lease; the holder's declared period counts,
// since it fences itself by it.
func (b *Backend) judge(node string) verdict {
	v := verdict{node: node}
	if b.lease == 0 {
		return v
	}
	me := b.node
	if !nodeRE.MatchString(me) {
		me = judgeController
	}
	v.reading, v.err = b.leases.Read(me, node)
	if v.err != nil {
		return v
	}
	v.period = v.reading.Period
	if v.period == 0 {
		v.period = b.lease
	}
	v.takeable = v.reading.Takeable(v.period)
	return v
}

// explain tells an operator why a holder was not taken over, and when it
// will be.
func (b *Backend) explain(id string, v verdict) string {
	force := fmt.Sprintf("csi-libstorage force-detach --volume %s/%s --node %s --yes-the-node-is-dead", b.name, id, v.node)
	r := v.reading
	switch {
	case b.lease == 0:
		return fmt.Sprintf("Automatic failover is off on this plugin (lease: 0 for backend %s). If node %s is dead, an operator can take the volume with: %s", b.name, v.node, force)
	case v.err != nil:
		return fmt.Sprintf("The lease of node %s could not be read (%v), so the volume is not taken over. If node %s is dead, an operator can take the volume with: %s", v.node, v.err, v.node, force)
	case !r.Found:
		return fmt.Sprintf("Node %s holds no lease on pool %s (it runs with lease: 0, or a plugin without leases, or it was stopped on purpose), so the volume is never taken from it automatically. If node %s is dead, an operator can take the volume with: %s", v.node, b.dir, v.node, force)
	}
	fsTime := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
	wait := r.TakeableAt(v.period).Sub(r.Now)
	return fmt.Sprintf("Node %s renewed its lease %s ago by the pool's clock; its lease (%s) expires at %s and the volume may be taken over from %s (in %s, pool clock) if node %s has not renewed it by then: the CO's retry will take it over then. If node %s is dead and you cannot wait, an operator can take the volume now with: %s",
		v.node, r.Age().Round(time.Millisecond), v.period, fsTime(r.ExpiresAt(v.period)), fsTime(r.TakeableAt(v.period)), wait.Round(time.Millisecond), v.node, v.node, force)
}

// takeOver decides, under the volume's lock, whether req can be granted
// by removing the attachments of nodes whose leases expired more than one
// period ago. It changes m only if so, and returns the takeovers made;
// otherwise it returns conflict, extended with what each live holder's
// lease says.
func (b *Backend) takeOver(m *meta, id string, req backends.AttachRequest, conflict error) (done bool, took []backends.Takeover, err error) {
	var kept []attachment
	var why []string
	for _, a := range m.Attachments {
		if a.Node == req.Node {
			kept = append(kept, a)
			continue
		}
		v := b.judge(a.Node)
		if !v.takeable {
			kept = append(kept, a)
			why = append(why, b.explain(id, v))
			continue
		}
		took = append(took, backends.Takeover{Backend: b.name, VolumeID: id, From: a.Node, To: req.Node, Proof: ProofLeaseExpired, LeaseAge: v.reading.Age()})
	}
	// volume() copies what it reads, so a shallow copy is enough to ask
	// CheckAttach without touching m.
	trial := *m
	trial.Attachments = kept
	done, err = backends.CheckAttach(trial.volume(), req)
	if err != nil {
		if len(why) > 0 {
			return false, nil, fmt.Errorf("%w. %s", err, strings.Join(why, " "))
		}
		return false, nil, err
	}
	m.Attachments = kept
	return done, took, nil
}

func (b *Backend) report(took []backends.Takeover) {
	if b.events == nil {
		return
	}
	for _, t := range took {
		b.events.Takeover(t)
	}
}

// leaseDir is where the pool keeps its nodes' leases.
func leaseDir(pool string) string { return filepath.Join(pool, "leases") }
