package file

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/fsutil"
	"github.com/csi-libstorage/csi-libstorage/internal/loop"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

func newPool(t *testing.T, cfg Config, node string) *Backend {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(harness.TempDir(t), "pool")
	}
	cfg.Name = "local"
	b, err := New(cfg, Options{NodeID: node})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.RegisterNode(context.Background(), node); err != nil {
		t.Fatal(err)
	}
	return b
}

func req(name string, size int64) backends.CreateRequest {
	return backends.CreateRequest{Name: name, RequiredBytes: size, Modes: []backends.AccessMode{backends.SingleNodeWriter}}
}

func TestCreateIsIdempotentByName(t *testing.T) {
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	v1, err := b.Create(ctx, req("db", 20*units.MiB))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := b.Create(ctx, req("db", 20*units.MiB))
	if err != nil || v2.ID != v1.ID {
		t.Fatalf("repeat create = %v, %v; want volume %s", v2, err, v1.ID)
	}
	tests := []struct {
		name string
		r    backends.CreateRequest
	}{
		{"bigger", req("db", 40*units.MiB)},
		{"other parameters", backends.CreateRequest{Name: "db", RequiredBytes: 20 * units.MiB, Parameters: map[string]string{"preallocate": "true"}}},
		{"block", backends.CreateRequest{Name: "db", RequiredBytes: 20 * units.MiB, Block: true}},
		{"limit below size", backends.CreateRequest{Name: "db", RequiredBytes: units.MiB, LimitBytes: 17 * units.MiB}},
	}
	for _, tt := range tests {
		if _, err := b.Create(ctx, tt.r); !errors.Is(err, backends.ErrAlreadyExists) {
			t.Errorf("%s: err = %v, want ErrAlreadyExists", tt.name, err)
		}
	}
	vols, _ := b.List(ctx)
	if len(vols) != 1 {
		t.Fatalf("%d volumes after repeats, want 1", len(vols))
	}
}

func TestCreateSizes(t *testing.T) {
	ctx := context.Background()
	b := newPool(t, Config{DefaultSize: "64MiB"}, "n1")
	tests := []struct {
		name     string
		r        backends.CreateRequest
		want     int64
		wantErr  error
		imageLen int64
	}{
		{"default", backends.CreateRequest{Name: "a"}, 64 * units.MiB, nil, 0},
		{"rounded up", backends.CreateRequest{Name: "b", RequiredBytes: 20*units.MiB + 1}, 21 * units.MiB, nil, 0},
		{"minimum", backends.CreateRequest{Name: "c", RequiredBytes: 1}, MinSize, nil, 0},
		{"xfs minimum", backends.CreateRequest{Name: "d", RequiredBytes: 1, FSType: "xfs"}, MinSizeXFS, nil, 0},
		{"limit only", backends.CreateRequest{Name: "e", LimitBytes: 32 * units.MiB}, 32 * units.MiB, nil, 0},
		{"limit below minimum", backends.CreateRequest{Name: "f", LimitBytes: units.MiB}, 0, backends.ErrOutOfRange, 0},
		{"more than the disk", backends.CreateRequest{Name: "g", RequiredBytes: 1 << 60}, 0, backends.ErrCapacity, 0},
	}
	for _, tt := range tests {
		v, err := b.Create(ctx, tt.r)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if v.CapacityBytes != tt.want {
			t.Errorf("%s: size %d, want %d", tt.name, v.CapacityBytes, tt.want)
		}
		if _, err := os.Stat(b.imagePath(v.ID)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: image made by the create (%v); the first connect makes it", tt.name, err)
		}
		fi, err := os.Stat(madeImage(t, b, v.ID))
		if err != nil || fi.Size() != tt.want {
			t.Errorf("%s: image %v, %v; want %d bytes", tt.name, fi, err, tt.want)
		}
	}
}

func TestCapacityLimit(t *testing.T) {
	ctx := context.Background()
	b := newPool(t, Config{Capacity: "100MiB"}, "n1")
	if _, err := b.Create(ctx, req("a", 60*units.MiB)); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Capacity(ctx, nil); err != nil || n != 40*units.MiB {
		t.Fatalf("Capacity = %d, %v; want 40MiB", n, err)
	}
	if _, err := b.Create(ctx, req("b", 60*units.MiB)); !errors.Is(err, backends.ErrCapacity) {
		t.Fatalf("create over the cap: %v, want ErrCapacity", err)
	}
}

// What a crash can leave of a create or a delete whose writes were not all
// made durable, in either layout, built by hand. A retried create must
// succeed, leave exactly the one new volume (in the flat layout, with no
// leftover of the directory layout), reuse no byte of an old image, and
// answer the same volume when repeated.
func TestCreateAfterUnsyncedCrash(t *testing.T) {
	const old = "0123456789abcdef0123456789abcdef"
	key := nameKey("db")
	filling := key + "0123456789abcdef"
	for _, tc := range []struct {
		name  string
		nameF string // content of the directory layout's name file; "" for none
		state func(b *Backend)
	}{
		{"name only", old + "\n", func(b *Backend) {}},
		{"torn name", "0123", func(b *Backend) {}},
		{"empty name", "", func(b *Backend) {
			os.WriteFile(b.namePath("db"), nil, 0o600)
		}},
		{"image of an interrupted delete without metadata", old + "\n", func(b *Backend) {
			os.MkdirAll(b.volDir(old), 0o700)
			os.WriteFile(b.imagePath(old), []byte("secret data of the deleted volume"), 0o600)
		}},
		{"metadata created but its bytes lost", old + "\n", func(b *Backend) {
			os.MkdirAll(b.volDir(old), 0o700)
			os.WriteFile(b.imagePath(old), []byte("partial"), 0o600)
			os.WriteFile(b.metaPath(old), nil, 0o600)
		}},
		{"metadata of zeros", old + "\n", func(b *Backend) {
			os.MkdirAll(b.volDir(old), 0o700)
			os.WriteFile(b.metaPath(old), make([]byte, 300), 0o600)
		}},
		{"flat metadata empty", "", func(b *Backend) {
			os.WriteFile(b.flatMetaPath(key), nil, 0o600)
		}},
		{"flat metadata torn", "", func(b *Backend) {
			os.WriteFile(b.flatMetaPath(key), []byte(`{"version": 1, "id": "`+key), 0o600)
		}},
		{"flat metadata of zeros", "", func(b *Backend) {
			os.WriteFile(b.flatMetaPath(key), make([]byte, 300), 0o600)
		}},
		{"flat clone still filling", "", func(b *Backend) {
			data, _ := json.Marshal(&meta{Version: 1, ID: filling, Name: "db", CapacityBytes: 20 * units.MiB, Filling: true})
			os.WriteFile(b.flatMetaPath(key), data, 0o600)
			os.WriteFile(b.imagePath(filling), []byte("secret data of the source"), 0o600)
			os.WriteFile(b.flatTmpPath(key), []byte("half a replacement"), 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			b := newPool(t, Config{}, "n1")
			if tc.nameF != "" {
				if err := os.WriteFile(b.namePath("db"), []byte(tc.nameF), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			tc.state(b)
			if vols, err := b.List(ctx); err != nil || len(vols) != 0 {
				t.Fatalf("List of the crashed pool = %v, %v; want no volume and no error", vols, err)
			}
			if _, err := b.Get(ctx, filling); !errors.Is(err, backends.ErrNotFound) {
				t.Fatalf("Get of a create still filling = %v, want ErrNotFound", err)
			}
			v, err := b.Create(ctx, req("db", 20*units.MiB))
			if err != nil {
				t.Fatal(err)
			}
			if !isFlat(v.ID) || v.ID[:keyLen] != key {
				t.Fatalf("new volume id %s, want the flat layout's of key %s", v.ID, key)
			}
			if entries, _ := os.ReadDir(filepath.Join(b.dir, "volumes")); len(entries) != 0 {
				t.Fatalf("directory layout left %v", entries)
			}
			if _, err := os.Lstat(b.namePath("db")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("name file of the directory layout left: %v", err)
			}
			if entries, _ := os.ReadDir(filepath.Join(b.dir, "vols")); len(entries) != 1 || entries[0].Name() != key+".json" {
				t.Fatalf("vols/ holds %v, want only %s.json", entries, key)
			}
			img, err := os.ReadFile(madeImage(t, b, v.ID))
			if err != nil || int64(len(img)) != 20*units.MiB {
				t.Fatalf("image: %d bytes, %v", len(img), err)
			}
			if n := len(bytes.Trim(img, "\x00")); n != 0 {
				t.Fatalf("the new image holds %d non-zero bytes of an earlier attempt", n)
			}
			again, err := b.Create(ctx, req("db", 20*units.MiB))
			if err != nil || again.ID != v.ID {
				t.Fatalf("repeated create = %v, %v; want %s", again, err, v.ID)
			}
		})
	}
}

// A retried delete whose volume is already gone answers success; the
// name left behind by a crash that kept it does not make the next create
// of the name reuse the deleted id.
func TestDeleteAfterUnsyncedCrash(t *testing.T) {
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	v, err := b.Create(ctx, req("db", 20*units.MiB))
	if err != nil {
		t.Fatal(err)
	}
	// The crash kept the image's removal and not the metadata's.
	if err := os.Remove(madeImage(t, b, v.ID)); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, v.ID); err != nil {
		t.Fatalf("retried delete: %v", err)
	}
	if _, err := b.Get(ctx, v.ID); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("Get after the retried delete = %v, want ErrNotFound", err)
	}
	// And the other way round, which only a lost write can produce: the
	// metadata is gone, its image is not.
	v1, err := b.Create(ctx, req("db", 20*units.MiB))
	if err != nil {
		t.Fatal(err)
	}
	img := madeImage(t, b, v1.ID)
	if err := os.Remove(b.metaPath(v1.ID)); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, v1.ID); err != nil {
		t.Fatalf("retried delete: %v", err)
	}
	if _, err := os.Stat(img); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("image left by the retried delete: %v", err)
	}
	v2, err := b.Create(ctx, req("db", 20*units.MiB))
	if err != nil || v2.ID == v.ID {
		t.Fatalf("create after the delete = %v, %v; want a new id", v2, err)
	}
}

func TestDeleteRules(t *testing.T) {
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	v, _ := b.Create(ctx, req("db", 20*units.MiB))
	if _, err := b.Attach(ctx, v.ID, backends.AttachRequest{Node: "n1", Mode: backends.SingleNodeWriter}); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, v.ID); !errors.Is(err, backends.ErrInUse) {
		t.Fatalf("delete while attached: %v, want ErrInUse", err)
	}
	if err := b.Detach(ctx, v.ID, "n1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Detach(ctx, v.ID, "n1"); err != nil {
		t.Fatalf("second detach: %v", err)
	}
	if err := b.Delete(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, v.ID); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	for _, p := range []string{b.metaPath(v.ID), b.imagePath(v.ID), b.flatTmpPath(nameKey("db"))} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after delete", p)
		}
	}
	v2, err := b.Create(ctx, req("db", 20*units.MiB))
	if err != nil || v2.ID == v.ID {
		t.Fatalf("create after delete = %v, %v; want a new volume", v2, err)
	}
}

func TestAttachRules(t *testing.T) {
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	b.RegisterNode(ctx, "n2")
	v, _ := b.Create(ctx, req("db", 20*units.MiB))
	if _, err := b.Attach(ctx, v.ID, backends.AttachRequest{Node: "ghost", Mode: backends.SingleNodeWriter}); !errors.Is(err, backends.ErrNodeNotFound) {
		t.Fatalf("attach to unknown node: %v", err)
	}
	if _, err := b.Attach(ctx, v.ID, backends.AttachRequest{Node: "n1", Mode: backends.SingleNodeWriter}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Attach(ctx, v.ID, backends.AttachRequest{Node: "n2", Mode: backends.SingleNodeWriter}); !errors.Is(err, backends.ErrConflict) {
		t.Fatalf("second writer node: %v, want ErrConflict", err)
	}
	got, _ := b.Get(ctx, v.ID)
	if len(got.Attachments) != 1 || got.Attachments[0].Node != "n1" {
		t.Fatalf("attachments %+v", got.Attachments)
	}
	if _, err := b.Attach(ctx, "ffffffffffffffffffffffffffffffff", backends.AttachRequest{Node: "n1", Mode: backends.SingleNodeWriter}); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("attach of a missing volume: %v", err)
	}
}

// Two plugin processes sharing a pool race to create the same name; the
// name lock makes exactly one volume.
func TestConcurrentCreateAcrossInstances(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(harness.TempDir(t), "pool")
	a := newPool(t, Config{Dir: dir}, "n1")
	b := newPool(t, Config{Dir: dir}, "n2")
	var wg sync.WaitGroup
	ids := make([]string, 16)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := a
			if i%2 == 1 {
				p = b
			}
			v, err := p.Create(ctx, req("shared", 20*units.MiB))
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = v.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent creates gave %v", ids)
		}
	}
	vols, _ := a.List(ctx)
	if len(vols) != 1 {
		t.Fatalf("%d volumes, want 1", len(vols))
	}
}

func TestPoolSafety(t *testing.T) {
	dir := filepath.Join(harness.TempDir(t), "pool")
	os.MkdirAll(dir, 0o777)
	os.Chmod(dir, 0o777)
	if _, err := New(Config{Name: "x", Dir: dir}, Options{}); err == nil {
		t.Fatal("a world-writable pool was accepted")
	}
	os.Chmod(dir, 0o700)
	b := newPool(t, Config{Dir: dir}, "n1")
	v, err := b.Create(context.Background(), req("db", 20*units.MiB))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{b.metaPath(v.ID), madeImage(t, b, v.ID)} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, %v; want no group or other access", p, fi.Mode(), err)
		}
	}
	for _, id := range []string{"../../etc", "/abs", "0123", "0123456789ABCDEF0123456789ABCDEF"} {
		if _, err := b.Get(context.Background(), id); !errors.Is(err, backends.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
		}
	}
	if err := b.RegisterNode(context.Background(), "../evil"); !errors.Is(err, backends.ErrInvalid) {
		t.Errorf("RegisterNode(../evil) = %v", err)
	}
}

func TestConnectVerifyDisconnect(t *testing.T) {
	harness.RequireRoot(t)
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	v, _ := b.Create(ctx, req("db", 20*units.MiB))
	other, _ := b.Create(ctx, req("other", 20*units.MiB))
	if _, err := b.Connect(ctx, v.ID, nil, false); !errors.Is(err, backends.ErrConflict) {
		t.Fatalf("connect before attach: %v, want ErrConflict", err)
	}
	for _, id := range []string{v.ID, other.ID} {
		if _, err := b.Attach(ctx, id, backends.AttachRequest{Node: "n1", Mode: backends.SingleNodeWriter}); err != nil {
			t.Fatal(err)
		}
	}
	d1, err := b.Connect(ctx, v.ID, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.Detach(d1.Path) })
	d2, err := b.Connect(ctx, v.ID, nil, false)
	if err != nil || d2.Path != d1.Path {
		t.Fatalf("second connect = %v, %v; want the same device %s", d2, err, d1.Path)
	}
	if err := b.Verify(ctx, v.ID, d1); err != nil {
		t.Fatalf("verify own device: %v", err)
	}
	d3, err := b.Connect(ctx, other.ID, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.Detach(d3.Path) })
	if err := b.Verify(ctx, v.ID, d3); err == nil {
		t.Fatalf("%s verified as volume %s but it backs %s", d3.Path, v.ID, other.ID)
	}
	// An open exclusive holder (as a mount is) keeps the device.
	f, err := os.OpenFile(d1.Path, os.O_RDONLY|os.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Disconnect(ctx, v.ID); !errors.Is(err, backends.ErrInUse) {
		t.Fatalf("disconnect of a busy device: %v, want ErrInUse", err)
	}
	f.Close()
	if err := b.Detach(ctx, v.ID, "n1"); !errors.Is(err, backends.ErrInUse) {
		t.Fatalf("detach while connected: %v, want ErrInUse", err)
	}
	for _, id := range []string{v.ID, other.ID} {
		if err := b.Disconnect(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := b.Detach(ctx, id, "n1"); err != nil {
			t.Fatalf("detach after disconnect: %v", err)
		}
		if err := b.Disconnect(ctx, id); err != nil {
			t.Fatalf("second disconnect: %v", err)
		}
		img, _ := b.ImagePath(id)
		if devs, _ := loop.Find(img); len(devs) != 0 {
			t.Fatalf("loop devices left for %s: %+v", id, devs)
		}
	}
}

// After a restart, loop devices that nothing uses and no attachment
// accounts for are released; a device in use is kept.
func TestReconcile(t *testing.T) {
	harness.RequireRoot(t)
	ctx := context.Background()
	dir := filepath.Join(harness.TempDir(t), "pool")
	b := newPool(t, Config{Dir: dir}, "n1")
	connect := func(name string) (string, string) {
		v, err := b.Create(ctx, req(name, 20*units.MiB))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Attach(ctx, v.ID, backends.AttachRequest{Node: "n1", Mode: backends.SingleNodeWriter}); err != nil {
			t.Fatal(err)
		}
		d, err := b.Connect(ctx, v.ID, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { loop.Detach(d.Path) })
		return v.ID, d.Path
	}
	staged, stagedDev := connect("staged")   // still attached: kept
	busy, busyDev := connect("busy")         // detached but held open: kept
	detached, detachedDev := connect("gone") // detached while the plugin was down
	deleted, deletedDev := connect("deleted")
	_ = staged
	for _, id := range []string{busy, detached, deleted} {
		if err := b.Detach(ctx, id, "n1"); !errors.Is(err, backends.ErrInUse) {
			t.Fatalf("detach of a connected volume: %v, want ErrInUse", err)
		}
		// As an operator would for a node that died with the volume.
		if err := b.ForceDetach(ctx, id, "n1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Delete(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	hold, err := os.OpenFile(busyDev, os.O_RDONLY|os.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()

	restarted := newPool(t, Config{Dir: dir}, "n1")
	done, err := restarted.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 2 {
		t.Fatalf("reconcile actions %q, want 2", done)
	}
	bound := map[string]bool{}
	devs, _ := loop.List()
	for _, d := range devs {
		bound[d.Device] = true
	}
	for dev, want := range map[string]bool{stagedDev: true, busyDev: true, detachedDev: false, deletedDev: false} {
		if bound[dev] != want {
			t.Errorf("%s bound=%v after reconcile, want %v", dev, bound[dev], want)
		}
	}
}

// Sparse images still count in full: what a volume has not written yet is
// not offered again (the Mesos storage provider would offer it twice).
func TestCapacityCountsUnallocatedBytes(t *testing.T) {
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	before, err := b.Capacity(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, req("big", units.GiB)); err != nil {
		t.Fatal(err)
	}
	after, err := b.Capacity(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := before - after; d < units.GiB-64*units.MiB || d > units.GiB+64*units.MiB {
		t.Fatalf("capacity fell by %d bytes after creating a 1 GiB volume", d)
	}
	if _, err := b.Create(ctx, req("too-big", after+units.GiB)); !errors.Is(err, backends.ErrCapacity) {
		t.Fatalf("create beyond the remaining capacity: %v", err)
	}
}

// A pool written by the code before batched writes (name files written
// through a temporary file, indented metadata) keeps working after an
// in-place upgrade: its volumes are found by name, listed, and deleted
// with their names, and the name can be used again.
func TestPoolFromOldLayout(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(harness.TempDir(t), "pool")
	const id = "00112233445566778899aabbccddeeff"
	old := &Backend{dir: dir}
	for _, d := range []string{"volumes/" + id, "names", "nodes"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := fsutil.WriteFileAtomic(old.namePath("db"), []byte(id+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	metaJSON := `{
  "version": 1,
  "id": "` + id + `",
  "name": "db",
  "capacityBytes": 20971520,
  "modes": [
    "SINGLE_NODE_WRITER"
  ],
  "created": "2026-11-20T10:00:00Z"
}`
	if err := os.WriteFile(old.metaPath(id), []byte(metaJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(old.imagePath(id), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(old.imagePath(id), 20*units.MiB); err != nil {
		t.Fatal(err)
	}

	b := newPool(t, Config{Dir: dir}, "n1")
	v, err := b.Create(ctx, req("db", 20*units.MiB))
	if err != nil || v.ID != id {
		t.Fatalf("create of an old volume's name = %v, %v; want %s", v, err, id)
	}
	if vols, err := b.List(ctx); err != nil || len(vols) != 1 || vols[0].ID != id {
		t.Fatalf("List = %v, %v", vols, err)
	}
	if err := b.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{b.namePath("db"), b.volDir(id)} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s left after delete: %v", p, err)
		}
	}
	v2, err := b.Create(ctx, req("db", 20*units.MiB))
	if err != nil || v2.ID == id {
		t.Fatalf("create after delete = %v, %v", v2, err)
	}
	if !isFlat(v2.ID) {
		t.Fatalf("the name made anew has id %s, want one of the flat layout", v2.ID)
	}
	if _, err := os.Lstat(b.namePath("db")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the name made anew left a reservation of the old layout: %v", err)
	}
}

// List and Get take no lock, so a volume's metadata must never be seen
// half written while creates run next to them.
func TestListDuringCreatesNeverSeesPartialMetadata(t *testing.T) {
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	done := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := b.List(ctx); err != nil {
				errs <- err
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := b.Create(ctx, req(fmt.Sprintf("v-%d-%d", w, i), 16*units.MiB)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	if err := <-errs; err != nil {
		t.Fatalf("List during creates: %v", err)
	}
}
