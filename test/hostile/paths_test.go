package hostile

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// plant makes dir with one file of known content and returns the file.
func plant(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "precious.txt")
	if err := os.WriteFile(f, []byte("do not delete"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func intact(t *testing.T, f string) {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil || string(b) != "do not delete" {
		t.Errorf("%s was destroyed, changed or hidden: %q, %v", f, b, err)
	}
}

func noMountsUnder(t *testing.T, dir string) {
	t.Helper()
	if ms := harness.MountsUnder(t, dir); len(ms) > 0 {
		t.Errorf("the plugin mounted outside the paths it was given: %v", ms)
	}
}

// TestStagingPathSymlinkOutside: a staging path that is a symbolic link
// planted to point elsewhere must be refused, as a target that is a link
// is; mount(2) follows the link, so staging through it mounts the volume
// at the link's destination.
func TestStagingPathSymlinkOutside(t *testing.T) {
	w := newWorld(t)
	id := w.create("stage-link", mountCap())
	dest := filepath.Join(w.outside, "stage-dest")
	keep := plant(t, dest)
	link := filepath.Join(w.mnt, "staging-link")
	if err := os.Symlink(dest, link); err != nil {
		t.Fatal(err)
	}
	_, err := w.node.NodeStageVolume(ctx(t), &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: link, VolumeCapability: mountCap()})
	checkStatus(t, err, codes.InvalidArgument, "staging_target_path")
	noMountsUnder(t, w.outside)
	intact(t, keep)
}

// TestTargetSymlinkOutside: a target that is a symbolic link is refused for
// mount and block volumes, and unpublishing it removes only the link: the
// destination, here a mount point holding data, is neither unmounted nor
// emptied.
func TestTargetSymlinkOutside(t *testing.T) {
	w := newWorld(t)
	id := w.create("target-link", mountCap())
	bid := w.create("target-link-block", blockCap())
	staging := filepath.Join(w.mnt, "staging")
	bstaging := filepath.Join(w.mnt, "bstaging")
	w.stage(id, staging, mountCap())
	w.stage(bid, bstaging, blockCap())

	dest := filepath.Join(w.outside, "target-dest")
	if err := os.MkdirAll(dest, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dest, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	keep := plant(t, dest)
	link := filepath.Join(w.mnt, "target-link")
	if err := os.Symlink(dest, link); err != nil {
		t.Fatal(err)
	}
	t.Run("mount", func(t *testing.T) {
		checkStatus(t, w.publish(id, staging, link, mountCap()), codes.InvalidArgument, link, "symbolic link")
	})
	t.Run("block", func(t *testing.T) {
		checkStatus(t, w.publish(bid, bstaging, link, blockCap()), codes.InvalidArgument, link, "symbolic link")
	})
	if ms := harness.MountsUnder(t, dest); !slices.Equal(ms, []string{dest}) {
		t.Errorf("mounts under the link's destination: %v, want only the test's own tmpfs", ms)
	}
	t.Run("unpublish", func(t *testing.T) {
		checkStatus(t, w.unpublish(id, link), codes.OK)
		if !isMountPoint(t, dest) {
			t.Errorf("unpublishing the link unmounted its destination %s", dest)
		}
		intact(t, keep)
	})
	w.unstage(id, staging)
	w.unstage(bid, bstaging)
}

// TestIntermediateSymlinkOutside: a staging path or target whose parent is
// a planted link is mounted at the link's destination, outside the paths
// the CO named, and the mount table lookups (which compare the literal
// path) then never find it: a repeated stage fails with INTERNAL (EBUSY)
// instead of answering OK, and unstage never unmounts it, so it fails with
// FAILED_PRECONDITION (loop device busy) on every retry. Such paths must
// be refused.
func TestIntermediateSymlinkOutside(t *testing.T) {
	w := newWorld(t)
	id := w.create("via-link", mountCap())
	dest := filepath.Join(w.outside, "via-dest")
	keep := plant(t, dest)
	via := filepath.Join(w.mnt, "via")
	if err := os.Symlink(dest, via); err != nil {
		t.Fatal(err)
	}
	t.Run("staging", func(t *testing.T) {
		_, err := w.node.NodeStageVolume(ctx(t), &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: filepath.Join(via, "staging"), VolumeCapability: mountCap()})
		checkStatus(t, err, codes.InvalidArgument, "staging_target_path")
		noMountsUnder(t, w.outside)
	})
	t.Run("target", func(t *testing.T) {
		staging := filepath.Join(w.mnt, "staging")
		w.stage(id, staging, mountCap())
		checkStatus(t, w.publish(id, staging, filepath.Join(via, "pod", "target"), mountCap()), codes.InvalidArgument, "target")
		noMountsUnder(t, w.outside)
	})
	intact(t, keep)
	if es := dirEntries(t, dest); !slices.Equal(es, []string{"precious.txt"}) {
		t.Errorf("the plugin created %v in the link's destination %s", es, dest)
	}
}

// TestNonEmptyTarget: a target that already is a directory holding data
// keeps its data whatever happens; unpublish must not delete it, and must
// not fail forever (the CO retries an unpublish until it succeeds).
func TestNonEmptyTarget(t *testing.T) {
	w := newWorld(t)
	id := w.create("full-target", mountCap())
	bid := w.create("full-target-block", blockCap())
	staging := filepath.Join(w.mnt, "staging")
	bstaging := filepath.Join(w.mnt, "bstaging")
	w.stage(id, staging, mountCap())
	w.stage(bid, bstaging, blockCap())

	t.Run("mount-publish-unpublish", func(t *testing.T) {
		target := filepath.Join(w.mnt, "full")
		keep := plant(t, target)
		checkStatus(t, w.publish(id, staging, target, mountCap()), codes.FailedPrecondition, target)
		err := w.unpublish(id, target)
		intact(t, keep)
		if isMountPoint(t, target) {
			t.Errorf("%s is still mounted after unpublish", target)
		}
		checkStatus(t, err, codes.OK)
		checkStatus(t, w.unpublish(id, target), codes.OK) // the retry
		intact(t, keep)
	})
	t.Run("block-publish", func(t *testing.T) {
		target := filepath.Join(w.mnt, "full-block")
		keep := plant(t, target)
		checkStatus(t, w.publish(bid, bstaging, target, blockCap()), codes.FailedPrecondition, target)
		intact(t, keep)
	})
	t.Run("unpublish-never-published", func(t *testing.T) {
		target := filepath.Join(w.mnt, "never")
		keep := plant(t, target)
		checkStatus(t, w.unpublish(id, target), codes.OK)
		intact(t, keep)
	})
	w.unstage(id, staging)
	w.unstage(bid, bstaging)
}

// TestUnpublishKeepsForeignFile: NodeUnpublishVolume must not delete a
// regular file holding data that it did not create. A block target the
// plugin makes is an empty file with a device bound over it; a file with
// content at the target path, not mounted, is someone else's. Nothing of
// the volume is there, so the answer is OK (a CO retries an unpublish until
// it gets OK), for this plugin's volume as for an id it never made.
func TestUnpublishKeepsForeignFile(t *testing.T) {
	w := newWorld(t)
	id := w.create("foreign-file", blockCap())
	for _, c := range []struct{ name, id string }{
		{"known-volume", id},
		{"unknown-volume", "local/0123456789abcdef0123456789abcdef"},
		{"foreign-id", "/etc/passwd"},
	} {
		t.Run(c.name, func(t *testing.T) {
			keep := filepath.Join(plant(t, filepath.Join(w.outside, c.name)))
			checkStatus(t, w.unpublish(c.id, keep), codes.OK)
			intact(t, keep)
			noMountsUnder(t, w.outside)
		})
	}
}

const childEnv = "CSI_HOSTILE_CHILD"

// TestSymlinkToEtc plants links to /etc as staging path and target. A
// plugin that followed them would mount over the host's /etc, so the
// attempt runs in a child process in a private mount namespace, where such
// a mount cannot reach the host; the child reports what it saw, and this
// process checks that /etc was not touched.
func TestSymlinkToEtc(t *testing.T) {
	if os.Getenv(childEnv) == "etc" {
		symlinkToEtcChild(t)
		return
	}
	harness.RequireRoot(t)
	top := harness.TempDir(t)
	before := snapshotHost(t)
	etcMounts := harness.MountsUnder(t, "/etc")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSymlinkToEtc$", "-test.v", "-test.count=1")
	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), childEnv+"=etc", childEnv+"_PARENT_NS="+ns, "CSI_TEST_DIR="+top)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestSymlinkToEtc")) {
		t.Errorf("in a private mount namespace: %v\n%s", err, out)
	}
	if got := harness.MountsUnder(t, "/etc"); !slices.Equal(got, etcMounts) {
		t.Errorf("mounts under /etc changed in the host namespace: %v, were %v", got, etcMounts)
	}
	if l := harness.LoopsUnder(top); len(l) > 0 {
		t.Errorf("the child left loop devices: %v", l)
		harness.Release(top, 10*time.Second)
	}
	compareHost(t, before)
}

func symlinkToEtcChild(t *testing.T) {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if parent := os.Getenv(childEnv + "_PARENT_NS"); err != nil || parent == "" || self == parent {
		t.Fatalf("refusing to run in the parent's mount namespace (%s, parent %s, %v)", self, parent, err)
	}
	w := newWorld(t)
	etcBefore := harness.MountsUnder(t, "/etc")
	t.Cleanup(func() {
		// Undo whatever a faulty plugin mounted over /etc in this
		// namespace, so the cleanup of the world can release the loop
		// devices.
		for _, m := range harness.MountsUnder(t, "/etc") {
			if !slices.Contains(etcBefore, m) {
				unix.Unmount(m, unix.MNT_DETACH)
			}
		}
	})
	checkEtc := func(t *testing.T) {
		t.Helper()
		if got := harness.MountsUnder(t, "/etc"); !slices.Equal(got, etcBefore) {
			t.Errorf("the plugin mounted over /etc through a planted link: %v", got)
			for _, m := range got {
				if !slices.Contains(etcBefore, m) {
					unix.Unmount(m, unix.MNT_DETACH)
				}
			}
		}
		if _, err := os.Stat("/etc/passwd"); err != nil {
			t.Errorf("/etc/passwd: %v", err)
		}
	}
	id := w.create("etc-link", mountCap())
	bid := w.create("etc-link-block", blockCap())
	stageLink := filepath.Join(w.mnt, "etc-staging")
	targetLink := filepath.Join(w.mnt, "etc-target")
	for _, l := range []string{stageLink, targetLink} {
		if err := os.Symlink("/etc", l); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("staging", func(t *testing.T) {
		_, err := w.node.NodeStageVolume(ctx(t), &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: stageLink, VolumeCapability: mountCap()})
		checkStatus(t, err, codes.InvalidArgument, "staging_target_path")
		checkEtc(t)
	})
	staging := filepath.Join(w.mnt, "staging")
	bstaging := filepath.Join(w.mnt, "bstaging")
	t.Run("target", func(t *testing.T) {
		w.stage(id, staging, mountCap())
		checkStatus(t, w.publish(id, staging, targetLink, mountCap()), codes.InvalidArgument, "symbolic link")
		checkEtc(t)
	})
	t.Run("block-target", func(t *testing.T) {
		w.stage(bid, bstaging, blockCap())
		checkStatus(t, w.publish(bid, bstaging, targetLink, blockCap()), codes.InvalidArgument, "symbolic link")
		checkEtc(t)
	})
	t.Run("unpublish", func(t *testing.T) {
		checkStatus(t, w.unpublish(id, targetLink), codes.OK)
		checkEtc(t)
	})
	w.unstage(id, staging)
	w.unstage(bid, bstaging)
}
