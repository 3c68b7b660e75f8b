package fault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/internal/fault"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// nodePoints are the step boundaries of the node service, shared by every
// backend.
var nodePoints = []string{
	"node.stage.connected",
	"node.stage.formatted",
	"node.stage.mounted",
	"node.publish.target-created",
	"node.publish.mounted",
	"node.unpublish.unmounted",
	"node.unstage.unmounted",
	"node.unstage.disconnected",
}

// ebsPoints are the EBS backend's: right after each EC2 call that changes
// state, before the plugin has seen or recorded the outcome.
var ebsPoints = []string{
	"ebs.create.requested",
	"ebs.tags.written",
	"ebs.tags.removed",
	"ebs.attach.requested",
	"ebs.detach.requested",
	"ebs.delete.requested",
}

// scaleioPoints are the ScaleIO backend's: right after each gateway call
// that changes state (a rename records the format mark).
var scaleioPoints = []string{
	"scaleio.create.requested",
	"scaleio.map.requested",
	"scaleio.renamed",
	"scaleio.unmap.requested",
	"scaleio.remove.requested",
}

// xtremioPoints are the XtremIO backend's, likewise.
var xtremioPoints = []string{
	"xtremio.create.requested",
	"xtremio.map.requested",
	"xtremio.renamed",
	"xtremio.unmap.requested",
	"xtremio.delete.requested",
}

// filePoints are the file backend's step boundaries and the node's. Each
// point is tried at every hit the lifecycle below reaches.
var filePoints = []string{
	// Between a create's metadata, written in place, and its one sync
	// round, whose directory fsync concurrent creates share.
	"file.create.written",
	"file.metadata.updated",
	// The first connect has made the image, not yet recorded it.
	"file.connect.image",
	"file.connected.updated",
	"file.connect.attached",
	"node.stage.connected",
	"node.stage.formatted",
	"node.stage.mounted",
	"node.publish.target-created",
	"node.publish.mounted",
	"node.unpublish.unmounted",
	"node.unstage.unmounted",
	"file.disconnect.detached",
	"node.unstage.disconnected",
	"file.delete.removed-disk.img",
	"file.delete.removed-meta.json",
	// Between a delete's removals and their sync.
	"file.delete.removed",
}

var binary, simBinary, scaleioSimBinary, xtremioSimBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "csi-fault-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "csi-libstorage")
	simBinary = filepath.Join(dir, "ec2sim")
	scaleioSimBinary = filepath.Join(dir, "scaleiosim")
	xtremioSimBinary = filepath.Join(dir, "xtremiosim")
	for _, b := range []struct{ out, pkg string }{{binary, "cmd/csi-libstorage"}, {simBinary, "cmd/ec2sim"}, {scaleioSimBinary, "cmd/scaleiosim"}, {xtremioSimBinary, "cmd/xtremiosim"}} {
		out, err := exec.Command("go", "build", "-tags", "faultinject", "-o", b.out, "github.com/csi-libstorage/csi-libstorage/"+b.pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s with faultinject: %v\n%s", b.pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// plugin is one run of the plugin binary.
type plugin struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	conn   *grpc.ClientConn
	done   chan error
}

type trial struct {
	t       *testing.T
	dir     string
	sock    string
	pool    string
	node    string
	args    []string // how the plugin finds its backend
	env     []string
	p       *plugin
	crashes int
	crashAt string
	hit     int
}

func (tr *trial) start(crash bool) {
	tr.t.Helper()
	args := append([]string{"--endpoint", "unix://" + tr.sock, "--node-id", tr.node, "--log-level", "warn"}, tr.args...)
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), tr.env...)
	// A test binary killed by its timeout must not leave plugins behind:
	// they would keep their loop devices and inherited file locks.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if crash {
		cmd.Env = append(cmd.Env, "CSI_LIBSTORAGE_CRASH_AT="+tr.crashAt, fmt.Sprintf("CSI_LIBSTORAGE_CRASH_HIT=%d", tr.hit))
	}
	p := &plugin{cmd: cmd, stderr: new(bytes.Buffer), done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		tr.t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := grpc.NewClient("unix://"+tr.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = csi.NewIdentityClient(conn).Probe(ctx, &csi.ProbeRequest{})
			cancel()
			if err == nil {
				p.conn = conn
				break
			}
			conn.Close()
		}
		if time.Now().After(deadline) {
			tr.t.Fatalf("plugin did not answer: %v\n%s", err, p.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	tr.p = p
}

// call runs one RPC; if the plugin died during it, it restarts the plugin
// without the fault and retries, as a CO would.
func call[R any](tr *trial, what string, f func(ctx context.Context, ctl csi.ControllerClient, node csi.NodeClient) (R, error)) R {
	tr.t.Helper()
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		r, err := f(ctx, csi.NewControllerClient(tr.p.conn), csi.NewNodeClient(tr.p.conn))
		cancel()
		if err == nil {
			return r
		}
		select {
		case <-tr.p.done:
		case <-time.After(2 * time.Second):
			tr.t.Fatalf("%s: %v (plugin still running)\n%s", what, err, tr.p.stderr)
		}
		if attempt > 0 || !strings.Contains(tr.p.stderr.String(), "fault: crash at "+tr.crashAt) {
			tr.t.Fatalf("%s: %v; the plugin died without the injected fault\n%s", what, err, tr.p.stderr)
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.Canceled && c != codes.Internal {
			tr.t.Logf("%s: call failed with %v when the plugin was killed", what, c)
		}
		tr.crashes++
		tr.p.conn.Close()
		tr.start(false)
	}
}

var snw = &csi.VolumeCapability{
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
}

// lifecycle creates a volume, writes data in a first cycle, checks it in a
// second, and removes everything. It reports whether the fault fired.
func (tr *trial) lifecycle() {
	t := tr.t
	staging, target := filepath.Join(tr.dir, "mnt", "staging"), filepath.Join(tr.dir, "mnt", "target")
	os.MkdirAll(filepath.Dir(staging), 0o750)
	vol := call(tr, "CreateVolume", func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.CreateVolumeResponse, error) {
		return c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "db", VolumeCapabilities: []*csi.VolumeCapability{snw}, CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}})
	}).GetVolume().GetVolumeId()
	call(tr, "ControllerPublish", func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.ControllerPublishVolumeResponse, error) {
		return c.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: vol, NodeId: tr.node, VolumeCapability: snw})
	})
	data := make([]byte, 256<<10)
	rand.Read(data)
	want := sha256.Sum256(data)
	var uuid string
	for cycle := 0; cycle < 2; cycle++ {
		call(tr, "NodeStage", func(ctx context.Context, _ csi.ControllerClient, n csi.NodeClient) (*csi.NodeStageVolumeResponse, error) {
			return n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: vol, StagingTargetPath: staging, VolumeCapability: snw})
		})
		call(tr, "NodePublish", func(ctx context.Context, _ csi.ControllerClient, n csi.NodeClient) (*csi.NodePublishVolumeResponse, error) {
			return n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: vol, StagingTargetPath: staging, TargetPath: target, VolumeCapability: snw})
		})
		if ms := harness.MountsUnder(t, target); len(ms) != 1 {
			t.Fatalf("cycle %d: %d mounts at the target after publish, want 1", cycle, len(ms))
		}
		u := fsUUID(t, staging)
		if cycle == 0 {
			uuid = u
			if err := os.WriteFile(filepath.Join(target, "data"), data, 0o600); err != nil {
				t.Fatal(err)
			}
		} else {
			got, err := os.ReadFile(filepath.Join(target, "data"))
			if err != nil || sha256.Sum256(got) != want {
				t.Fatalf("data after the crash and a restage: %v (checksum mismatch or missing)", err)
			}
			if u != uuid {
				t.Fatalf("filesystem recreated: uuid %s became %s", uuid, u)
			}
		}
		call(tr, "NodeUnpublish", func(ctx context.Context, _ csi.ControllerClient, n csi.NodeClient) (*csi.NodeUnpublishVolumeResponse, error) {
			return n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: vol, TargetPath: target})
		})
		call(tr, "NodeUnstage", func(ctx context.Context, _ csi.ControllerClient, n csi.NodeClient) (*csi.NodeUnstageVolumeResponse, error) {
			return n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: vol, StagingTargetPath: staging})
		})
	}
	call(tr, "ControllerUnpublish", func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.ControllerUnpublishVolumeResponse, error) {
		return c.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: vol, NodeId: tr.node})
	})
	call(tr, "DeleteVolume", func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.DeleteVolumeResponse, error) {
		return c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol})
	})
}

// fsUUID reads the filesystem UUID of what is mounted at path.
func fsUUID(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("findmnt", "-n", "-o", "UUID", "--target", path).Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("uuid at %s: %v %q", path, err, out)
	}
	return strings.TrimSpace(string(out))
}

// assertClean checks that the undo chain left nothing: no mount, no loop
// device, no volume, name reservation, temporary or lock file in the pool.
func (tr *trial) assertCleanPool() {
	t := tr.t
	harness.AssertNoLeaks(t, harness.LeakCheck{
		Dir:   tr.dir,
		Files: tr.pool, Keep: []string{"nodes", "pool.lock"},
		Empty: []string{filepath.Join(tr.pool, "vols"), filepath.Join(tr.pool, "volumes"), filepath.Join(tr.pool, "names")},
	})
}

// backend is one kind of storage the matrix runs against.
type backend struct {
	points []string
	// setup makes a trial's storage and says how the plugin reaches it;
	// the returned function tears it down after the plugin has stopped.
	setup func(tr *trial) (teardown func())
	clean func(tr *trial)
}

var backendsUnderTest = map[string]backend{
	"file": {
		points: filePoints,
		setup: func(tr *trial) func() {
			tr.node, tr.args = "n1", []string{"--pool", tr.pool}
			return func() {}
		},
		clean: (*trial).assertCleanPool,
	},
	"ebs": {points: append(slices.Clone(ebsPoints), nodePoints...), setup: (*trial).startEC2Sim, clean: (*trial).assertCleanEC2},

	// ScaleIO and XtremIO against cmd/scaleiosim and cmd/xtremiosim,
	// processes of their own.
	"scaleio": {points: append(slices.Clone(scaleioPoints), nodePoints...), setup: (*trial).startScaleIOSim, clean: (*trial).assertCleanEC2},
	"xtremio": {points: append(slices.Clone(xtremioPoints), nodePoints...), setup: (*trial).startXtremIOSim, clean: (*trial).assertCleanEC2},
}

// TestCrashAtEveryStep kills the plugin with SIGKILL at every hit of every
// step boundary of the lifecycle, restarts it and retries the call, then
// finishes the lifecycle; for the file backend and for EBS against the
// EC2 test server running as a process of its own.
func TestCrashAtEveryStep(t *testing.T) {
	harness.RequireRoot(t)
	for _, name := range []string{"file", "ebs", "scaleio", "xtremio"} {
		be := backendsUnderTest[name]
		t.Run(name, func(t *testing.T) {
			trials, crashes := 0, 0
			for _, point := range be.points {
				t.Run(point, func(t *testing.T) {
					n, c := everyHit(t, point, 20, func(hit int) int {
						dir := harness.TempDir(t)
						tr := &trial{t: t, dir: dir, sock: filepath.Join(dir, "csi.sock"), pool: filepath.Join(dir, "pool"), crashAt: point, hit: hit}
						teardown := be.setup(tr)
						tr.start(true)
						tr.lifecycle()
						tr.stop()
						be.clean(tr)
						teardown()
						return tr.crashes
					})
					trials, crashes = trials+n, crashes+c
				})
			}
			t.Logf("fault matrix, %s backend: %d points, %d trials, %d crashes, every retry completed with data intact and nothing left", name, len(be.points), trials, crashes)
		})
	}
}

// everyHit runs trial at hit 1, 2, … of a fault point until one ends
// without the fault firing (the scenario reaches the point no more often),
// at most maxHit times, and fails the test if it never fired: a point no
// trial reaches is no longer covered. trial returns how often the plugin
// crashed.
func everyHit(t *testing.T, point string, maxHit int, trial func(hit int) (crashes int)) (trials, crashes int) {
	t.Helper()
	fired := 0
	for hit := 1; hit <= maxHit; hit++ {
		c := trial(hit)
		trials++
		crashes += c
		if c == 0 {
			break
		}
		fired++
	}
	if fired == 0 {
		t.Fatalf("point %s was never reached; the matrix no longer covers it", point)
	}
	t.Logf("%s: crashed and recovered at %d hit(s)", point, fired)
	return trials, crashes
}

// stop ends the trial's plugin with SIGINT, as a CO's shutdown would, and
// fails the test unless it exits cleanly.
func (tr *trial) stop() {
	tr.t.Helper()
	tr.p.conn.Close()
	tr.p.cmd.Process.Signal(os.Interrupt)
	if err := <-tr.p.done; err != nil {
		tr.t.Fatalf("plugin exit after SIGINT: %v\n%s", err, tr.p.stderr)
	}
}

// startEC2Sim runs cmd/ec2sim for one trial and points the plugin at it.
func (tr *trial) startEC2Sim() func() {
	t := tr.t
	t.Helper()
	const instance = "i-0123456789abcdef0"
	sim := exec.Command(simBinary, "--dir", filepath.Join(tr.dir, "ec2"), "--state-delay", "5ms", "--instance", instance+":us-east-1a")
	out, err := sim.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sim.Stderr = os.Stderr
	sim.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	var ep struct {
		EC2     string            `json:"ec2"`
		IMDS    map[string]string `json:"imds"`
		Images  string            `json:"images"`
		ByIDDir map[string]string `json:"byIdDir"`
	}
	if err := json.NewDecoder(out).Decode(&ep); err != nil {
		sim.Process.Kill()
		t.Fatalf("ec2sim: %v", err)
	}
	cfg := filepath.Join(tr.dir, "config.yaml")
	yaml := fmt.Sprintf("backends:\n  - name: aws\n    type: ebs\n    region: us-east-1\n    endpoint: %s\n    imdsEndpoint: %s\n    accessKeyID: AKIDFAULT\n    secretAccessKey: SECRETFAULT\n    clusterID: fault\n    byIDDir: %s\n    attachTimeout: 20s\n    pollInterval: 5ms\n",
		ep.EC2, ep.IMDS[instance], ep.ByIDDir[instance])
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	tr.node, tr.args = instance, []string{"--config", cfg}
	tr.env = []string{"CSI_LIBSTORAGE_TEST_EC2SIM_IMAGES=" + ep.Images}
	tr.pool = ep.Images
	return func() {
		// EC2 deletes asynchronously: the image goes when the volume
		// leaves "deleting".
		harness.AssertNoLeaks(t, harness.LeakCheck{Empty: []string{ep.Images, ep.ByIDDir[instance]}, Settle: 5 * time.Second})
		sim.Process.Signal(os.Interrupt)
		if err := sim.Wait(); err != nil {
			t.Errorf("ec2sim: %v", err)
		}
	}
}

// startSimProcess runs a simulator command that prints its endpoints as
// one JSON line, decodes that line into ep, and returns the function that
// checks dirs are empty and stops it.
func (tr *trial) startSimProcess(bin string, env []string, ep any, args ...string) (stop func(dirs ...string)) {
	t := tr.t
	t.Helper()
	sim := exec.Command(bin, args...)
	sim.Env = append(os.Environ(), env...)
	sim.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := sim.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sim.Stderr = os.Stderr
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(out).Decode(ep); err != nil {
		sim.Process.Kill()
		t.Fatalf("%s: %v", filepath.Base(bin), err)
	}
	return func(dirs ...string) {
		for _, d := range dirs {
			if entries, _ := os.ReadDir(d); len(entries) != 0 {
				t.Errorf("%s not empty after the volume was deleted: %v", d, entries)
			}
		}
		sim.Process.Signal(os.Interrupt)
		if err := sim.Wait(); err != nil {
			t.Errorf("%s: %v", filepath.Base(bin), err)
		}
	}
}

// startScaleIOSim runs cmd/scaleiosim for one trial and points the plugin
// at it; the node id is the simulated SDC's GUID.
func (tr *trial) startScaleIOSim() func() {
	t := tr.t
	t.Helper()
	const guid = "9E56672F-2F4B-4A42-BFF4-88B6846FBFDA"
	var ep struct {
		Gateway string            `json:"gateway"`
		Images  string            `json:"images"`
		ByIDDir map[string]string `json:"byIdDir"`
	}
	stop := tr.startSimProcess(scaleioSimBinary, []string{"SCALEIOSIM_PASSWORD=fault-pw"}, &ep, "--dir", filepath.Join(tr.dir, "scaleio"), "--sdc", guid)
	cfg := filepath.Join(tr.dir, "config.yaml")
	yaml := fmt.Sprintf("backends:\n  - name: sio\n    type: scaleio\n    gateway: %s\n    user: admin\n    passwordEnv: SCALEIO_FAULT_PW\n    protectionDomain: pd1\n    storagePool: pool1\n    sdcGUID: %s\n    byIDDir: %s\n    attachTimeout: 20s\n    pollInterval: 5ms\n",
		ep.Gateway, guid, ep.ByIDDir[guid])
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	tr.node, tr.args = guid, []string{"--config", cfg}
	tr.env = []string{"SCALEIO_FAULT_PW=fault-pw"}
	tr.pool = ep.Images
	return func() { stop(ep.Images, ep.ByIDDir[guid]) }
}

// startXtremIOSim runs cmd/xtremiosim for one trial and points the plugin
// at it; the node id is the node's initiator group, which the plugin
// creates at start-up from the trial's iSCSI initiator name.
func (tr *trial) startXtremIOSim() func() {
	t := tr.t
	t.Helper()
	const group = "node1"
	var ep struct {
		XMS     string            `json:"xms"`
		Images  string            `json:"images"`
		ByIDDir map[string]string `json:"byIdDir"`
		Sysfs   map[string]string `json:"sysfs"`
	}
	stop := tr.startSimProcess(xtremioSimBinary, []string{"XTREMIOSIM_PASSWORD=fault-pw"}, &ep, "--dir", filepath.Join(tr.dir, "xtremio"), "--group", group)
	host := filepath.Join(tr.dir, "host")
	if err := os.MkdirAll(filepath.Join(host, "etc/iscsi"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "etc/iscsi/initiatorname.iscsi"), []byte("InitiatorName=iqn.2026-12.fault:node1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(tr.dir, "config.yaml")
	yaml := fmt.Sprintf("backends:\n  - name: xio\n    type: xtremio\n    xms: %s\n    user: admin\n    passwordEnv: XTREMIO_FAULT_PW\n    hostRoot: %s\n    sysfsRoot: %s\n    byIDDir: %s\n    attachTimeout: 20s\n    pollInterval: 5ms\n",
		ep.XMS, host, ep.Sysfs[group], ep.ByIDDir[group])
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	tr.node, tr.args = group, []string{"--config", cfg}
	tr.env = []string{"XTREMIO_FAULT_PW=fault-pw"}
	tr.pool = ep.Images
	return func() { stop(ep.Images, ep.ByIDDir[group]) }
}

// assertCleanEC2 checks that no mount and no device of the volume is left
// on the node (the images and links are checked when the server stops).
func (tr *trial) assertCleanEC2() {
	t := tr.t
	// The detach and delete are asynchronous.
	harness.AssertNoLeaks(t, harness.LeakCheck{Dir: tr.dir, Settle: 3 * time.Second})
}

// The plugin as shipped (built without the tag) has no way to crash itself.
func TestDefaultBuildInjectsNothing(t *testing.T) {
	if fault.Enabled {
		t.Fatal("the default build has fault injection compiled in")
	}
	fault.Point("file.create.written") // must be a no-op
}
