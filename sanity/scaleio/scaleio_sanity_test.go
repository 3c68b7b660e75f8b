// Package scaleio runs csi-sanity against the real plugin server configured
// with one ScaleIO backend that talks to the in-process gateway test server
// (test/sim/scaleio). Mapped volumes are real loop devices behind the SDC's
// emc-vol-<system>-<volume> links, so staging formats and mounts real block
// devices and the link identity check runs on every stage.
package scaleio

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/backends/scaleio"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	lssanity "github.com/csi-libstorage/csi-libstorage/sanity"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	ec2sim "github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
	scaleiosim "github.com/csi-libstorage/csi-libstorage/test/sim/scaleio"
)

const (
	guid   = "9E56672F-2F4B-4A42-BFF4-88B6846FBFDA"
	system = "14dbbf5617523654"
)

// TestSanity runs every csi-sanity spec that applies to what the plugin
// advertises with a ScaleIO backend (snapshots, cloning, expansion and
// publish included). Skipped, and why: ModifyVolume and volume attribute
// classes (no mutable parameters), group snapshots, the node attach limit
// (not configured), and SNAPSHOT_ACCESSIBILITY_CONSTRAINTS (not
// advertised).
func TestSanity(t *testing.T) {
	harness.RequireRoot(t)
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Fatalf("loop devices are needed: %v", err)
	}
	dir := harness.TempDir(t)
	loops := &scaleiosim.LoopDevices{
		Loops:    &ec2sim.LoopDevices{ImageDir: filepath.Join(dir, "images"), ByIDDir: filepath.Join(dir, "nvme-links"), PerInstance: true},
		ByIDDir:  filepath.Join(dir, "by-id"),
		SystemID: system,
	}
	sim := scaleiosim.New(scaleiosim.Options{
		User: "admin", Password: "Sanity-Passw0rd", SystemID: system, SystemName: "sio",
		ProtectionDomain: "pd1", PoolName: "pool1",
		SDCs:    []scaleiosim.SDC{{ID: "d0f055a700000000", GUID: guid, Name: "node1"}},
		Devices: loops,
	})
	endpoint := sim.Start()
	defer sim.Close()
	defer loops.Close()
	if err := os.MkdirAll(loops.LinkDir(guid), 0o755); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("Sanity-Passw0rd\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cfgPath := filepath.Join(dir, "config.yaml")
	yaml := fmt.Sprintf(`backends:
  - name: sio
    type: scaleio
    gateway: %s
    user: admin
    passwordFile: %s
    system: sio
    protectionDomain: pd1
    storagePool: pool1
    sdcGUID: %s
    byIDDir: %s
    attachTimeout: 20s
    pollInterval: 10ms
`, endpoint, pw, guid, loops.LinkDir(guid))
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// The test host has no SDC: rescan does nothing.
	factories := map[string]wiring.Factory{scaleio.Type: func(e config.Entry, o wiring.BackendOptions) (backends.Backend, error) {
		var c scaleio.Config
		if err := e.Decode(&c); err != nil {
			return nil, err
		}
		c.Name = e.Name
		return scaleio.New(c, scaleio.Options{NodeID: o.NodeID, Logger: o.Logger, Rescan: func(context.Context) error { return nil }})
	}}

	sock := filepath.Join(dir, "csi.sock")
	defer lssanity.Serve(t, wiring.Options{
		Endpoint:  "unix://" + sock,
		NodeID:    guid,
		Mode:      wiring.ModeAll,
		Config:    cfg,
		Logger:    zap.NewNop(),
		Factories: factories,
	}, func() { assertNothingLeft(t, dir, loops, sim) })()

	// ScaleIO allocates in 8 GiB units; the images are sparse.
	lssanity.Run(t, "csi-sanity scaleio", dir, sock, []lssanity.Case{
		{Name: "mount ext4", Access: "mount", Params: map[string]string{"fsType": "ext4"}},
		{Name: "mount xfs", Access: "mount", Params: map[string]string{"fsType": "xfs", "provisioning": "thick"}},
		{Name: "block", Access: "block", Params: nil},
	}, 8<<30, 16<<30, 6*time.Minute)
}

// assertNothingLeft fails the test if the suite left a volume, a mapping,
// a loop device or a mount behind.
func assertNothingLeft(t *testing.T, dir string, loops *scaleiosim.LoopDevices, sim *scaleiosim.Server) {
	t.Helper()
	for _, v := range sim.Volumes() {
		t.Errorf("left behind: volume %s (%s) mapped to %v", v.ID, v.Name, v.MappedSdcInfo)
	}
	lssanity.AssertNoDevices(t, dir, loops.Loops.ImageDir, sim.DeviceErrors())
}
