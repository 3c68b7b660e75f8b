package file

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/loop"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// crashedNode is a node plugin that wrote its lease once and then died
// (SIGKILL, OOM) without fencing or releasing anything: its lease file
// stays and ages, and the mounts it made stay with the node's tasks.
func crashedNode(t *testing.T, dir, node string) *Backend {
	t.Helper()
	b, err := New(Config{Name: "local", Dir: dir, Lease: testLease.String()}, Options{NodeID: node})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.RegisterNode(context.Background(), node); err != nil {
		t.Fatal(err)
	}
	if err := b.leases.Start(node, b.lease); err != nil {
		t.Fatal(err)
	}
	return b
}

// stagedVolume is a volume a node staged (attach, connect, mkfs, mount)
// with a task's file open for writing in it.
type stagedVolume struct {
	id, dev, mnt string
	w            *os.File
}

func stageWriting(t *testing.T, n *Backend, tmp, name string) *stagedVolume {
	t.Helper()
	ctx := context.Background()
	v, err := n.Create(ctx, req(name, 32*units.MiB))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Attach(ctx, v.ID, backends.AttachRequest{Node: n.node, Mode: backends.SingleNodeWriter, ByNode: true}); err != nil {
		t.Fatal(err)
	}
	d, err := n.Connect(ctx, v.ID, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.SetReadOnlyFlag(d.Path, false); loop.Detach(d.Path) })
	if out, err := exec.Command("mkfs.ext4", "-q", d.Path).CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v\n%s", err, out)
	}
	s := &stagedVolume{id: v.ID, dev: d.Path, mnt: filepath.Join(tmp, name)}
	mustMount(t, d.Path, s.mnt)
	if s.w, err = os.OpenFile(filepath.Join(s.mnt, "log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.w.Close() })
	if err := s.write("before\n"); err != nil {
		t.Fatal(err)
	}
	return s
}

// write is the task writing through the node's mount: a write and an
// fsync, so an error the filesystem holds back until the sync counts.
func (s *stagedVolume) write(line string) error {
	if _, err := s.w.Write([]byte(line)); err != nil {
		return err
	}
	return s.w.Sync()
}

// release unstages a volume on a node: unmount, disconnect.
func (s *stagedVolume) release(t *testing.T, n *Backend) {
	t.Helper()
	s.w.Close()
	if err := unix.Unmount(s.mnt, 0); err != nil {
		t.Fatal(err)
	}
	if err := n.Disconnect(context.Background(), s.id); err != nil {
		t.Fatalf("disconnect %s on %s: %v", s.id, n.node, err)
	}
}

// TestFenceOnRestartAfterTakeover: agent-a's plugin dies while agent-a and
// its tasks keep running; agent-b takes one of its volumes over once the
// lease expired. When agent-a's plugin starts again, its start-up fences
// that volume before it serves (the task's writes through agent-a's mount
// fail), reports it and shows it Fenced; the volume it still holds stays
// writable.
func TestFenceOnRestartAfterTakeover(t *testing.T) {
	harness.RequireRoot(t)
	tmp := harness.TempDir(t)
	dir := filepath.Join(tmp, "pool")
	a := crashedNode(t, dir, "agent-a")
	b := newLeaseNode(t, dir, "agent-b", testLease.String())
	ctx := context.Background()
	taken := stageWriting(t, a, tmp, "taken")
	kept := stageWriting(t, a, tmp, "kept")

	attachUntil(t, b.Backend, taken.id, backends.AttachRequest{Node: "agent-b", Mode: backends.SingleNodeWriter, ByNode: true}, 20*testLease)
	// The gap: with no plugin, nothing on agent-a stops its task.
	if err := taken.write("while the plugin is down\n"); err != nil {
		t.Fatalf("write before the restart: %v", err)
	}

	// agent-a's plugin starts again, as node.Start runs it: lease, then
	// reconcile, then it serves.
	a2 := newLeaseNode(t, dir, "agent-a", testLease.String())
	done, err := a2.Reconcile(ctx)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if len(done) != 1 || !strings.Contains(done[0], taken.id) || !strings.Contains(done[0], "agent-b") {
		t.Errorf("reconcile reports %q, want the fence of %s naming agent-b", done, taken.id)
	}
	if err := taken.write("after the restart\n"); !errors.Is(err, unix.EIO) && !errors.Is(err, unix.EROFS) {
		t.Errorf("write through agent-a's mount of the volume agent-b took: %v, want EIO or EROFS", err)
	}
	if ro, err := loop.BlockReadOnly(taken.dev); err != nil || !ro {
		t.Errorf("%s read-only after the fence: %t, %v", taken.dev, ro, err)
	}
	if err := kept.write("after the restart\n"); err != nil {
		t.Errorf("write to the volume agent-a still holds: %v", err)
	}
	fences := a2.ev.Fences()
	if len(fences) != 1 || len(fences[0].Volumes) != 1 || fences[0].Volumes[0] != taken.id || !fences[0].TakenWhileDown || !strings.Contains(fences[0].Reason, "agent-b") {
		t.Errorf("fences reported: %+v, want one of %s naming agent-b", fences, taken.id)
	}
	if conds, err := a2.Conditions(ctx, taken.id); err != nil || len(conds) != 1 || conds[0].Reason != "Fenced" {
		t.Errorf("conditions of the taken volume on agent-a: %+v, %v", conds, err)
	}
	if conds, err := a2.Conditions(ctx, kept.id); err != nil || len(conds) != 0 {
		t.Errorf("conditions of the kept volume on agent-a: %+v, %v", conds, err)
	}
	if m, err := a2.readMeta(taken.id); err != nil || len(m.Attachments) != 1 || m.Attachments[0].Node != "agent-b" {
		t.Errorf("attachments of the taken volume after the fence: %+v, %v", m, err)
	}

	// The CO unstages both on agent-a; the fence goes with the device.
	taken.release(t, a2.Backend)
	kept.release(t, a2.Backend)
	if conds, _ := a2.Conditions(ctx, taken.id); len(conds) != 0 {
		t.Errorf("conditions after unstage on agent-a: %+v", conds)
	}
}

// TestNoFenceOnUnreadableMetadata: a restarted node that cannot read a
// volume's metadata does not fence it on that account, even when the
// volume was in fact taken: only a positive "not attached here" fences.
func TestNoFenceOnUnreadableMetadata(t *testing.T) {
	harness.RequireRoot(t)
	tmp := harness.TempDir(t)
	dir := filepath.Join(tmp, "pool")
	a := crashedNode(t, dir, "agent-a")
	b := newLeaseNode(t, dir, "agent-b", testLease.String())
	ctx := context.Background()
	s := stageWriting(t, a, tmp, "taken")
	attachUntil(t, b.Backend, s.id, backends.AttachRequest{Node: "agent-b", Mode: backends.SingleNodeWriter, ByNode: true}, 20*testLease)

	meta := a.metaPath(s.id)
	saved, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		spoil func() error
	}{
		{"corrupt", func() error { return os.WriteFile(meta, []byte("{not json"), 0o600) }},
		{"read error", func() error {
			// A directory opens but fails to read (EISDIR).
			return os.Mkdir(meta, 0o700)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.RemoveAll(meta); err != nil {
				t.Fatal(err)
			}
			if err := c.spoil(); err != nil {
				t.Fatal(err)
			}
			a2 := newLeaseNode(t, dir, "agent-a", testLease.String())
			defer a2.stop()
			if done, err := a2.Reconcile(ctx); err != nil || len(done) != 0 {
				t.Errorf("reconcile: %q, %v; want nothing done", done, err)
			}
			if err := s.write("after the restart\n"); err != nil {
				t.Errorf("write after a restart that could not read the metadata: %v", err)
			}
			if f := a2.ev.Fences(); len(f) != 0 {
				t.Errorf("fences reported: %+v", f)
			}
		})
	}
	if err := os.RemoveAll(meta); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(meta, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	// The same restart with the metadata readable again does fence: the
	// volume was spared above for the read error alone.
	a3 := newLeaseNode(t, dir, "agent-a", testLease.String())
	if done, err := a3.Reconcile(ctx); err != nil || len(done) != 1 {
		t.Errorf("reconcile with the metadata readable: %q, %v; want the fence", done, err)
	}
	if err := s.write("after the fence\n"); !errors.Is(err, unix.EIO) && !errors.Is(err, unix.EROFS) {
		t.Errorf("write after the fence: %v, want EIO or EROFS", err)
	}
	s.w.Close()
	if err := unix.Unmount(s.mnt, 0); err != nil {
		t.Fatal(err)
	}
}
