package file

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/loop"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// connected reports the connection record of node's attachment.
func connected(t *testing.T, b *Backend, id, node string) bool {
	t.Helper()
	m, err := b.readMeta(id)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(m.Attachments, func(a attachment) bool { return a.Node == node })
	if i < 0 {
		t.Fatalf("volume %s has no attachment for %s", id, node)
	}
	return m.Attachments[i].Connected
}

// madeImage makes the image of a volume created without one, as its first
// Connect would, and returns its path.
func madeImage(t *testing.T, b *Backend, id string) string {
	t.Helper()
	img, err := b.MakeImage(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func attachedVolume(t *testing.T, b *Backend, name string) string {
	t.Helper()
	ctx := context.Background()
	v, err := b.Create(ctx, req(name, 20*units.MiB))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Attach(ctx, v.ID, backends.AttachRequest{Node: "n1", Mode: backends.SingleNodeWriter}); err != nil {
		t.Fatal(err)
	}
	return v.ID
}

// TestConnectRecordFailureMakesNoDevice: Connect searches for a device
// while it records the connection; when the record cannot be written it
// fails and leaves no loop device behind. The connection is read-only so
// that the image, under the same read-only mount as the metadata, could
// still be attached: only Connect's ordering keeps the device from being
// made.
func TestConnectRecordFailureMakesNoDevice(t *testing.T) {
	harness.RequireRoot(t)
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	id := attachedVolume(t, b, "db")
	img := madeImage(t, b, id)
	dir := filepath.Dir(img)
	// Root ignores permissions; a read-only bind mount refuses even root.
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	unmounted := false
	unmount := func() {
		if !unmounted {
			unmounted = true
			if err := unix.Unmount(dir, 0); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(unmount)
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	d, err := b.Connect(ctx, id, nil, true)
	if err == nil {
		loop.Detach(d.Path)
		t.Fatalf("connect with an unwritable record = %v, want an error", d)
	}
	t.Logf("connect: %v", err)
	if devs, _ := loop.Find(img); len(devs) != 0 {
		for _, d := range devs {
			loop.Detach(d.Device)
		}
		t.Fatalf("loop devices left after a failed record: %+v", devs)
	}
	unmount()
	if connected(t, b, id, "n1") {
		t.Fatal("record says connected after a failed connect")
	}
	// Once the metadata is writable again the retry succeeds.
	d, err = b.Connect(ctx, id, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.Detach(d.Path) })
	if !connected(t, b, id, "n1") {
		t.Fatal("record not connected after a successful connect")
	}
}

// TestConnectDeviceFailureClearsRecord: when no loop device can be made,
// Connect fails without leaving a record that the node is connected (which
// would make Detach refuse), but keeps one an earlier Connect set.
func TestConnectDeviceFailureClearsRecord(t *testing.T) {
	harness.RequireRoot(t)
	ctx := context.Background()
	b := newPool(t, Config{}, "n1")
	for _, before := range []bool{false, true} {
		id := attachedVolume(t, b, map[bool]string{false: "fresh", true: "earlier"}[before])
		// loop.Attach refuses an image whose size is not a multiple of 512.
		img := madeImage(t, b, id)
		if before {
			if err := b.lockedSetConnected(id); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Truncate(img, 20*units.MiB+1); err != nil {
			t.Fatal(err)
		}
		if d, err := b.Connect(ctx, id, nil, false); err == nil {
			loop.Detach(d.Path)
			t.Fatalf("connected before=%v: connect of an odd-sized image = %v, want an error", before, d)
		}
		if devs, _ := loop.Find(img); len(devs) != 0 {
			t.Fatalf("connected before=%v: loop devices left: %+v", before, devs)
		}
		if got := connected(t, b, id, "n1"); got != before {
			t.Fatalf("connected before=%v: record after a failed connect = %v, want %v", before, got, before)
		}
		if !before {
			if err := b.Detach(ctx, id, "n1"); err != nil {
				t.Fatalf("detach after a failed connect: %v", err)
			}
		}
	}
}
