package fault_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

const (
	takerInst  = "i-0123456789abcdef0" // the plugin's own instance
	holderInst = "i-0fedcba9876543210" // holds the volume, then stops or terminates
)

// takeoverCase is one way the holder dies, with the step boundaries the
// takeover passes through in that case.
type takeoverCase struct {
	name string
	// verb is the ec2sim admin action on the holder: stop or terminate.
	verb string
	// hold keeps every non-forced detach from completing (a detach EC2
	// never finishes), until the takeover is done.
	hold   bool
	points []string
}

var takeoverCases = []takeoverCase{
	{name: "stopped", verb: "stop", points: []string{"ebs.takeover.detach.requested", "ebs.tags.written", "ebs.attach.requested"}},
	{name: "stopped, detach stuck", verb: "stop", hold: true, points: []string{"ebs.takeover.detach.requested", "ebs.takeover.force.requested"}},
	{name: "terminated, detach stuck", verb: "terminate", hold: true, points: []string{"ebs.takeover.force.requested", "ebs.attach.requested"}},
}

// TestCrashDuringEBSTakeover kills the plugin with SIGKILL at every hit of
// every step of an EBS takeover (a volume attached to an instance that EC2
// then reports stopped or terminated, published to the plugin's own
// instance), restarts it and retries the call as a CO would. Every trial
// ends with the volume attached to exactly one instance, the new one, its
// data written and read back there, and, once the lifecycle is undone,
// nothing left: no mount, loop device, image or attachment.
func TestCrashDuringEBSTakeover(t *testing.T) {
	harness.RequireRoot(t)
	for _, tc := range takeoverCases {
		t.Run(tc.name, func(t *testing.T) {
			trials, crashes := 0, 0
			for _, point := range tc.points {
				t.Run(point, func(t *testing.T) {
					n, c := everyHit(t, point, 10, func(hit int) int {
						dir := harness.TempDir(t)
						tr := &trial{t: t, dir: dir, sock: filepath.Join(dir, "csi.sock"), crashAt: point, hit: hit}
						admin, teardown := tr.startTakeoverSim()
						tr.takeover(tc, admin)
						tr.stop()
						tr.assertCleanEC2()
						teardown()
						return tr.crashes
					})
					trials, crashes = trials+n, crashes+c
				})
			}
			t.Logf("takeover from a %s holder: %d trials, %d crashes; each ended with one holder and nothing left", tc.name, trials, crashes)
		})
	}
}

// startTakeoverSim runs cmd/ec2sim with both instances and points the
// plugin at the taker's; it returns the admin endpoint.
func (tr *trial) startTakeoverSim() (string, func()) {
	t := tr.t
	t.Helper()
	var ep struct {
		EC2     string            `json:"ec2"`
		IMDS    map[string]string `json:"imds"`
		Images  string            `json:"images"`
		ByIDDir map[string]string `json:"byIdDir"`
		Admin   string            `json:"admin"`
	}
	stop := tr.startSimProcess(simBinary, nil, &ep, "--dir", filepath.Join(tr.dir, "ec2"), "--state-delay", "5ms",
		"--instance", takerInst+":us-east-1a", "--instance", holderInst+":us-east-1a")
	if ep.Admin == "" {
		t.Fatal("ec2sim printed no admin endpoint")
	}
	cfg := filepath.Join(tr.dir, "config.yaml")
	// attachTimeout 3s: a normal detach from a stopped holder that does
	// not finish is forced after a third of it.
	yaml := fmt.Sprintf("backends:\n  - name: aws\n    type: ebs\n    region: us-east-1\n    endpoint: %s\n    imdsEndpoint: %s\n    accessKeyID: AKIDFAULT\n    secretAccessKey: SECRETFAULT\n    clusterID: fault\n    byIDDir: %s\n    attachTimeout: 3s\n    pollInterval: 5ms\n",
		ep.EC2, ep.IMDS[takerInst], ep.ByIDDir[takerInst])
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	tr.node, tr.args = takerInst, []string{"--config", cfg}
	tr.env = []string{"CSI_LIBSTORAGE_TEST_EC2SIM_IMAGES=" + ep.Images}
	return ep.Admin, func() {
		// EC2 deletes asynchronously: the image goes when the volume
		// leaves "deleting".
		harness.AssertNoLeaks(t, harness.LeakCheck{Empty: []string{ep.Images, ep.ByIDDir[takerInst], ep.ByIDDir[holderInst]}, Settle: 5 * time.Second})
		stop()
	}
}

func adminCall(t *testing.T, method, url, body string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("ec2sim admin %s %s: %s", method, url, resp.Status)
	}
}

func waitInstanceState(t *testing.T, admin, inst, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(admin + "/instances/" + inst)
		if err != nil {
			t.Fatal(err)
		}
		var st struct{ State string }
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err == nil && st.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s is %q, never %s", inst, st.State, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// takeover runs one trial: the volume is set up on the holder by a plugin
// that cannot crash, the holder dies, and a plugin that crashes at the
// trial's point takes the volume and uses it.
func (tr *trial) takeover(tc takeoverCase, admin string) {
	t := tr.t
	tr.start(false)
	vol := call(tr, "CreateVolume", func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.CreateVolumeResponse, error) {
		return c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "moving", VolumeCapabilities: []*csi.VolumeCapability{snw}, CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}})
	}).GetVolume().GetVolumeId()
	call(tr, "ControllerPublish to the holder", func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.ControllerPublishVolumeResponse, error) {
		return c.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: vol, NodeId: holderInst, VolumeCapability: snw})
	})
	if tc.hold {
		adminCall(t, http.MethodPut, admin+"/hold-detach", "true")
	}
	adminCall(t, http.MethodPost, admin+"/instances/"+holderInst+"/"+tc.verb, "")
	waitInstanceState(t, admin, holderInst, map[string]string{"stop": "stopped", "terminate": "terminated"}[tc.verb])

	// The plugin that takes over crashes at the trial's point.
	tr.stop()
	tr.start(true)
	call(tr, "ControllerPublish that takes the volume over", func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.ControllerPublishVolumeResponse, error) {
		return c.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: vol, NodeId: takerInst, VolumeCapability: snw})
	})
	if tc.hold {
		adminCall(t, http.MethodPut, admin+"/hold-detach", "false")
	}
	useAfterTakeover(tr, vol, takerInst, holderInst, filepath.Join(tr.dir, "ec2", "images", strings.TrimPrefix(vol, "aws/")+".img"))
}

const (
	takerGUID  = "9E56672F-2F4B-4A42-BFF4-88B6846FBFDA" // the plugin's own SDC
	holderGUID = "1A2B3C4D-0000-4000-8000-00000000BEEF"
)

// scaleioTakeoverPoints: the fence (the holder's unmap) and the map that
// follows it.
var scaleioTakeoverPoints = []string{"scaleio.takeover.unmapped", "scaleio.map.requested"}

// TestCrashDuringScaleIOTakeover kills the plugin with SIGKILL at each step
// of a ScaleIO takeover (a volume mapped to an SDC the gateway reports
// disconnected, published to the plugin's own SDC) and retries: every
// trial ends with the volume mapped to the new SDC alone, its data read
// back there, and nothing left.
func TestCrashDuringScaleIOTakeover(t *testing.T) {
	harness.RequireRoot(t)
	trials, crashes := 0, 0
	for _, point := range scaleioTakeoverPoints {
		t.Run(point, func(t *testing.T) {
			n, c := everyHit(t, point, 10, func(hit int) int {
				dir := harness.TempDir(t)
				tr := &trial{t: t, dir: dir, sock: filepath.Join(dir, "csi.sock"), crashAt: point, hit: hit}
				admin, images, teardown := tr.startScaleIOTakeoverSim()
				tr.scaleioTakeover(admin, images)
				tr.stop()
				tr.assertCleanEC2()
				teardown()
				return tr.crashes
			})
			trials, crashes = trials+n, crashes+c
		})
	}
	t.Logf("ScaleIO takeover: %d trials, %d crashes; each ended with one mapping and nothing left", trials, crashes)
}

func (tr *trial) startScaleIOTakeoverSim() (admin, images string, teardown func()) {
	t := tr.t
	t.Helper()
	var ep struct {
		Gateway string            `json:"gateway"`
		Images  string            `json:"images"`
		ByIDDir map[string]string `json:"byIdDir"`
		Admin   string            `json:"admin"`
	}
	stop := tr.startSimProcess(scaleioSimBinary, []string{"SCALEIOSIM_PASSWORD=fault-pw"}, &ep, "--dir", filepath.Join(tr.dir, "scaleio"),
		"--sdc", takerGUID, "--sdc", holderGUID)
	if ep.Admin == "" {
		t.Fatal("scaleiosim printed no admin endpoint")
	}
	cfg := filepath.Join(tr.dir, "config.yaml")
	yaml := fmt.Sprintf("backends:\n  - name: sio\n    type: scaleio\n    gateway: %s\n    user: admin\n    passwordEnv: SCALEIO_FAULT_PW\n    protectionDomain: pd1\n    storagePool: pool1\n    sdcGUID: %s\n    byIDDir: %s\n    attachTimeout: 20s\n    pollInterval: 5ms\n    sdcDisconnectGrace: 0s\n",
		ep.Gateway, takerGUID, ep.ByIDDir[takerGUID])
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	tr.node, tr.args = takerGUID, []string{"--config", cfg}
	tr.env = []string{"SCALEIO_FAULT_PW=fault-pw"}
	return ep.Admin, ep.Images, func() { stop(ep.Images, ep.ByIDDir[takerGUID], ep.ByIDDir[holderGUID]) }
}

func (tr *trial) scaleioTakeover(admin, images string) {
	t := tr.t
	tr.start(false)
	vol := call(tr, "CreateVolume", func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.CreateVolumeResponse, error) {
		return c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "moving", VolumeCapabilities: []*csi.VolumeCapability{snw}, CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}})
	}).GetVolume().GetVolumeId()
	call(tr, "ControllerPublish to the holder", func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.ControllerPublishVolumeResponse, error) {
		return c.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: vol, NodeId: holderGUID, VolumeCapability: snw})
	})
	adminCall(t, http.MethodPut, admin+"/sdcs/"+holderGUID+"/state", "Disconnected")

	tr.stop()
	tr.start(true)
	call(tr, "ControllerPublish that takes the volume over", func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.ControllerPublishVolumeResponse, error) {
		return c.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: vol, NodeId: takerGUID, VolumeCapability: snw})
	})
	useAfterTakeover(tr, vol, takerGUID, holderGUID, filepath.Join(images, strings.TrimPrefix(vol, "sio/")+".img"))
}

// useAfterTakeover checks, once a takeover's ControllerPublish has
// returned, that the volume has exactly one holder, taker; that the taker
// stages it and reads back what it writes; that both nodes' unpublish
// succeed (the dead holder's comes late); and that the image, unpublished
// everywhere, holds a clean filesystem as the new holder left it. Then it
// deletes the volume.
func useAfterTakeover(tr *trial, vol, taker, holder, img string) {
	t := tr.t
	t.Helper()
	holders := call(tr, "ListVolumes", func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.ListVolumesResponse, error) {
		return c.ListVolumes(ctx, &csi.ListVolumesRequest{})
	})
	for _, e := range holders.GetEntries() {
		if e.GetVolume().GetVolumeId() == vol {
			if got := e.GetStatus().GetPublishedNodeIds(); !slices.Equal(got, []string{taker}) {
				t.Fatalf("after the takeover the volume is published to %v, want exactly [%s]", got, taker)
			}
		}
	}
	staging, target := filepath.Join(tr.dir, "mnt", "staging"), filepath.Join(tr.dir, "mnt", "target")
	os.MkdirAll(filepath.Dir(staging), 0o750)
	call(tr, "NodeStage", func(ctx context.Context, _ csi.ControllerClient, n csi.NodeClient) (*csi.NodeStageVolumeResponse, error) {
		return n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: vol, StagingTargetPath: staging, VolumeCapability: snw})
	})
	call(tr, "NodePublish", func(ctx context.Context, _ csi.ControllerClient, n csi.NodeClient) (*csi.NodePublishVolumeResponse, error) {
		return n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: vol, StagingTargetPath: staging, TargetPath: target, VolumeCapability: snw})
	})
	data := make([]byte, 256<<10)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(target, "data"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(target, "data")); err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("read back on the new holder: %v", err)
	}
	call(tr, "NodeUnpublish", func(ctx context.Context, _ csi.ControllerClient, n csi.NodeClient) (*csi.NodeUnpublishVolumeResponse, error) {
		return n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: vol, TargetPath: target})
	})
	call(tr, "NodeUnstage", func(ctx context.Context, _ csi.ControllerClient, n csi.NodeClient) (*csi.NodeUnstageVolumeResponse, error) {
		return n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: vol, StagingTargetPath: staging})
	})
	for _, node := range []string{taker, holder} {
		call(tr, "ControllerUnpublish "+node, func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.ControllerUnpublishVolumeResponse, error) {
			return c.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vol, NodeId: node})
		})
	}
	if out, err := exec.Command("fsck.ext4", "-n", "-f", img).CombinedOutput(); err != nil {
		t.Fatalf("fsck -n %s after the takeover: %v\n%s", img, err, out)
	}
	call(tr, "DeleteVolume", func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.DeleteVolumeResponse, error) {
		return c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol})
	})
}
