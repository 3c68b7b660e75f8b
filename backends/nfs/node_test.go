package nfs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/node"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	"github.com/csi-libstorage/csi-libstorage/test/harness/ganesha"
)

// seam is a Mounter that records every call and keeps the mount table the
// kernel would, so the node service's NFS path can be proven on a machine
// whose kernel has no NFS client. Anything that would format or probe a
// device fails the test: an NFS volume is never formatted.
type seam struct {
	t     *testing.T
	mu    sync.Mutex
	calls []string
	table []node.Mount
}

func (s *seam) Mount(source, target, fsType string, options []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "mount "+source+" "+target+" "+fsType+" "+strings.Join(options, ","))
	m := node.Mount{Point: target, Source: source, FSType: fsType, Root: "/", Options: slices.Clone(options)}
	if slices.Contains(options, "bind") {
		// A bind shows the source filesystem's source, as the kernel does.
		for _, x := range s.table {
			if x.Point == source {
				m.Source, m.FSType = x.Source, x.FSType
			}
		}
	}
	s.table = append(s.table, m)
	return nil
}

func (s *seam) Unmount(target string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "unmount "+target)
	for i := len(s.table) - 1; i >= 0; i-- {
		if s.table[i].Point == target {
			s.table = slices.Delete(s.table, i, i+1)
			return nil
		}
	}
	return os.ErrInvalid
}

func (s *seam) MountAt(target string) (node.Mount, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.table) - 1; i >= 0; i-- {
		if s.table[i].Point == target {
			return s.table[i], true, nil
		}
	}
	return node.Mount{}, false, nil
}

func (s *seam) Mounts() ([]node.Mount, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.table), nil
}

func (s *seam) Probe(ctx context.Context, dev string) (node.Signature, error) {
	s.t.Errorf("probe of %s: an NFS volume has no device to probe", dev)
	return node.Signature{}, os.ErrInvalid
}
func (s *seam) Format(ctx context.Context, dev, fsType string, force bool) error {
	s.t.Errorf("format of %s as %s: an NFS volume is never formatted", dev, fsType)
	return os.ErrInvalid
}
func (s *seam) Magic(ctx context.Context, dev string) (string, error) {
	s.t.Errorf("magic of %s: an NFS volume has no device", dev)
	return "", os.ErrInvalid
}
func (s *seam) Grow(ctx context.Context, dev, mountpoint, fsType string) error {
	s.t.Errorf("grow of %s", dev)
	return os.ErrInvalid
}

func (s *seam) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

// nodeService is the node service over one NFS backend; a nil mounter is
// the real one.
func nodeService(t *testing.T, c Config, m node.Mounter) (*Backend, *node.Service) {
	t.Helper()
	b, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	set, err := backends.NewSet(b)
	if err != nil {
		t.Fatal(err)
	}
	return b, node.New(set, node.Options{NodeID: "agent-1", Mounter: m})
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode, flags ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{MountFlags: flags}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

// TestNodeThroughMounterSeam proves what the node service asks the kernel
// for: the exact source, type and options of the stage, binds for each
// target, no formatting, and a mount table left empty.
func TestNodeThroughMounterSeam(t *testing.T) {
	dir := harness.TempDir(t)
	srv := ganesha.Start(t, dir, ganesha.Options{})
	m := &seam{t: t}
	b, svc := nodeService(t, Config{Name: "shared", Server: ganesha.Host, Export: srv.Export, SubDir: "csi",
		Port: srv.Port, MountPort: srv.MountPort, MountOptions: []string{"hard", "nfsvers=3"}}, m)
	v, err := b.Create(ctx(t), backends.CreateRequest{Name: "shared-data"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.Create(ctx(t), backends.CreateRequest{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	id, otherID := "shared/"+v.ID, "shared/"+other.ID
	staging := filepath.Join(dir, "staging")
	rw, ro := filepath.Join(dir, "task-1"), filepath.Join(dir, "task-2")
	src := ganesha.Host + ":" + srv.Export + "/csi/" + v.ID
	ports := "port=" + strconv.Itoa(srv.Port) + ",mountport=" + strconv.Itoa(srv.MountPort) + ",mountproto=tcp"
	mmw := csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER

	steps := []struct {
		name  string
		call  func() error
		code  codes.Code
		calls []string
	}{
		{"stage", func() error {
			_, err := svc.NodeStageVolume(ctx(t), &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: mountCap(mmw, "noatime")})
			return err
		}, codes.OK, []string{"mount " + src + " " + staging + " nfs noatime,hard,nfsvers=3,addr=127.0.0.1," + ports}},
		{"stage again", func() error {
			_, err := svc.NodeStageVolume(ctx(t), &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: mountCap(mmw, "noatime")})
			return err
		}, codes.OK, nil},
		{"another volume at the same staging path", func() error {
			_, err := svc.NodeStageVolume(ctx(t), &csi.NodeStageVolumeRequest{VolumeId: otherID, StagingTargetPath: staging, VolumeCapability: mountCap(mmw)})
			return err
		}, codes.AlreadyExists, nil},
		{"fs_type nfs is accepted", func() error {
			c := mountCap(mmw, "noatime")
			c.GetMount().FsType = "nfs"
			_, err := svc.NodeStageVolume(ctx(t), &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: c})
			return err
		}, codes.OK, nil},
		{"publish to a writer", func() error {
			_, err := svc.NodePublishVolume(ctx(t), &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: rw, VolumeCapability: mountCap(mmw)})
			return err
		}, codes.OK, []string{"mount " + staging + " " + rw + "  bind"}},
		{"publish to a reader", func() error {
			_, err := svc.NodePublishVolume(ctx(t), &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: ro, Readonly: true, VolumeCapability: mountCap(mmw)})
			return err
		}, codes.OK, []string{"mount " + staging + " " + ro + "  bind,ro"}},
		{"node expand has nothing to grow", func() error {
			_, err := svc.NodeExpandVolume(ctx(t), &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: staging})
			return err
		}, codes.OK, nil},
		{"unstage while published", func() error {
			_, err := svc.NodeUnstageVolume(ctx(t), &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
			return err
		}, codes.FailedPrecondition, nil},
		{"unpublish the writer", func() error {
			_, err := svc.NodeUnpublishVolume(ctx(t), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: rw})
			return err
		}, codes.OK, []string{"unmount " + rw}},
		{"unpublish the reader", func() error {
			_, err := svc.NodeUnpublishVolume(ctx(t), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: ro})
			return err
		}, codes.OK, []string{"unmount " + ro}},
		{"unstage", func() error {
			_, err := svc.NodeUnstageVolume(ctx(t), &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
			return err
		}, codes.OK, []string{"unmount " + staging}},
		{"unstage again", func() error {
			_, err := svc.NodeUnstageVolume(ctx(t), &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
			return err
		}, codes.OK, nil},
		{"a reader-only access mode stages read-only", func() error {
			_, err := svc.NodeStageVolume(ctx(t), &csi.NodeStageVolumeRequest{VolumeId: otherID, StagingTargetPath: staging, VolumeCapability: mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY)})
			return err
		}, codes.OK, []string{"mount " + ganesha.Host + ":" + srv.Export + "/csi/" + other.ID + " " + staging + " nfs hard,nfsvers=3,addr=127.0.0.1," + ports + ",ro"}},
		{"unstage the reader", func() error {
			_, err := svc.NodeUnstageVolume(ctx(t), &csi.NodeUnstageVolumeRequest{VolumeId: otherID, StagingTargetPath: staging})
			return err
		}, codes.OK, []string{"unmount " + staging}},
	}
	for _, s := range steps {
		err := s.call()
		if status.Code(err) != s.code {
			t.Fatalf("%s: %v, want %v", s.name, err, s.code)
		}
		if got := m.take(); !slices.Equal(got, s.calls) {
			t.Fatalf("%s: mounter calls\n%q\nwant\n%q", s.name, got, s.calls)
		}
	}
	if left, _ := m.Mounts(); len(left) != 0 {
		t.Fatalf("mounts left: %v", left)
	}
	for _, p := range []string{rw, ro} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("target %s left behind: %v", p, err)
		}
	}
}

// TestNodeStageRealKernel stages a volume of the real server with the real
// mounter. This machine's kernel has no NFS client, so the stage must fail
// with the message that says so, and leave nothing mounted; on a kernel
// with a client, the data written through the mount must reach the export.
func TestNodeStageRealKernel(t *testing.T) {
	harness.RequireRoot(t)
	dir := harness.TempDir(t)
	srv := ganesha.Start(t, dir, ganesha.Options{})
	b, svc := nodeService(t, Config{Name: "shared", Server: ganesha.Host, Export: srv.Export, Port: srv.Port, MountPort: srv.MountPort,
		MountOptions: []string{"nfsvers=3", "soft", "timeo=50", "retrans=1"}}, nil)
	v, err := b.Create(ctx(t), backends.CreateRequest{Name: "real"})
	if err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(dir, "staging")
	_, err = svc.NodeStageVolume(ctx(t), &csi.NodeStageVolumeRequest{VolumeId: "shared/" + v.ID, StagingTargetPath: staging,
		VolumeCapability: mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)})
	if !ganesha.KernelHasNFSClient() {
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), node.NoNFSClient) {
			t.Fatalf("stage on a kernel without NFS: %v", err)
		}
		if ms := harness.MountsUnder(t, dir); len(ms) != 0 {
			t.Fatalf("a failed stage left mounts: %v", ms)
		}
		t.Logf("stage: %v", err)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(staging, "through-nfs"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(srv.Export, v.ID, "through-nfs")); err != nil {
		t.Fatalf("a write through the mount did not reach the export: %v", err)
	}
	if _, err := svc.NodeUnstageVolume(ctx(t), &csi.NodeUnstageVolumeRequest{VolumeId: "shared/" + v.ID, StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
}

func TestMountOptionsResolveTheServer(t *testing.T) {
	cases := []struct {
		cfg  Config
		want []string
		src  string
		fs   string
	}{
		{Config{Server: "nfs.example", Export: "/srv", SubDir: "a/b"}, []string{"addr=192.0.2.7"}, "nfs.example:/srv/a/b/ID", "nfs"},
		{Config{Server: "10.0.0.9", Export: "/srv", MountOptions: []string{"nfsvers=4.1", "hard"}, Port: 2049, MountPort: 20048},
			[]string{"nfsvers=4.1", "hard", "addr=10.0.0.9", "port=2049"}, "10.0.0.9:/srv/ID", "nfs4"},
		{Config{Server: "fd00::9", Export: "/srv", MountOptions: []string{"port=3049"}, Port: 2049}, []string{"port=3049", "addr=fd00::9"}, "[fd00::9]:/srv/ID", "nfs"},
	}
	for _, c := range cases {
		c.cfg.Name = "x"
		b, err := New(c.cfg, Options{Resolve: func(h string) ([]string, error) { return []string{"192.0.2.7"}, nil }})
		if err != nil {
			t.Fatal(err)
		}
		const id = "csi-0123456789abcdef"
		dev, err := b.Connect(context.Background(), id, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(dev.MountOptions, c.want) || dev.Path != strings.Replace(c.src, "ID", id, 1) || dev.FSType != c.fs {
			t.Errorf("%+v: device %+v, want %s %s %v", c.cfg, dev, c.src, c.fs, c.want)
		}
		if err := b.Verify(context.Background(), id, dev); err != nil {
			t.Errorf("verify of its own source: %v", err)
		}
		if err := b.Verify(context.Background(), "csi-fedcba9876543210", dev); err == nil {
			t.Error("verify accepted another volume's source")
		}
	}
}
