package hostile

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// withUmask runs the rest of the test under mask, the most permissive
// being 0: the plugin must set the modes it needs, not rely on a umask.
func withUmask(t *testing.T, mask int) {
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

// TestSocketMode: the endpoint is a socket of mode 0660, whatever the
// umask.
func TestSocketMode(t *testing.T) {
	for _, mask := range []int{0, 0o022, 0o077} {
		t.Run(fmt.Sprintf("umask-%03o", mask), func(t *testing.T) {
			withUmask(t, mask)
			w := newWorld(t)
			if _, err := w.id.Probe(ctx(t), &csi.ProbeRequest{}); err != nil {
				t.Fatal(err)
			}
			m := perm(t, w.sock)
			if m&fs.ModeSocket == 0 {
				t.Fatalf("%s is %v, not a socket", w.sock, m)
			}
			if m.Perm() != 0o660 {
				t.Errorf("socket mode %#o under umask %#o, want 0660", m.Perm(), mask)
			}
		})
	}
}

// TestPoolPermissions: under a umask of 0, after volumes were created,
// attached, staged, published and snapshotted, no file in the pool is
// group- or world-accessible and no directory is world-accessible or
// group-writable: metadata, name reservations, node records and images.
func TestPoolPermissions(t *testing.T) {
	withUmask(t, 0)
	w := newWorld(t)
	c := ctx(t)
	id := w.create("perm-vol", mountCap())
	if _, err := w.ctl.ControllerPublishVolume(c, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "n1", VolumeCapability: mountCap()}); err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(w.mnt, "staging")
	w.stage(id, staging, mountCap())
	if err := w.publish(id, staging, filepath.Join(w.mnt, "target"), mountCap()); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ctl.CreateSnapshot(c, &csi.CreateSnapshotRequest{Name: "perm-snap", SourceVolumeId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ctl.ControllerExpandVolume(c, &csi.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: 32 << 20}}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	err := filepath.WalkDir(w.pool, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		m := perm(t, p)
		rel, _ := filepath.Rel(w.pool, p)
		switch {
		case m.IsDir():
			if m.Perm()&0o027 != 0 {
				t.Errorf("directory %s has mode %#o: group-writable or world-accessible", rel, m.Perm())
			}
		case m.IsRegular():
			if m.Perm()&0o077 != 0 {
				t.Errorf("file %s has mode %#o: group- or world-accessible", rel, m.Perm())
			}
			kind := filepath.Base(p)[:min(4, len(filepath.Base(p)))]
			if strings.HasPrefix(rel, "vols/") {
				kind = filepath.Ext(p)
			}
			seen[strings.SplitN(rel, "/", 2)[0]+"/"+kind]++
		default:
			t.Errorf("%s is %v, neither a file nor a directory", rel, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The walk saw each kind of file the pool keeps.
	for _, k := range []string{"vols/.json", "vols/.img", "nodes/n1.j", "snapshots/meta", "snapshots/disk"} {
		if seen[k] == 0 {
			t.Errorf("no %s* file in the pool; the check is incomplete (%v)", k, seen)
		}
	}
	for _, d := range []string{"snapnames"} {
		if len(dirEntries(t, filepath.Join(w.pool, d))) == 0 {
			t.Errorf("no file in %s/; the check is incomplete", d)
		}
	}
	if err := w.unpublish(id, filepath.Join(w.mnt, "target")); err != nil {
		t.Error(err)
	}
	w.unstage(id, staging)
}

// TestWorldWritablePoolRefused: a pool directory anyone can write to (where
// anyone could plant or swap an image) stops the plugin at start, with a
// message that says how to fix it, and no socket is left behind.
func TestWorldWritablePoolRefused(t *testing.T) {
	harness.RequireRoot(t)
	for _, c := range []struct {
		name string
		mode os.FileMode
		link bool
	}{
		{"0777", 0o777, false},
		{"sticky-1777", 0o777 | os.ModeSticky, false},
		{"0703", 0o703, false},
		{"via-symlink", 0o777, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := harness.TempDir(t)
			pool := filepath.Join(dir, "pool")
			if err := os.Mkdir(pool, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(pool, c.mode); err != nil {
				t.Fatal(err)
			}
			given := pool
			if c.link {
				given = filepath.Join(dir, "pool-link")
				if err := os.Symlink(pool, given); err != nil {
					t.Fatal(err)
				}
			}
			sock := filepath.Join(dir, "csi.sock")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p, err := wiring.New(ctx, wiring.Options{Endpoint: "unix://" + sock, NodeID: "n1", Mode: wiring.ModeAll,
				Config: config.Default(given), Logger: zap.NewNop(), MetricsAddress: "127.0.0.1:0"})
			if err == nil {
				go p.Serve(ctx)
				t.Fatalf("wiring.New accepted a pool of mode %v", c.mode)
			}
			msg := err.Error()
			for _, want := range []string{"world-writable", "chmod o-w " + given} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			if _, err := os.Lstat(sock); err == nil {
				t.Errorf("a refused start left the socket %s", sock)
			}
			if es := dirEntries(t, pool); len(es) > 0 {
				t.Errorf("a refused start wrote %v into the pool", es)
			}
		})
	}
}
