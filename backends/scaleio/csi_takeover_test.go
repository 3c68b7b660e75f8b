package scaleio_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/backends/scaleio"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	"github.com/csi-libstorage/csi-libstorage/test/harness/takeover"
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
// fsck finds it clean, and the takeover is counted once. The scenario is
// package takeover's; what is ScaleIO's is here.
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
	start := func(guid string) takeover.Node {
		if err := os.MkdirAll(loops.LinkDir(guid), 0o755); err != nil {
			t.Fatal(err)
		}
		yaml := fmt.Sprintf("backends:\n  - name: sio\n    type: scaleio\n    gateway: %s\n    user: admin\n    passwordFile: %s\n    system: sio\n    protectionDomain: pd1\n    storagePool: pool1\n    sdcGUID: %s\n    byIDDir: %s\n    attachTimeout: 10s\n    pollInterval: 10ms\n    sdcDisconnectGrace: 300ms\n",
			endpoint, pw, guid, loops.LinkDir(guid))
		return takeover.Start(t, dir, guid, yaml, factories)
	}
	sdc := func(state string) takeover.Refusal {
		return takeover.Refusal{While: "the holder's SDC is " + state, Says: "state is " + state}
	}
	takeover.Rig{
		Dir: dir, Backend: "sio", Proof: scaleio.ProofSDCDisconnected, Loops: loops.Loops,
		Old: start(oldGUID), New: start(newGUID),
		Alive: sdc(scaleiosim.SDCConnected),
		Death: "the old host's death", Dead: "after the grace",
		// The old host has died with its filesystems, and the MDM loses
		// its SDC: refused still within the grace.
		Kill: func(t *testing.T, refused func(takeover.Refusal)) {
			if err := sim.SetSDCState(oldGUID, scaleiosim.SDCDisconnected); err != nil {
				t.Fatal(err)
			}
			refused(sdc(scaleiosim.SDCDisconnected))
			time.Sleep(400 * time.Millisecond)
		},
		Taken: func(t *testing.T) {
			for _, v := range sim.Volumes() {
				if len(v.MappedSdcInfo) != 1 || v.MappedSdcInfo[0].SdcID != "d0f055a700000001" {
					t.Fatalf("after the takeover the volume is mapped to %+v, want only the new SDC", v.MappedSdcInfo)
				}
			}
		},
	}.Run(t, publish)
}
