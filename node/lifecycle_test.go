package node

import (
	"context"
	"errors"
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

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/loop"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

var blockCap = &csi.VolumeCapability{
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
}

// blockVolume creates a volume for raw block access.
func (f *fixture) blockVolume(name string) string {
	f.t.Helper()
	v, err := f.pool.Create(context.Background(), backends.CreateRequest{Name: name, RequiredBytes: 32 * units.MiB, Block: true, Modes: []backends.AccessMode{backends.SingleNodeWriter}})
	if err != nil {
		f.t.Fatal(err)
	}
	return "local/" + v.ID
}

func (f *fixture) img(id string) string {
	f.t.Helper()
	img, err := f.pool.MakeImage(context.Background(), strings.TrimPrefix(id, "local/"))
	if err != nil {
		f.t.Fatal(err)
	}
	return img
}

func (f *fixture) stageAt(id, staging string, c *csi.VolumeCapability) error {
	_, err := f.svc.NodeStageVolume(context.Background(), &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: c})
	return err
}

func (f *fixture) unstageAt(id, staging string) error {
	_, err := f.svc.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
	return err
}

func (f *fixture) publish(id, staging, target string, c *csi.VolumeCapability, ro bool) error {
	_, err := f.svc.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: c, Readonly: ro})
	return err
}

func (f *fixture) unpublish(id, target string) error {
	_, err := f.svc.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
	return err
}

// loopsOf returns the loop devices over the volume's image and the
// read-only loop devices over those.
func (f *fixture) loopsOf(id string) []string {
	f.t.Helper()
	devs, err := loop.Find(f.img(id))
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	all, _ := loop.List()
	for _, d := range devs {
		out = append(out, d.Device)
		n, err := blockDevNum(d.Device)
		if err != nil {
			continue
		}
		for _, o := range all {
			if o.BackingRdev == n {
				out = append(out, o.Device+" (over "+d.Device+")")
			}
		}
	}
	return out
}

// noneLeft checks that nothing of the test is mounted and that the volumes
// hold no loop device.
func (f *fixture) noneLeft(ids ...string) {
	f.t.Helper()
	if ms := harness.MountsUnder(f.t, f.dir); len(ms) != 0 {
		f.t.Errorf("mounts left: %q", ms)
	}
	for _, id := range ids {
		if l := f.loopsOf(id); len(l) != 0 {
			f.t.Errorf("loop devices of %s left: %v", id, l)
		}
	}
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// Issue 9, item 1: the mount table escapes space, tab, newline and
// backslash; paths holding them, and non-ASCII ones, are found again by
// every call.
func TestPathsWithEscapedCharacters(t *testing.T) {
	for _, block := range []bool{false, true} {
		t.Run(access(block), func(t *testing.T) {
			f := newFixture(t, false)
			c, id := capMount("ext4"), f.volume("v", nil, nil)
			if block {
				c, id = blockCap, f.blockVolume("b")
			}
			odd := "st ag\tx\\y-é€"
			staging := filepath.Join(f.dir, odd, "staging "+odd)
			target := filepath.Join(f.dir, odd, "target "+odd)
			for i := 0; i < 2; i++ {
				if err := f.stageAt(id, staging, c); err != nil {
					t.Fatalf("stage %d: %v", i, err)
				}
			}
			for i := 0; i < 2; i++ {
				if err := f.publish(id, staging, target, c, false); err != nil {
					t.Fatalf("publish %d: %v", i, err)
				}
			}
			ms := harness.MountsUnder(t, f.dir)
			stagedAt := staging
			if block {
				stagedAt = filepath.Join(staging, recordName(id))
			}
			if count(ms, stagedAt) != 1 || count(ms, target) != 1 || len(ms) != 2 {
				t.Fatalf("mounts %q; want exactly one at %q and one at %q", ms, stagedAt, target)
			}
			if err := f.unpublish(id, target); err != nil {
				t.Fatalf("unpublish: %v", err)
			}
			if err := f.unstageAt(id, staging); err != nil {
				t.Fatalf("unstage: %v", err)
			}
			if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("target left: %v", err)
			}
			f.noneLeft(id)
		})
	}
}

// writeDev writes one block at the start of the device node at path,
// past the page cache, and syncs it.
func writeDev(path string, b byte) error {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = b
	}
	if _, err := unix.Pwrite(fd, buf, 0); err != nil {
		return err
	}
	return unix.Fsync(fd)
}

func readDev(t *testing.T, path string) byte {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	unix.IoctlSetInt(fd, unix.BLKFLSBUF, 0)
	buf := make([]byte, 512)
	if _, err := unix.Pread(fd, buf, 0); err != nil {
		t.Fatal(err)
	}
	return buf[0]
}

// Issue 9, item 2 (DESIGN invariant 10): a read-only raw block publication
// refuses writes, while a read-write one of the same staged volume writes;
// the read-only device is given back on unpublish, also by a restarted
// plugin, and one left by a publish that died before binding it is found
// again.
func TestReadOnlyBlockRefusesWrites(t *testing.T) {
	f := newFixture(t, false)
	id := f.blockVolume("b")
	staging := filepath.Join(f.dir, "staging")
	ro, rw := filepath.Join(f.dir, "ro"), filepath.Join(f.dir, "rw")
	if err := f.stageAt(id, staging, blockCap); err != nil {
		t.Fatal(err)
	}
	if err := f.publish(id, staging, ro, blockCap, true); err != nil {
		t.Fatal(err)
	}
	if err := f.publish(id, staging, rw, blockCap, false); err != nil {
		t.Fatal(err)
	}
	if err := f.publish(id, staging, ro, blockCap, true); err != nil {
		t.Fatalf("repeated read-only publish: %v", err)
	}
	if err := writeDev(ro, 0xee); err == nil {
		t.Fatal("a write through the read-only target succeeded")
	}
	if err := writeDev(rw, 0x42); err != nil {
		t.Fatalf("a write through the read-write target: %v", err)
	}
	if got := readDev(t, ro); got != 0x42 {
		t.Errorf("the read-only target reads %#x, want the writer's 0x42", got)
	}
	if r, err := f.svc.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: ro}); err != nil || r.GetUsage()[0].GetTotal() != 32*units.MiB {
		t.Errorf("stats of the read-only target: %v, %v", r, err)
	}
	if r, err := f.svc.NodeExpandVolume(context.Background(), &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: ro}); err != nil || r.GetCapacityBytes() != 32*units.MiB {
		t.Errorf("expand through the read-only target: %v, %v", r, err)
	}
	if err := f.publish(id, staging, ro, blockCap, false); status.Code(err) != codes.AlreadyExists {
		t.Errorf("read-write publish at the read-only target: %v, want AlreadyExists", err)
	}

	// A restarted plugin finds the read-only device and gives it back.
	restarted := New(f.svc.set, Options{NodeID: "n1", Mounter: f.m})
	if _, err := restarted.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: ro}); err != nil {
		t.Fatal(err)
	}
	if l, _ := readOnlyLoops(roLoopName("n1", ro)); len(l) != 0 {
		t.Fatalf("read-only loop device left after unpublish: %v", l)
	}

	// A publish that died between making the device and binding it: the
	// retry uses that device, and an unpublish instead gives it back.
	rec := filepath.Join(staging, recordName(id))
	n, err := blockDevNum(rec)
	if err != nil {
		t.Fatal(err)
	}
	devPath, err := devNode(n)
	if err != nil {
		t.Fatal(err)
	}
	left, err := f.svc.readOnlyDevice(ro, devPath, n)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.publish(id, staging, ro, blockCap, true); err != nil {
		t.Fatal(err)
	}
	if l, _ := readOnlyLoops(roLoopName("n1", ro)); len(l) != 1 || l[0].Device != left {
		t.Fatalf("read-only devices after the retried publish: %v, want only %s", l, left)
	}
	if err := f.unpublish(id, ro); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.readOnlyDevice(ro, devPath, n); err != nil {
		t.Fatal(err)
	}
	if err := f.unpublish(id, ro); err != nil {
		t.Fatal(err)
	}
	if l, _ := readOnlyLoops(roLoopName("n1", ro)); len(l) != 0 {
		t.Fatalf("read-only loop device of an unbound target left after unpublish: %v", l)
	}
	if err := f.unpublish(id, rw); err != nil {
		t.Fatal(err)
	}
	if err := f.unstageAt(id, staging); err != nil {
		t.Fatal(err)
	}
	f.noneLeft(id)
}

// Issue 9, item 3: publishing a volume that is not staged at the given
// staging path is refused and takes nothing, so ControllerUnpublish is not
// held up afterwards; a staging path holding another volume is no staging
// of this one.
func TestPublishNeedsStage(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, false)
	bid := f.blockVolume("b")
	native := strings.TrimPrefix(bid, "local/")
	if _, err := f.pool.Attach(ctx, native, backends.AttachRequest{Node: "n1", Mode: backends.SingleNodeWriter}); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(f.dir, "target")
	if err := f.publish(bid, filepath.Join(f.dir, "never-staged"), target, blockCap, false); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("block publish without stage: %v, want FailedPrecondition", err)
	}
	if err := f.unpublish(bid, target); err != nil {
		t.Fatal(err)
	}
	f.noneLeft(bid)
	if err := f.pool.Detach(ctx, native, "n1"); err != nil {
		t.Fatalf("ControllerUnpublish after the refused publish: %v", err)
	}

	a, b := f.volume("a", nil, nil), f.volume("b2", nil, nil)
	staging := filepath.Join(f.dir, "staging-a")
	if err := f.stageAt(a, staging, capMount("ext4")); err != nil {
		t.Fatal(err)
	}
	if err := f.publish(b, staging, target, capMount("ext4"), false); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("publish of b from a's staging path: %v, want FailedPrecondition", err)
	}
	if ms := harness.MountsUnder(t, target); len(ms) != 0 {
		t.Fatalf("a's filesystem was published as b: %v", ms)
	}
	if err := f.unstageAt(a, staging); err != nil {
		t.Fatal(err)
	}
	f.noneLeft(a, b)
}

// Issue 9, item 4: an undo call answers OK only when there is nothing at
// the path; a path that cannot be resolved is an error naming it, never an
// OK that leaves a mount behind.
func TestUndoOfUnresolvablePaths(t *testing.T) {
	f := newFixture(t, false)
	id := f.volume("v", nil, nil)
	real := filepath.Join(f.dir, "real")
	if err := os.MkdirAll(filepath.Join(real, "mounted"), 0o750); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(f.dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", filepath.Join(real, "mounted"), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	// A link reached through another link is not the plugin's to remove.
	if err := os.Symlink("/etc", filepath.Join(real, "inner-link")); err != nil {
		t.Fatal(err)
	}
	loopy := filepath.Join(f.dir, "loopy")
	if err := os.Symlink(loopy, loopy); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, path string
		ok         bool
	}{
		{"absent behind a link", filepath.Join(link, "absent"), true},
		{"mounted behind a link", filepath.Join(link, "mounted"), false},
		{"behind a link loop", filepath.Join(loopy, "x"), false},
		{"a link behind a link", filepath.Join(link, "inner-link"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for call, err := range map[string]error{
				"unpublish": f.unpublish(id, tt.path),
				"unstage":   f.unstageAt(id, tt.path),
			} {
				if tt.ok && err != nil {
					t.Errorf("%s of %s: %v, want OK", call, tt.path, err)
				}
				if !tt.ok && (err == nil || !strings.Contains(err.Error(), tt.path)) {
					t.Errorf("%s of %s: %v, want an error naming the path", call, tt.path, err)
				}
			}
		})
	}
	if _, err := os.Lstat(filepath.Join(real, "inner-link")); err != nil {
		t.Errorf("a link behind a link was removed: %v", err)
	}
	if ms := harness.MountsUnder(t, real); len(ms) != 1 {
		t.Fatalf("mounts under %s: %v, want the test's tmpfs only", real, ms)
	}
	unix.Unmount(filepath.Join(real, "mounted"), 0)
	f.noneLeft(id)
}

// Issue 9, item 5: the "still published" check of unstage looks at device
// numbers and never opens a device node bound from devtmpfs that is not
// the volume's. A FIFO there blocks whoever opens it.
func TestUnstageOpensNoForeignDevice(t *testing.T) {
	for _, block := range []bool{false, true} {
		t.Run(access(block), func(t *testing.T) {
			f := newFixture(t, false)
			fifo := fmt.Sprintf("/dev/csi-libstorage-test-fifo-%d", os.Getpid())
			if err := unix.Mkfifo(fifo, 0o600); err != nil {
				t.Fatalf("mkfifo in /dev: %v", err)
			}
			bound := filepath.Join(f.dir, "bound-fifo")
			if err := os.WriteFile(bound, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mount(fifo, bound, "", unix.MS_BIND, ""); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				// Release an opener blocked on the FIFO, then clean up.
				if fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
					unix.Close(fd)
				}
				unix.Unmount(bound, unix.MNT_DETACH)
				os.Remove(fifo)
			})
			c, id := capMount("ext4"), f.volume("v", nil, nil)
			if block {
				c, id = blockCap, f.blockVolume("b")
			}
			staging := filepath.Join(f.dir, "staging")
			if err := f.stageAt(id, staging, c); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- f.unstageAt(id, staging) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("unstage blocked: it opened a device node that is not the volume's")
			}
			unix.Unmount(bound, 0)
			f.noneLeft(id)
		})
	}
}

// Issue 9, item 6: a volume is staged at one staging path per node; a
// second one is refused naming the first, an unstage at a path where the
// volume is not staged answers OK and leaves its staging alone, and the
// usual undo then leaves nothing.
func TestSecondStagingPathRefused(t *testing.T) {
	for _, block := range []bool{false, true} {
		t.Run(access(block), func(t *testing.T) {
			f := newFixture(t, false)
			c, id := capMount("ext4"), f.volume("v", nil, nil)
			if block {
				c, id = blockCap, f.blockVolume("b")
			}
			s0, s1 := filepath.Join(f.dir, "s0"), filepath.Join(f.dir, "s1")
			target := filepath.Join(f.dir, "target")
			if err := f.stageAt(id, s0, c); err != nil {
				t.Fatal(err)
			}
			if err := f.publish(id, s0, target, c, false); err != nil {
				t.Fatal(err)
			}
			err := f.stageAt(id, s1, c)
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), s0) {
				t.Fatalf("stage at a second path: %v, want FailedPrecondition naming %s", err, s0)
			}
			if err := f.unstageAt(id, s1); err != nil {
				t.Fatalf("unstage where it is not staged: %v", err)
			}
			if len(f.loopsOf(id)) != 1 {
				t.Fatalf("the unstage of a path where the volume is not staged took its device away: %v", f.loopsOf(id))
			}
			if err := f.publish(id, s0, target, c, false); err != nil {
				t.Fatalf("publish after the refused stage: %v", err)
			}
			if err := f.unpublish(id, target); err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{s1, s0} {
				if err := f.unstageAt(id, s); err != nil {
					t.Fatalf("unstage %s: %v", s, err)
				}
			}
			f.noneLeft(id)
			if err := f.pool.Detach(context.Background(), strings.TrimPrefix(id, "local/"), "n1"); err != nil {
				t.Fatalf("ControllerUnpublish: %v", err)
			}
		})
	}
}
