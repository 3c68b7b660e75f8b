package file

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
)

// rewriteInPlace replaces old with new (of the same length) in the volume's
// meta.json without a rename, and sets its times back: the inode, size and
// mtime are what they were, as after two writes within one mtime tick on a
// filesystem that reuses inodes, or behind NFS attribute caching.
func rewriteInPlace(t *testing.T, b *Backend, id, old, new string) {
	t.Helper()
	p := b.metaPath(id)
	var before unix.Stat_t
	if err := unix.Stat(p, &before); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(old) != len(new) || !bytes.Contains(data, []byte(old)) {
		t.Fatalf("cannot rewrite %q as %q in %s", old, new, data)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Replace(data, []byte(old), []byte(new), 1), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	mtime := time.Unix(before.Mtim.Unix())
	if err := os.Chtimes(p, time.Unix(before.Atim.Unix()), mtime); err != nil {
		t.Fatal(err)
	}
	var after unix.Stat_t
	if err := unix.Stat(p, &after); err != nil {
		t.Fatal(err)
	}
	if after.Ino != before.Ino || after.Size != before.Size || after.Mtim != before.Mtim {
		t.Fatalf("rewrite changed the file's identity: %+v -> %+v", before, after)
	}
}

// TestWritePathReadsMetadataFromDisk: a read that leads to a write never
// comes from the metadata cache, whose key (inode, size, mtime) cannot see
// a same-size rewrite within one mtime tick. Get may serve the cache; the
// writes below must see what is on disk.
func TestWritePathReadsMetadataFromDisk(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		prepare  func(b *Backend, id string) error
		old, new string
		write    func(b *Backend, id string) error
		check    func(t *testing.T, m *meta, err error)
	}{
		{
			name: "detach sees an attachment written by another node",
			prepare: func(b *Backend, id string) error {
				_, err := b.Attach(ctx, id, backends.AttachRequest{Node: "n1", Mode: backends.SingleNodeWriter})
				return err
			},
			old: `"node":"n1"`, new: `"node":"n9"`,
			write: func(b *Backend, id string) error { return b.Detach(ctx, id, "n9") },
			check: func(t *testing.T, m *meta, err error) {
				if err != nil || len(m.Attachments) != 0 {
					t.Fatalf("detach of n9: %v; attachments on disk %+v, want none", err, m.Attachments)
				}
			},
		},
		{
			name: "mark formatted sees another node's mark",
			prepare: func(b *Backend, id string) error {
				return b.MarkFormatted(ctx, id, "ext4")
			},
			old: `"formatted":"ext4"`, new: `"formatted":"ext3"`,
			write: func(b *Backend, id string) error { return b.MarkFormatted(ctx, id, "ext4") },
			check: func(t *testing.T, m *meta, err error) {
				if err == nil || !strings.Contains(err.Error(), "ext3") || m.Formatted != "ext3" {
					t.Fatalf("marking ext4 over a disk mark ext3: %v (mark on disk %q), want a refusal naming ext3", err, m.Formatted)
				}
			},
		},
		{
			name: "attach sees another node's writer",
			prepare: func(b *Backend, id string) error {
				_, err := b.Attach(ctx, id, backends.AttachRequest{Node: "n2", Mode: backends.SingleNodeWriter})
				if err == nil {
					err = b.Detach(ctx, id, "n2")
				}
				if err == nil {
					_, err = b.Attach(ctx, id, backends.AttachRequest{Node: "n1", Mode: backends.SingleNodeWriter})
				}
				return err
			},
			old: `"node":"n1"`, new: `"node":"n3"`,
			write: func(b *Backend, id string) error {
				_, err := b.Attach(ctx, id, backends.AttachRequest{Node: "n1", Mode: backends.SingleNodeWriter})
				return err
			},
			check: func(t *testing.T, m *meta, err error) {
				if !errors.Is(err, backends.ErrConflict) || len(m.Attachments) != 1 || m.Attachments[0].Node != "n3" {
					t.Fatalf("attach to n1 while n3 writes: %v; attachments on disk %+v, want a conflict and n3 alone", err, m.Attachments)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newPool(t, Config{}, "n1")
			for _, n := range []string{"n2", "n3"} {
				if err := b.RegisterNode(ctx, n); err != nil {
					t.Fatal(err)
				}
			}
			v, err := b.Create(ctx, req("vol", 20*units.MiB))
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.prepare(b, v.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Get(ctx, v.ID); err != nil { // fills the cache
				t.Fatal(err)
			}
			rewriteInPlace(t, b, v.ID, tt.old, tt.new)
			err = tt.write(b, v.ID)
			b.forget(v.ID)
			m, rerr := b.readMeta(v.ID)
			if rerr != nil {
				t.Fatal(rerr)
			}
			tt.check(t, m, err)
		})
	}
}

// procLock is one line of /proc/locks.
type procLock struct {
	kind, access string // POSIX, FLOCK, OFDLCK; READ, WRITE
	blocked      bool   // a waiter ("->"), not a holder
	major, minor uint32
	ino          uint64
}

func procLocks(t *testing.T) []procLock {
	t.Helper()
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	var out []procLock
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		var l procLock
		if len(f) > 1 && f[1] == "->" {
			l.blocked = true
			f = append(f[:1], f[2:]...)
		}
		if len(f) < 6 {
			continue
		}
		l.kind, l.access = f[1], f[3]
		if _, err := fmt.Sscanf(f[5], "%x:%x:%d", &l.major, &l.minor, &l.ino); err != nil {
			t.Fatalf("/proc/locks line %q: %v", line, err)
		}
		out = append(out, l)
	}
	return out
}

// poolLocks returns the lines of /proc/locks for files in the pool, with
// the path each one locks.
func poolLocks(t *testing.T, dir string) map[string][]procLock {
	t.Helper()
	type fileID struct {
		major, minor uint32
		ino          uint64
	}
	paths := map[fileID]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		var st unix.Stat_t
		if err == nil && unix.Stat(p, &st) == nil {
			paths[fileID{unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino}] = p
		}
		return nil
	})
	out := map[string][]procLock{}
	for _, l := range procLocks(t) {
		if p, ok := paths[fileID{l.major, l.minor, l.ino}]; ok {
			out[p] = append(out[p], l)
		}
	}
	return out
}

const lockChildEnv = "CSI_FILE_POOL_LOCK_CHILD"

// TestVolumeLockHoldsAcrossProcesses: the pool's volume lock is a record
// lock (OFD or POSIX) on a regular file, the kind NFS and CephFS carry
// between clients, never flock(2) and never a lock on a directory; and a
// second process, as another node's plugin would be, waits for it.
func TestVolumeLockHoldsAcrossProcesses(t *testing.T) {
	if spec := os.Getenv(lockChildEnv); spec != "" {
		lockChild(t, spec)
		return
	}
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	v, err := b.Create(ctx, req("vol", 20*units.MiB))
	if err != nil {
		t.Fatal(err)
	}
	before := poolLocks(t, b.dir)
	if len(before) != 0 {
		t.Fatalf("locks held in the pool before locking: %+v", before)
	}
	l, err := b.lockVolume(ctx, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	held := false
	defer func() {
		if !held {
			l.Close()
		}
	}()
	locks := poolLocks(t, b.dir)
	if len(locks) != 1 {
		t.Fatalf("locks in the pool while a volume is locked: %+v, want one", locks)
	}
	for p, ls := range locks {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() {
			t.Errorf("the volume lock is on %s, a %v, not a regular file", p, fi.Mode().Type())
		}
		for _, l := range ls {
			if (l.kind != "OFDLCK" && l.kind != "POSIX") || l.access != "WRITE" || l.blocked {
				t.Errorf("the volume lock on %s is a %s %s lock (blocked=%v), want an OFD or POSIX write lock", p, l.kind, l.access, l.blocked)
			}
		}
	}

	// Another process on the same pool waits for the lock until its
	// deadline, and takes it once this one lets go.
	cmd := exec.Command(os.Args[0], "-test.run=^TestVolumeLockHoldsAcrossProcesses$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+b.dir+"|"+v.ID)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	next := func() string {
		for lines.Scan() {
			if s, ok := strings.CutPrefix(lines.Text(), "child: "); ok {
				return s
			}
		}
		return "(child exited: " + fmt.Sprint(lines.Err()) + ")"
	}
	if got := next(); got != "busy" {
		t.Errorf("the other process while the lock is held: %s, want busy", got)
	}
	l.Close()
	held = true
	if got := next(); got != "locked" {
		t.Errorf("the other process after the lock was released: %s, want locked", got)
	}
	for lines.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("child: %v", err)
	}
}

// lockChild is the second process of TestVolumeLockHoldsAcrossProcesses:
// another node's plugin on the same pool.
func lockChild(t *testing.T, spec string) {
	dir, id, _ := strings.Cut(spec, "|")
	b, err := New(Config{Name: "local", Dir: dir}, Options{NodeID: "n2"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	l, err := b.lockVolume(ctx, id)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Println("child: busy")
	case err != nil:
		fmt.Println("child: error", err)
		return
	default:
		fmt.Println("child: free")
		l.Close()
		return
	}
	l, err = b.lockVolume(context.Background(), id)
	if err != nil {
		fmt.Println("child: error", err)
		return
	}
	fmt.Println("child: locked")
	l.Close()
}

// TestForceDetachReportsWhatItFound: the operator's force-detach succeeds
// only when it removed an attachment; a wrong node or volume is an error
// that says what the pool holds.
func TestForceDetachReportsWhatItFound(t *testing.T) {
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	v, err := b.Create(ctx, req("vol", 20*units.MiB))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Attach(ctx, v.ID, backends.AttachRequest{Node: "n1", Mode: backends.SingleNodeWriter}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, id, node string
		wantErr        error
		wantMsg        string
	}{
		{"wrong node", v.ID, "n2", backends.ErrNotFound, "attached to n1"},
		{"unknown volume", strings.Repeat("0", 32), "n1", backends.ErrNotFound, "does not exist"},
		{"malformed volume id", "../x", "n1", backends.ErrNotFound, "does not exist"},
		{"the dead node", v.ID, "n1", nil, ""},
		{"again, nothing left", v.ID, "n1", backends.ErrNotFound, "attached to no node"},
	}
	for _, tt := range tests {
		err := b.ForceDetach(ctx, tt.id, tt.node)
		if tt.wantErr == nil {
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			continue
		}
		if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("%s: %v, want %v saying %q", tt.name, err, tt.wantErr, tt.wantMsg)
		}
	}
	if m, err := b.readMeta(v.ID); err != nil || len(m.Attachments) != 0 {
		t.Fatalf("attachments after the force-detach: %+v, %v", m, err)
	}
}

// TestDeletedVolumeLeavesNoLockBehind: deleting volumes leaves no lock file
// per volume or name (the pool keeps its one pool.lock), and a deleted
// volume's lock never lets an operation act on it again.
func TestDeletedVolumeLeavesNoLockBehind(t *testing.T) {
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	var ids []string
	for _, name := range []string{"a", "b", "c"} {
		v, err := b.Create(ctx, req(name, 20*units.MiB))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Attach(ctx, v.ID, backends.AttachRequest{Node: "n1", Mode: backends.SingleNodeWriter}); err != nil {
			t.Fatal(err)
		}
		if err := b.Detach(ctx, v.ID, "n1"); err != nil {
			t.Fatal(err)
		}
		if err := b.Delete(ctx, v.ID); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	var files []string
	filepath.WalkDir(b.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(b.dir, p)
			files = append(files, rel)
		}
		return nil
	})
	if want := []string{"nodes/n1.json", "pool.lock"}; strings.Join(files, ",") != strings.Join(want, ",") {
		t.Fatalf("files in the pool after deleting every volume: %v, want %v", files, want)
	}
	for _, id := range ids {
		for _, op := range []struct {
			name string
			do   func() error
		}{
			{"attach", func() error {
				_, err := b.Attach(ctx, id, backends.AttachRequest{Node: "n1", Mode: backends.SingleNodeWriter})
				return err
			}},
			{"mark formatted", func() error { return b.MarkFormatted(ctx, id, "ext4") }},
			{"expand", func() error { _, err := b.Expand(ctx, id, 40*units.MiB, 0); return err }},
			{"snapshot", func() error { _, err := b.CreateSnapshot(ctx, id, "s-"+id, nil); return err }},
		} {
			if err := op.do(); !errors.Is(err, backends.ErrNotFound) {
				t.Errorf("%s of deleted volume %s: %v, want not found", op.name, id, err)
			}
		}
		if _, err := os.Stat(b.volDir(id)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("volume directory of %s after operations on the deleted volume: %v", id, err)
		}
	}
}
