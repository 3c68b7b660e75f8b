// Package xtremio runs csi-sanity against the real plugin server configured
// with one XtremIO backend that talks to the in-process XMS test server
// (test/sim/xtremio). Mapped volumes are real loop devices behind the
// wwn-0x<naa> links, with a fake sysfs tree carrying their WWIDs, so
// staging formats and mounts real block devices and the WWID identity
// check runs on every stage.
package xtremio

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	lssanity "github.com/csi-libstorage/csi-libstorage/sanity"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	ec2sim "github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
	xtremiosim "github.com/csi-libstorage/csi-libstorage/test/sim/xtremio"
)

const node = "node1"

// TestSanity runs every csi-sanity spec that applies to what the plugin
// advertises with an XtremIO backend (the same set as ScaleIO's).
func TestSanity(t *testing.T) {
	harness.RequireRoot(t)
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Fatalf("loop devices are needed: %v", err)
	}
	dir := harness.TempDir(t)
	loops := &xtremiosim.LoopDevices{
		Loops:    &ec2sim.LoopDevices{ImageDir: filepath.Join(dir, "images"), ByIDDir: filepath.Join(dir, "nvme-links"), PerInstance: true},
		ByIDDir:  filepath.Join(dir, "by-id"),
		SysfsDir: filepath.Join(dir, "sys"),
	}
	sim := xtremiosim.New(xtremiosim.Options{User: "admin", Password: "Xio-Sanity-Pw", Cluster: "xbrick1", Devices: loops})
	endpoint := sim.Start()
	defer sim.Close()
	defer loops.Close()
	sysfs, err := loops.SysfsRoot(node)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(loops.LinkDir(node), 0o755); err != nil {
		t.Fatal(err)
	}
	host := filepath.Join(dir, "host")
	if err := os.MkdirAll(filepath.Join(host, "etc/iscsi"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "etc/iscsi/initiatorname.iscsi"), []byte("## generated\nInitiatorName=iqn.1993-08.org.debian:01:sanity\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XIO_SANITY_PASSWORD", "Xio-Sanity-Pw")
	cfgPath := filepath.Join(dir, "config.yaml")
	yaml := fmt.Sprintf(`backends:
  - name: xio
    type: xtremio
    xms: %s
    user: admin
    passwordEnv: XIO_SANITY_PASSWORD
    cluster: xbrick1
    hostRoot: %s
    sysfsRoot: %s
    byIDDir: %s
    attachTimeout: 20s
    pollInterval: 10ms
`, endpoint, host, sysfs, loops.LinkDir(node))
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "csi.sock")
	defer lssanity.Serve(t, wiring.Options{
		Endpoint: "unix://" + sock,
		NodeID:   node,
		Mode:     wiring.ModeAll,
		Config:   cfg,
		Logger:   zap.NewNop(),
	}, func() { assertNothingLeft(t, dir, loops, sim) })()

	if g := sim.Groups()[node]; len(g) != 1 || g[0] != "iqn.1993-08.org.debian:01:sanity" {
		t.Fatalf("the node's initiator group: %v", g)
	}
	lssanity.Run(t, "csi-sanity xtremio", dir, sock, []lssanity.Case{
		{Name: "mount ext4", Access: "mount", Params: map[string]string{"fsType": "ext4"}},
		{Name: "mount xfs", Access: "mount", Params: map[string]string{"fsType": "xfs"}},
		{Name: "block", Access: "block", Params: nil},
	}, 1<<30, 2<<30, 6*time.Minute)
}

func assertNothingLeft(t *testing.T, dir string, loops *xtremiosim.LoopDevices, sim *xtremiosim.Server) {
	t.Helper()
	for _, v := range sim.Volumes() {
		t.Errorf("left behind: volume %d (%s) mapped to %v", v.Index, v.Name, v.Maps)
	}
	lssanity.AssertNoDevices(t, dir, loops.Loops.ImageDir, sim.DeviceErrors())
}
