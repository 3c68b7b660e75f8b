package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
)

// wantEntry is one health entry a case expects.
type wantEntry struct {
	status csi.VolumeHealthErrorType
	reason string
	msg    string // a part of the message
}

func (f *fixture) health(id, staging, target string) *csi.VolumeHealth {
	f.t.Helper()
	r, err := f.svc.NodeGetVolumeHealth(context.Background(), &csi.NodeGetVolumeHealthRequest{VolumeId: id, StagingTargetPath: staging, VolumePublishPath: target})
	if err != nil {
		f.t.Fatalf("NodeGetVolumeHealth: %v", err)
	}
	if r.GetVolumeHealth().GetVolumeId() != id {
		f.t.Fatalf("health of %q, want %q", r.GetVolumeHealth().GetVolumeId(), id)
	}
	return r.GetVolumeHealth()
}

func checkEntries(t *testing.T, h *csi.VolumeHealth, want []wantEntry) {
	t.Helper()
	got := h.GetHealthStatuses()
	if len(got) != len(want) {
		t.Fatalf("health entries %v, want %d: %+v", got, len(want), want)
	}
	for i, w := range want {
		g := got[i]
		if g.GetStatus() != w.status || g.GetReason() != w.reason || !strings.Contains(g.GetMessage(), w.msg) {
			t.Errorf("entry %d = %s %s %q; want %s %s containing %q", i, g.GetStatus(), g.GetReason(), g.GetMessage(), w.status, w.reason, w.msg)
		}
	}
}

func sysWrite(t *testing.T, path, v string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(v), 0); err != nil {
		t.Skipf("cannot write %s here: %v", path, err)
	}
}

// triggerExt4Error makes the kernel record a filesystem error, as a
// corrupted block would. With errors=continue ext4 adds the error to its
// superblock (which sysfs shows) from a work item the test cannot join, so
// it waits for the count, bounded, before the health check looks.
func triggerExt4Error(t *testing.T, staging, dev string) {
	t.Helper()
	dir := "/sys/fs/ext4/" + filepath.Base(dev)
	sysWrite(t, dir+"/trigger_fs_error", "1")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(dir + "/errors_count")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(b)) != "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ext4 did not record the triggered error within 10s")
		}
		runtime.Gosched()
	}
}

// Each abnormal condition is produced for real on a staged filesystem and
// reported, with its path named and without it (the plugin then finds the
// mount from the mount table).
func TestNodeVolumeHealthFilesystem(t *testing.T) {
	tests := []struct {
		name  string
		fs    string
		flags []string
		// breakIt damages the staged volume and returns an undo that lets
		// the unstage work again, if one is needed.
		breakIt func(t *testing.T, f *fixture, native, staging, dev string) func()
		want    []wantEntry
		// byPathOnly: the damage makes the device unprovable, so only a
		// named path finds it.
		byPathOnly bool
		// byHand: NodeUnstageVolume refuses the damaged volume (its device
		// cannot be proven, or its staging directory answers EIO), so the
		// test unmounts it as an operator would; the harness detaches the
		// loop device.
		byHand bool
	}{
		{name: "healthy ext4", fs: "ext4"},
		{name: "healthy xfs", fs: "xfs"},
		{
			name: "remounted read-only", fs: "ext4",
			breakIt: func(t *testing.T, f *fixture, native, staging, dev string) func() {
				if err := unix.Mount("", staging, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			want: []wantEntry{{csi.VolumeHealthErrorType_DEGRADED, "ReadOnly", "made read-only after it was staged read-write"}},
		},
		{
			name: "ext4 recorded errors", fs: "ext4",
			breakIt: func(t *testing.T, f *fixture, native, staging, dev string) func() {
				triggerExt4Error(t, staging, dev)
				return nil
			},
			want: []wantEntry{{csi.VolumeHealthErrorType_DEGRADED, "FilesystemErrors", "has recorded 1 error(s), first at"}},
		},
		{
			name: "ext4 errors=remount-ro stopped writes", fs: "ext4", flags: []string{"errors=remount-ro"},
			breakIt: func(t *testing.T, f *fixture, native, staging, dev string) func() {
				triggerExt4Error(t, staging, dev)
				return nil
			},
			want: []wantEntry{
				{csi.VolumeHealthErrorType_DEGRADED, "ReadOnly", "fsck"},
				{csi.VolumeHealthErrorType_DEGRADED, "FilesystemErrors", "fsck.ext4 -f"},
			},
		},
		{
			name: "xfs shut down", fs: "xfs",
			breakIt: func(t *testing.T, f *fixture, native, staging, dev string) func() {
				if out, err := exec.Command("xfs_io", "-x", "-c", "shutdown", staging).CombinedOutput(); err != nil {
					t.Skipf("xfs_io shutdown: %v: %s", err, out)
				}
				return nil
			},
			want:   []wantEntry{{csi.VolumeHealthErrorType_INACCESSIBLE, "FilesystemShutdown", "xfs_repair"}},
			byHand: true,
		},
		{
			name: "image deleted under the device", fs: "ext4",
			breakIt: func(t *testing.T, f *fixture, native, staging, dev string) func() {
				img, _ := f.pool.ImagePath(native)
				if err := os.Remove(img); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			want: []wantEntry{
				{csi.VolumeHealthErrorType_DATA_LOSS, "ImageMissing", "is missing from pool"},
				{csi.VolumeHealthErrorType_DATA_LOSS, "BackingImageDeleted", "Copy it off now"},
			},
			// The image is gone, so the device cannot be proven to be the
			// volume; the backend's report still comes through.
			byPathOnly: true,
			byHand:     true,
		},
		{
			name: "device vanished", fs: "ext4",
			breakIt: func(t *testing.T, f *fixture, native, staging, dev string) func() {
				var st unix.Stat_t
				if err := unix.Stat(dev, &st); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(dev); err != nil {
					t.Fatal(err)
				}
				return func() {
					if err := unix.Mknod(dev, unix.S_IFBLK|0o660, int(st.Rdev)); err != nil {
						t.Errorf("restore %s: %v", dev, err)
					}
				}
			},
			want:       []wantEntry{{csi.VolumeHealthErrorType_INACCESSIBLE, "DeviceMissing", "is gone"}},
			byPathOnly: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, false)
			id := f.volume("v", nil, nil)
			native := strings.TrimPrefix(id, "local/")
			if _, err := f.pool.Attach(context.Background(), native, backends.AttachRequest{Node: "n1", Mode: backends.SingleNodeWriter}); err != nil {
				t.Fatal(err)
			}
			c := capMount(tt.fs)
			c.GetMount().MountFlags = tt.flags
			staging := filepath.Join(f.dir, "staging")
			if _, err := f.svc.NodeStageVolume(context.Background(), &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: c}); err != nil {
				t.Fatal(err)
			}
			broken := false
			defer func() {
				if broken && tt.byHand {
					if err := unix.Unmount(staging, 0); err != nil {
						t.Errorf("unmount %s: %v", staging, err)
					}
					return
				}
				f.unstage(id, staging)
			}()
			m, ok, err := f.m.MountAt(staging)
			if err != nil || !ok {
				t.Fatalf("staging mount: %v %v", ok, err)
			}
			checkEntries(t, f.health(id, staging, ""), nil)
			checkEntries(t, f.health(id, "", ""), nil)
			if tt.breakIt == nil {
				return
			}
			broken = true
			if undo := tt.breakIt(t, f, native, staging, m.Source); undo != nil {
				defer undo()
			}
			checkEntries(t, f.health(id, staging, ""), tt.want)
			if !tt.byPathOnly {
				checkEntries(t, f.health(id, "", ""), tt.want)
			}
		})
	}
}

// A published raw block volume whose loop device is detached under the
// target is reported through its target path.
func TestNodeVolumeHealthBlockDetached(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, false)
	v, err := f.pool.Create(ctx, backends.CreateRequest{Name: "b", RequiredBytes: 32 * units.MiB, Block: true, Modes: []backends.AccessMode{backends.SingleNodeWriter}})
	if err != nil {
		t.Fatal(err)
	}
	id := "local/" + v.ID
	block := &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
	}
	staging := filepath.Join(f.dir, "bstage")
	if _, err := f.svc.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: block}); err != nil {
		t.Fatal(err)
	}
	defer f.unstage(id, staging)
	target := filepath.Join(f.dir, "pods", "dev")
	if _, err := f.svc.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: block}); err != nil {
		t.Fatal(err)
	}
	defer f.svc.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
	checkEntries(t, f.health(id, staging, target), nil)
	checkEntries(t, f.health(id, "", ""), nil)

	m, ok, err := f.m.MountAt(target)
	if err != nil || !ok {
		t.Fatalf("target mount: %v %v", ok, err)
	}
	dev, _ := deviceOf(m)
	if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
		t.Fatalf("losetup -d %s: %v: %s", dev, err, out)
	}
	checkEntries(t, f.health(id, staging, target), []wantEntry{{csi.VolumeHealthErrorType_INACCESSIBLE, "DeviceDetached", "has been detached from its image"}})
}

func TestNodeVolumeHealthRequests(t *testing.T) {
	f := newFixture(t, false)
	id := f.volume("v", nil, nil)
	tests := []struct {
		name string
		req  *csi.NodeGetVolumeHealthRequest
		code codes.Code
		msg  string
	}{
		{"no volume id", &csi.NodeGetVolumeHealthRequest{}, codes.InvalidArgument, "volume_id is required"},
		{"unknown volume", &csi.NodeGetVolumeHealthRequest{VolumeId: "local/" + strings.Repeat("0", 32)}, codes.NotFound, "not found"},
		{"relative staging path", &csi.NodeGetVolumeHealthRequest{VolumeId: id, StagingTargetPath: "a/b"}, codes.InvalidArgument, "staging_target_path"},
		{"unclean publish path", &csi.NodeGetVolumeHealthRequest{VolumeId: id, VolumePublishPath: "/a/../b"}, codes.InvalidArgument, "volume_publish_path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.NodeGetVolumeHealth(context.Background(), tt.req)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Fatalf("got %v, want %s containing %q", err, tt.code, tt.msg)
			}
		})
	}
	// A staging path with nothing mounted: the volume is not reachable
	// there.
	staging := filepath.Join(f.dir, "never-staged")
	checkEntries(t, f.health(id, staging, ""), []wantEntry{{csi.VolumeHealthErrorType_INACCESSIBLE, "NotMounted", fmt.Sprintf("staging path %s", staging)}})
}
