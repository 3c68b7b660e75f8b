package scaleio_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/backends/scaleio"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	"github.com/csi-libstorage/csi-libstorage/test/harness/inproc"
	ec2sim "github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
	scaleiosim "github.com/csi-libstorage/csi-libstorage/test/sim/scaleio"
)

const (
	oldGUID  = "9E56672F-2F4B-4A42-BFF4-88B6846FBFDA"
	newGUID  = "1A2B3C4D-0000-4000-8000-00000000BEEF"
	systemID = "14dbbf5617523654"
)

// TestTakeoverThroughTheServices: two plugins on two simulated SDCs. The
// first stages the volume (a real loop device, mkfs, mount) and writes to
// it. While its SDC is connected, and while it has been disconnected for
// less than the grace, the second node is refused with FAILED_PRECONDITION
// naming the SDC and its state, through ControllerPublish or its own
// NodeStage; after the grace the same call unmaps the old SDC and maps
// the volume here: the data is intact, the filesystem is the same one,
// fsck finds it clean, and the takeover is counted once.
func TestTakeoverThroughTheServices(t *testing.T) {
	for _, tc := range []struct {
		name    string
		publish bool
	}{{"ControllerPublish", true}, {"NodeStage maps by itself", false}} {
		t.Run(tc.name, func(t *testing.T) { takeoverThroughServices(t, tc.publish) })
	}
}

func takeoverThroughServices(t *testing.T, publish bool) {
	harness.RequireRoot(t)
	dir := harness.TempDir(t)
	loops := &scaleiosim.LoopDevices{
		Loops:    &ec2sim.LoopDevices{ImageDir: filepath.Join(dir, "images"), ByIDDir: filepath.Join(dir, "nvme-links"), PerInstance: true},
		ByIDDir:  filepath.Join(dir, "by-id"),
		SystemID: systemID,
	}
	sim := scaleiosim.New(scaleiosim.Options{
		User: "admin", Password: "Takeover-Pw", SystemID: systemID, SystemName: "sio", ProtectionDomain: "pd1", PoolName: "pool1",
		SDCs:    []scaleiosim.SDC{{ID: "d0f055a700000000", GUID: oldGUID, Name: "node1"}, {ID: "d0f055a700000001", GUID: newGUID, Name: "node2"}},
		Devices: loops,
	})
	endpoint := sim.Start()
	t.Cleanup(func() { sim.Close(); loops.Close() })
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("Takeover-Pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	factories := map[string]wiring.Factory{scaleio.Type: func(e config.Entry, o wiring.BackendOptions) (backends.Backend, error) {
		var c scaleio.Config
		if err := e.Decode(&c); err != nil {
			return nil, err
		}
		c.Name = e.Name
		return scaleio.New(c, scaleio.Options{NodeID: o.NodeID, Logger: o.Logger, Events: o.Events, Rescan: func(context.Context) error { return nil }})
	}}
	start := func(guid string) (*wiring.Plugin, csi.ControllerClient, csi.NodeClient) {
		if err := os.MkdirAll(loops.LinkDir(guid), 0o755); err != nil {
			t.Fatal(err)
		}
		cfgPath := filepath.Join(dir, guid+".yaml")
		yaml := fmt.Sprintf("backends:\n  - name: sio\n    type: scaleio\n    gateway: %s\n    user: admin\n    passwordFile: %s\n    system: sio\n    protectionDomain: pd1\n    storagePool: pool1\n    sdcGUID: %s\n    byIDDir: %s\n    attachTimeout: 10s\n    pollInterval: 10ms\n    sdcDisconnectGrace: 300ms\n",
			endpoint, pw, guid, loops.LinkDir(guid))
		if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(dir, guid+".sock")
		p := inproc.Start(t, wiring.Options{Endpoint: "unix://" + sock, NodeID: guid, Mode: wiring.ModeAll, Config: cfg,
			Logger: zaptest.NewLogger(t), MetricsAddress: "127.0.0.1:0", Factories: factories})
		conn := inproc.Dial(t, sock)
		return p, csi.NewControllerClient(conn), csi.NewNodeClient(conn)
	}
	_, ctl1, node1 := start(oldGUID)
	p2, ctl2, node2 := start(newGUID)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	mnt := &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
	}
	cv, err := ctl1.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "moving", VolumeCapabilities: []*csi.VolumeCapability{mnt}, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	id := cv.GetVolume().GetVolumeId()
	if _, err := ctl1.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: oldGUID, VolumeCapability: mnt}); err != nil {
		t.Fatal(err)
	}
	staging1, target1 := filepath.Join(dir, "old", "staging"), filepath.Join(dir, "old", "target")
	if _, err := node1.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging1, VolumeCapability: mnt}); err != nil {
		t.Fatal(err)
	}
	if _, err := node1.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging1, TargetPath: target1, VolumeCapability: mnt}); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20)
	rand.Read(data)
	want := sha256.Sum256(data)
	if err := os.WriteFile(filepath.Join(target1, "data"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	uuid := fsUUID(t, staging1)

	staging2, target2 := filepath.Join(dir, "new", "staging"), filepath.Join(dir, "new", "target")
	take := func() error {
		if !publish {
			_, err := node2.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging2, VolumeCapability: mnt})
			return err
		}
		_, err := ctl2.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: newGUID, VolumeCapability: mnt})
		return err
	}
	refused := func(state string) {
		t.Helper()
		err := take()
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), oldGUID) || !strings.Contains(err.Error(), "state is "+state) {
			t.Fatalf("takeover while the holder's SDC is %s: %v, want FAILED_PRECONDITION naming %s and its state", state, err, oldGUID)
		}
	}
	refused(scaleiosim.SDCConnected)
	// The old host dies: its filesystems go with it, and the MDM loses
	// its SDC.
	for _, m := range []string{target1, staging1} {
		if err := unix.Unmount(m, 0); err != nil {
			t.Fatalf("the old host's death: unmount %s: %v", m, err)
		}
	}
	if err := sim.SetSDCState(oldGUID, scaleiosim.SDCDisconnected); err != nil {
		t.Fatal(err)
	}
	refused(scaleiosim.SDCDisconnected) // within the grace
	time.Sleep(400 * time.Millisecond)
	if err := take(); err != nil {
		t.Fatalf("takeover after the grace: %v", err)
	}
	for _, v := range sim.Volumes() {
		if len(v.MappedSdcInfo) != 1 || v.MappedSdcInfo[0].SdcID != "d0f055a700000001" {
			t.Fatalf("after the takeover the volume is mapped to %+v, want only the new SDC", v.MappedSdcInfo)
		}
	}
	if publish {
		if _, err := node2.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging2, VolumeCapability: mnt}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := node2.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging2, TargetPath: target2, VolumeCapability: mnt}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(target2, "data"))
	if err != nil || sha256.Sum256(got) != want {
		t.Fatalf("data on the new node: %v (missing or checksum mismatch)", err)
	}
	if u := fsUUID(t, staging2); u != uuid {
		t.Fatalf("filesystem %s on the new node, was %s: it was formatted again", u, uuid)
	}
	if n := takeovers(t, p2); n != 1 {
		t.Fatalf("csi_libstorage_takeovers_total{proof=sdc-disconnected} = %v, want 1", n)
	}
	if _, err := ctl2.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: oldGUID}); err != nil {
		t.Fatalf("the dead node's ControllerUnpublish: %v", err)
	}
	if _, err := node2.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target2}); err != nil {
		t.Fatal(err)
	}
	if _, err := node2.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging2}); err != nil {
		t.Fatal(err)
	}
	if publish {
		if _, err := ctl2.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: newGUID}); err != nil {
			t.Fatal(err)
		}
	}
	img := loops.Loops.ImagePath(strings.TrimPrefix(id, "sio/"))
	if out, err := exec.Command("fsck.ext4", "-n", "-f", img).CombinedOutput(); err != nil {
		t.Fatalf("fsck -n after the new node unstaged: %v\n%s", err, out)
	}
	if _, err := ctl2.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
		t.Fatal(err)
	}
	if n := takeovers(t, p2); n != 1 {
		t.Fatalf("takeovers counted %v times by the end, want 1", n)
	}
	harness.AssertNoLeaks(t, harness.LeakCheck{Dir: dir, Empty: []string{loops.Loops.ImageDir}, Settle: 5 * time.Second})
}

func takeovers(t *testing.T, p *wiring.Plugin) float64 {
	t.Helper()
	mfs, err := p.Metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "csi_libstorage_takeovers_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["backend"] == "sio" && labels["proof"] == scaleio.ProofSDCDisconnected {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func fsUUID(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("findmnt", "-n", "-o", "UUID", "--target", path).Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("uuid at %s: %v %q", path, err, out)
	}
	return strings.TrimSpace(string(out))
}
