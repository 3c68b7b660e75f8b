package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/loop"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// oldVolume writes a volume in the directory layout of older versions.
func oldVolume(t *testing.T, b *Backend, id, name string) {
	t.Helper()
	if err := os.MkdirAll(b.volDir(id), 0o700); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(&meta{Version: 1, ID: id, Name: name, CapacityBytes: 20 * units.MiB, Modes: []string{"SINGLE_NODE_WRITER"}})
	for path, data := range map[string][]byte{b.metaPath(id): data, b.namePath(name): []byte(id + "\n")} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(b.imagePath(id), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(b.imagePath(id), 20*units.MiB); err != nil {
		t.Fatal(err)
	}
}

// TestLayoutsListedTogether: a pool holding volumes of both layouts lists
// them all in id order, and a walk in pages of one returns each exactly
// once, whichever layout the page boundary falls on.
func TestLayoutsListedTogether(t *testing.T) {
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	var want []string
	for i, id := range []string{"00000000000000000000000000000000", "7fffffffffffffffffffffffffffffff", "ffffffffffffffffffffffffffffffff"} {
		oldVolume(t, b, id, "old-"+string(rune('a'+i)))
		want = append(want, id)
	}
	for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
		v, err := b.Create(ctx, req(name, 16*units.MiB))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, v.ID)
	}
	vols, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vols {
		got = append(got, v.ID)
	}
	sorted := append([]string(nil), want...)
	slices.Sort(sorted)
	if strings.Join(got, ",") != strings.Join(sorted, ",") {
		t.Fatalf("List = %v, want %v", got, sorted)
	}
	var paged []string
	after := ""
	for range len(want) + 1 {
		page, err := b.ListAfter(ctx, after, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page[0].ID)
		after = page[0].ID
	}
	if strings.Join(paged, ",") != strings.Join(sorted, ",") {
		t.Fatalf("pages = %v, want %v", paged, sorted)
	}
	for _, id := range want {
		if _, err := b.Get(ctx, id); err != nil {
			t.Errorf("Get(%s): %v", id, err)
		}
	}
}

// TestUnmadeImage: until its first connect a volume has no image, and
// everything that reads or changes a volume treats it as the all-zero
// image it stands for: capacity counts it as unallocated, health finds
// nothing wrong, expansion grows what the image will be made with,
// preallocation makes it, and snapshots and clones of it are blank.
func TestUnmadeImage(t *testing.T) {
	ctx := context.Background()
	b := newPool(t, Config{Capacity: "1GiB"}, "n1")
	v, err := b.Create(ctx, req("db", 20*units.MiB))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b.imagePath(v.ID)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("image after create: %v, want none", err)
	}
	if n, err := b.Capacity(ctx, nil); err != nil || n != units.GiB-20*units.MiB {
		t.Fatalf("Capacity = %d, %v; want 1GiB-20MiB", n, err)
	}
	if c, err := b.Conditions(ctx, v.ID); err != nil || len(c) != 0 {
		t.Fatalf("Conditions = %v, %v; want none", c, err)
	}
	if size, err := b.Expand(ctx, v.ID, 30*units.MiB, 0); err != nil || size != 30*units.MiB {
		t.Fatalf("Expand = %d, %v", size, err)
	}
	snap, err := b.CreateSnapshot(ctx, v.ID, "snap", nil)
	if err != nil {
		t.Fatal(err)
	}
	clone, err := b.Create(ctx, backends.CreateRequest{Name: "clone", RequiredBytes: 30 * units.MiB, SourceVolume: v.ID, Modes: []backends.AccessMode{backends.SingleNodeWriter}})
	if err != nil {
		t.Fatal(err)
	}
	fromSnap, err := b.Create(ctx, backends.CreateRequest{Name: "from-snap", RequiredBytes: 30 * units.MiB, SourceSnapshot: snap.ID, Modes: []backends.AccessMode{backends.SingleNodeWriter}})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{clone.ID, fromSnap.ID} {
		fi, err := os.Stat(b.imagePath(id))
		if err != nil || fi.Size() != 30*units.MiB {
			t.Fatalf("image of the copy %s: %v, %v; want 30MiB", id, fi, err)
		}
		var st unix.Stat_t
		if err := unix.Stat(b.imagePath(id), &st); err != nil || st.Blocks != 0 {
			t.Fatalf("copy of a blank volume allocated %d blocks, %v", st.Blocks, err)
		}
	}
	if err := b.Modify(ctx, v.ID, map[string]string{ParamPreallocate: "true"}); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(b.imagePath(v.ID), &st); err != nil || st.Size != 30*units.MiB || st.Blocks*512 < st.Size {
		t.Fatalf("image after preallocate: size %d, %d blocks, %v; want 30MiB allocated", st.Size, st.Blocks, err)
	}
	if m, err := b.readMeta(v.ID); err != nil || m.NoImage {
		t.Fatalf("metadata after preallocate = %+v, %v; want the image recorded", m, err)
	}
}

// TestConnectMakesTheImage: the first connect makes the image, blank and
// of the volume's size, records it, and a later connect reuses it; a
// volume marked formatted whose image is missing is refused, never given
// a blank image.
func TestConnectMakesTheImage(t *testing.T) {
	harness.RequireRoot(t)
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	id := attachedVolume(t, b, "db")
	d, err := b.Connect(ctx, id, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.Detach(d.Path) })
	fi, err := os.Stat(b.imagePath(id))
	if err != nil || fi.Size() != 20*units.MiB {
		t.Fatalf("image after connect: %v, %v", fi, err)
	}
	if m, err := b.readMeta(id); err != nil || m.NoImage || !connected(t, b, id, "n1") {
		t.Fatalf("metadata after connect = %+v, %v; want the image and the connection recorded", m, err)
	}
	if err := b.Verify(ctx, id, d); err != nil {
		t.Fatal(err)
	}
	if err := b.Disconnect(ctx, id); err != nil {
		t.Fatal(err)
	}

	lost := attachedVolume(t, b, "lost")
	m, err := b.readMeta(lost)
	if err != nil {
		t.Fatal(err)
	}
	m.Formatted = "ext4"
	if err := b.writeMeta(m); err != nil {
		t.Fatal(err)
	}
	if d, err := b.Connect(ctx, lost, nil, false); err == nil {
		loop.Detach(d.Path)
		t.Fatal("connect made a blank image for a volume marked formatted")
	}
	if _, err := os.Stat(b.imagePath(lost)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("image of a formatted volume made blank: %v", err)
	}
}

// TestNameKeyTaken: a flat metadata file of the name's key that holds
// another name (a collision of 128 bits, or a file put there by hand) is
// never answered as the volume of this name.
func TestNameKeyTaken(t *testing.T) {
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	key := nameKey("db")
	data, _ := json.Marshal(&meta{Version: 1, ID: key + "0123456789abcdef", Name: "not-db", CapacityBytes: 20 * units.MiB})
	if err := os.WriteFile(b.flatMetaPath(key), data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := b.Create(ctx, req("db", 20*units.MiB))
	if !errors.Is(err, backends.ErrAlreadyExists) || !strings.Contains(err.Error(), "not-db") {
		t.Fatalf("create of a name whose key is taken = %v, want ErrAlreadyExists naming the holder", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(b.dir, "vols")); len(entries) != 1 {
		t.Fatalf("vols/ holds %v after the refusal", entries)
	}
}

// TestListSeesANameMadeAnewElsewhere: the metadata cache is keyed by the
// file's content, so a plugin whose cache holds a volume still lists the
// right one after another plugin on the pool deleted it and made its name
// anew, even with the new file given the old one's inode, size and times.
func TestListSeesANameMadeAnewElsewhere(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(harness.TempDir(t), "pool")
	a := newPool(t, Config{Dir: dir}, "n1")
	b := newPool(t, Config{Dir: dir}, "n2")
	old, err := a.Create(ctx, req("db", 20*units.MiB))
	if err != nil {
		t.Fatal(err)
	}
	if vols, err := a.List(ctx); err != nil || len(vols) != 1 || vols[0].ID != old.ID {
		t.Fatalf("List = %v, %v", vols, err)
	}
	path := a.metaPath(old.ID)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	made, err := b.Create(ctx, req("db", 20*units.MiB))
	if err != nil || made.ID == old.ID {
		t.Fatalf("create anew = %v, %v", made, err)
	}
	// What an inode-size-time key could not tell apart.
	if err := os.Chtimes(path, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	vols, err := a.List(ctx)
	if err != nil || len(vols) != 1 || vols[0].ID != made.ID {
		t.Fatalf("List after the name was made anew elsewhere = %v, %v; want only %s", vols, err, made.ID)
	}
	if _, err := a.Get(ctx, old.ID); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("Get of the deleted volume = %v, want ErrNotFound", err)
	}
}

// TestCacheSharesEqualParameters: cached volumes with equal parameters and
// modes share one copy of each, what Get hands out is the caller's own, and
// the table of shared sets stops growing at its bound.
func TestCacheSharesEqualParameters(t *testing.T) {
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	var ids []string
	for _, name := range []string{"a", "b"} {
		r := req(name, 16*units.MiB)
		r.Parameters = map[string]string{"fsType": "ext4", "preallocate": "false"}
		v, err := b.Create(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	got, err := b.Get(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	got.Parameters["fsType"] = "xfs" // the caller's copy
	ma, _ := b.sharedMeta(ids[0])
	mb, _ := b.sharedMeta(ids[1])
	if reflect.ValueOf(ma.Parameters).UnsafePointer() != reflect.ValueOf(mb.Parameters).UnsafePointer() || &ma.Modes[0] != &mb.Modes[0] {
		t.Fatal("equal parameters or modes of two cached volumes are not shared")
	}
	if ma.Parameters["fsType"] != "ext4" {
		t.Fatalf("changing what Get returned changed the cache: %v", ma.Parameters)
	}
	for i := range maxInterned + 10 {
		m := &meta{Parameters: map[string]string{"n": fmt.Sprint(i)}}
		b.metas.mu.Lock()
		b.intern(m)
		b.metas.mu.Unlock()
	}
	if n := len(b.metas.shared); n != maxInterned {
		t.Fatalf("%d shared sets, want the bound %d", n, maxInterned)
	}
}
