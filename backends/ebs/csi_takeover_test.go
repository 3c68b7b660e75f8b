package ebs_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/backends/ebs"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	"github.com/csi-libstorage/csi-libstorage/test/harness/takeover"
	ec2sim "github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
)

const (
	oldInst = "i-0123456789abcdef0"
	newInst = "i-0fedcba9876543210"
)

// TestTakeoverThroughTheServices: two plugins on two simulated instances,
// each with its controller and node service. The first stages the volume
// (a real loop device, mkfs, mount) and writes to it. While its instance
// runs, the second node is refused, through ControllerPublish (the storage
// resource provider, Kubernetes) or its own NodeStage (the Mesos
// volume/csi isolator), with FAILED_PRECONDITION naming the holder. Once
// EC2 reports the first instance stopped, the same call succeeds: the
// data is intact, the filesystem is the same one and fsck finds it clean,
// the takeover is counted once in csi_libstorage_takeovers_total, and the
// dead node's late ControllerUnpublish leaves the new holder alone. The
// scenario is package takeover's; what is EBS's is here.
func TestTakeoverThroughTheServices(t *testing.T) {
	for _, tc := range []struct {
		name    string
		publish bool // the CO calls ControllerPublish; else NodeStage attaches
	}{
		{"ControllerPublish", true},
		{"NodeStage attaches by itself", false},
	} {
		t.Run(tc.name, func(t *testing.T) { takeoverThroughServices(t, tc.publish) })
	}
}

func takeoverThroughServices(t *testing.T, publish bool) {
	harness.RequireRoot(t)
	dir := harness.TempDir(t)
	loops := &ec2sim.LoopDevices{ImageDir: filepath.Join(dir, "images"), ByIDDir: filepath.Join(dir, "by-id"), PerInstance: true}
	sim, err := ec2sim.New(ec2sim.Options{
		Region: "us-east-1",
		Instances: []ec2sim.Instance{
			{ID: oldInst, AvailabilityZone: "us-east-1a", RootDeviceName: "/dev/xvda"},
			{ID: newInst, AvailabilityZone: "us-east-1a", RootDeviceName: "/dev/xvda"},
		},
		StateDelay: 10 * time.Millisecond,
		Devices:    loops,
	})
	if err != nil {
		t.Fatal(err)
	}
	endpoint := sim.Start()
	t.Cleanup(func() { sim.Close() })
	factories := map[string]wiring.Factory{ebs.Type: func(e config.Entry, o wiring.BackendOptions) (backends.Backend, error) {
		var c ebs.Config
		if err := e.Decode(&c); err != nil {
			return nil, err
		}
		c.Name = e.Name
		return ebs.New(c, ebs.Options{NodeID: o.NodeID, Logger: o.Logger, Events: o.Events, Serial: loops.Serial})
	}}
	start := func(inst string) takeover.Node {
		yaml := fmt.Sprintf("backends:\n  - name: aws\n    type: ebs\n    region: us-east-1\n    endpoint: %s\n    imdsEndpoint: %s\n    accessKeyID: AKIDTAKEOVER\n    secretAccessKey: SECRETTAKEOVER\n    clusterID: takeover\n    byIDDir: %s\n    attachTimeout: 6s\n    pollInterval: 10ms\n",
			endpoint, sim.IMDSURL(inst), loops.LinkDir(inst))
		return takeover.Start(t, dir, inst, yaml, factories)
	}
	takeover.Rig{
		Dir: dir, Backend: "aws", Proof: "instance-stopped", Loops: loops,
		Old: start(oldInst), New: start(newInst),
		Alive: takeover.Refusal{While: "the holder runs", Says: "running"},
		Death: "the old node's shutdown", Dead: "once the holder is stopped",
		// The instance stops: its guest has shut down, its plugin went
		// with it; EC2 keeps the volume attached.
		Kill: func(t *testing.T, _ func(takeover.Refusal)) {
			if err := sim.StopInstance(oldInst); err != nil {
				t.Fatal(err)
			}
			for sim.InstanceState(oldInst) != ec2sim.StateStopped {
				time.Sleep(5 * time.Millisecond)
			}
		},
		Unpublished: func(t *testing.T) {
			for _, v := range sim.Volumes() {
				if v.Tags[ebs.TagName] == "moving" && (v.InstanceID != newInst || v.AttachmentState != "attached") {
					t.Fatalf("after the dead node's unpublish the volume is on %q (%s)", v.InstanceID, v.AttachmentState)
				}
			}
		},
	}.Run(t, publish)
}
