package ebs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"go.uber.org/zap/zaptest"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
)

// Tests against the parts of EC2 the test server makes as strict as EC2:
// eventual consistency, stuck and busy attachments, failing creates,
// throttling, device names and attachment limits.

func within(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

func (e *env) attachment(id string) (inst, dev, state string) {
	for _, v := range e.sim.Volumes() {
		if v.ID == id {
			return v.InstanceID, v.Device, v.AttachmentState
		}
	}
	e.t.Fatalf("volume %s is gone", id)
	return
}

// rawAttach attaches id to inst1 as dev behind the backend's back, as an
// earlier call or process whose answer was lost did.
func rawAttach(t *testing.T, b *Backend, id, dev string) {
	t.Helper()
	if _, err := b.ec2.AttachVolume(ctx(t), &ec2.AttachVolumeInput{VolumeId: aws.String(id), InstanceId: aws.String(inst1), Device: aws.String(dev)}); err != nil {
		t.Fatal(err)
	}
}

func TestCreateWaitsOutEventualConsistency(t *testing.T) {
	e := newEnv(t)
	b := e.backend(e.config("c1", ""), "")
	// EC2 answers InvalidVolume.NotFound for a while after CreateVolume.
	e.sim.SetLag("CreateVolume", 300*time.Millisecond)
	v, err := b.Create(ctx(t), backends.CreateRequest{Name: "late", RequiredBytes: 1 << 30})
	if err != nil {
		t.Fatalf("create of a volume EC2 describes late: %v", err)
	}
	if got := e.named("late"); len(got) != 1 || got[0].ID != v.ID || got[0].State != "available" {
		t.Fatalf("volumes %+v, want %s available", got, v.ID)
	}
	// A window longer than the call's deadline is "not yet": UNAVAILABLE,
	// never the INVALID_ARGUMENT a CO takes as final.
	e.sim.SetLag("CreateVolume", time.Minute)
	_, err = b.Create(within(t, time.Second), backends.CreateRequest{Name: "later", RequiredBytes: 1 << 30})
	if !errors.Is(err, backends.ErrUnavailable) || errors.Is(err, backends.ErrInvalid) {
		t.Fatalf("create while EC2 does not describe the volume: %v, want ErrUnavailable", err)
	}
	e.sim.SetLag("CreateVolume", 0)
	again, err := b.Create(ctx(t), backends.CreateRequest{Name: "later", RequiredBytes: 1 << 30})
	if err != nil || len(e.named("later")) != 1 || e.named("later")[0].ID != again.ID {
		t.Fatalf("retried create: %v %v; volumes %+v", again, err, e.named("later"))
	}
}

func TestWaitRetriesThrottledDescribes(t *testing.T) {
	e := newEnv(t)
	b := e.backend(e.config("c1", ""), "")
	e.sim.SetLag("CreateVolume", 100*time.Millisecond)
	// DescribeVolumes gets a small token bucket: the waits meet
	// RequestLimitExceeded beyond what the SDK's own retries absorb.
	e.sim.Throttle("DescribeVolumes", 1, 2)
	if _, err := b.Create(ctx(t), backends.CreateRequest{Name: "throttled", RequiredBytes: 1 << 30}); err != nil {
		t.Fatalf("create while describes are throttled: %v", err)
	}
}

func TestAttachWaitsOutEventualConsistency(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	node := e.backend(e.config("c1", inst1), inst1)
	v := create(t, ctrl, "att", 1, nil)
	e.sim.SetLag("AttachVolume", 300*time.Millisecond)
	pc := attach(t, ctrl, v.ID, inst1, false)
	if inst, dev, _ := e.attachment(v.ID); inst != inst1 || dev != pc[PublishDevicePath] {
		t.Fatalf("attached to %s as %s; publish context %v", inst, dev, pc)
	}
	if _, err := node.Connect(ctx(t), v.ID, pc, false); err != nil {
		t.Fatal(err)
	}
	detach(t, ctrl, v.ID, inst1)

	// The first call runs out of time before EC2 describes the
	// attachment; the CO's retry meets VolumeInUse from AttachVolume and
	// must find its own attachment, not report it as someone else's.
	e.sim.SetLag("AttachVolume", 1500*time.Millisecond)
	_, err := ctrl.Attach(within(t, 300*time.Millisecond), v.ID, backends.AttachRequest{Node: inst1, Mode: backends.SingleNodeWriter})
	if !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("attach not yet described: %v, want ErrUnavailable", err)
	}
	pc2, err := ctrl.Attach(ctx(t), v.ID, backends.AttachRequest{Node: inst1, Mode: backends.SingleNodeWriter})
	if err != nil {
		t.Fatalf("retried attach: %v", err)
	}
	if _, dev, state := e.attachment(v.ID); dev != pc2[PublishDevicePath] || state != "attached" {
		t.Fatalf("attachment %s %s, publish context %v", dev, state, pc2)
	}
	if n := e.sim.Calls("AttachVolume"); n > 3 {
		t.Fatalf("AttachVolume sent %d times for two attachments", n)
	}
	detach(t, ctrl, v.ID, inst1)
}

func TestConnectWaitsForAnAttachmentNotYetDescribed(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	node := e.backend(e.config("c1", inst1), inst1)
	v := create(t, ctrl, "conn", 1, nil)
	e.sim.SetLag("AttachVolume", time.Second)
	rawAttach(t, ctrl, v.ID, "/dev/xvdbk")
	dev, err := node.Connect(ctx(t), v.ID, nil, false)
	if err != nil {
		t.Fatalf("connect while EC2 does not describe the attachment yet: %v", err)
	}
	if want, _ := e.loops.DevicePath(v.ID); dev.Path != want {
		t.Fatalf("device %s, want %s", dev.Path, want)
	}
	e.sim.SetLag("AttachVolume", 0)
	detach(t, ctrl, v.ID, inst1)
}

func TestConnectNeedsNoEC2WhenTheSerialProves(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	node := e.backend(e.config("c1", inst1), inst1)
	v := create(t, ctrl, "quiet", 1, nil)
	pc := attach(t, ctrl, v.ID, inst1, false)
	e.sim.ResetCalls()
	if _, err := node.Connect(ctx(t), v.ID, pc, false); err != nil {
		t.Fatal(err)
	}
	if calls := e.sim.CallCounts(); len(calls) != 0 {
		t.Fatalf("connect of a device whose serial proves it called EC2: %v", calls)
	}
	detach(t, ctrl, v.ID, inst1)
}

func TestStuckAttachmentIsAbortedAndRetried(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("c1", "")
	cfg.AttachAbortAfter = "300ms"
	ctrl := e.backend(cfg, "")
	node := e.backend(e.config("c1", inst1), inst1)
	v := create(t, ctrl, "stuck", 1, nil)
	// The first name the allocator picks never completes on inst1.
	e.sim.StickDevice(inst1, "/dev/xvdba")
	pc := attach(t, ctrl, v.ID, inst1, false)
	if pc[PublishDevicePath] == "/dev/xvdba" {
		t.Fatalf("attached on the stuck name: %v", pc)
	}
	if _, dev, state := e.attachment(v.ID); state != "attached" || dev != pc[PublishDevicePath] {
		t.Fatalf("attachment %s %s", dev, state)
	}
	if _, err := node.Connect(ctx(t), v.ID, pc, false); err != nil {
		t.Fatal(err)
	}
	detach(t, ctrl, v.ID, inst1)

	// A CO retry that finds an attachment stuck since before the bound
	// aborts it as well.
	v2 := create(t, ctrl, "stuck2", 1, nil)
	e.sim.StickDevice(inst1, "/dev/xvdbb")
	e.sim.StickDevice(inst1, "/dev/xvdbc")
	rawAttach(t, ctrl, v2.ID, "/dev/xvdbb")
	pc2 := attach(t, ctrl, v2.ID, inst1, false)
	if d := pc2[PublishDevicePath]; d == "/dev/xvdbb" || d == "/dev/xvdbc" || d == "/dev/xvdba" {
		t.Fatalf("attached on a stuck name: %v", pc2)
	}
	detach(t, ctrl, v2.ID, inst1)
}

func TestBusyAttachmentIsInTransition(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("c1", "")
	cfg.AttachTimeout = "1m" // a wait for "attached" would outlast the call
	ctrl := e.backend(cfg, "")
	v := create(t, ctrl, "busy", 1, nil)
	attach(t, ctrl, v.ID, inst1, false)
	if err := e.sim.SetAttachmentState(v.ID, "busy"); err != nil {
		t.Fatal(err)
	}
	_, err := ctrl.Attach(within(t, 5*time.Second), v.ID, backends.AttachRequest{Node: inst1, Mode: backends.SingleNodeWriter})
	if !errors.Is(err, backends.ErrUnavailable) || !strings.Contains(fmt.Sprint(err), "busy") {
		t.Fatalf("attach of a busy attachment: %v, want ErrUnavailable naming busy", err)
	}
	if err := ctrl.Detach(within(t, 5*time.Second), v.ID, inst1); !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("detach of a busy attachment: %v, want ErrUnavailable", err)
	}
	if _, _, state := e.attachment(v.ID); state != "busy" {
		t.Fatalf("attachment %s after a refused detach", state)
	}
	if err := e.sim.SetAttachmentState(v.ID, "attached"); err != nil {
		t.Fatal(err)
	}
	detach(t, ctrl, v.ID, inst1)
}

func TestDetachAfterTheNodeIDChanged(t *testing.T) {
	e := newEnv(t)
	const agent1, agent2 = "agent-1-S0", "agent-1-S1"
	node := e.backend(e.config("c1", inst1), agent1)
	if err := node.RegisterNode(ctx(t), agent1); err != nil {
		t.Fatal(err)
	}
	ctrl := e.backend(e.config("c1", ""), "")
	v := create(t, ctrl, "moved", 1, nil)
	attach(t, ctrl, v.ID, agent1, false)
	// The Mesos agent re-registers under a new id and re-tags its instance.
	renamed := e.backend(e.config("c1", inst1), agent2)
	if err := renamed.RegisterNode(ctx(t), agent2); err != nil {
		t.Fatal(err)
	}
	if err := ctrl.Detach(ctx(t), v.ID, agent1); err != nil {
		t.Fatalf("detach by the old agent id: %v", err)
	}
	if inst, _, state := e.attachment(v.ID); inst != "" {
		t.Fatalf("volume still attached to %s (%s) after a successful detach", inst, state)
	}
	// A node id that never had the volume still has nothing to detach.
	attach(t, ctrl, v.ID, agent2, false)
	if err := ctrl.Detach(ctx(t), v.ID, "agent-never-S9"); err != nil {
		t.Fatal(err)
	}
	if inst, _, _ := e.attachment(v.ID); inst != inst1 {
		t.Fatalf("a detach by another node id detached the volume")
	}
	detach(t, ctrl, v.ID, agent2)
}

func TestFailedCreatesDoNotLockTheNameOut(t *testing.T) {
	e := newEnv(t)
	b := e.backend(e.config("c1", ""), "")
	// Six creates fail in EC2 after it accepted them (a KMS key being
	// fixed, say); each burns a client token.
	const failures = 6
	e.sim.FailCreates(failures, "KMS key not usable")
	for i := range failures {
		_, err := b.Create(within(t, 3*time.Second), backends.CreateRequest{Name: "kms", RequiredBytes: 1 << 30})
		if err == nil {
			t.Fatalf("create %d succeeded while EC2 fails it", i+1)
		}
	}
	v, err := b.Create(ctx(t), backends.CreateRequest{Name: "kms", RequiredBytes: 1 << 30})
	if err != nil {
		t.Fatalf("create after %d failed ones: %v", failures, err)
	}
	if got := e.named("kms"); len(got) != 1 || got[0].ID != v.ID {
		t.Fatalf("volumes %+v", got)
	}
}

func TestRetriedCreateOverQuotaFindsItsVolume(t *testing.T) {
	e := newEnv(t)
	b := e.backend(e.config("c1", ""), "")
	// The first CreateVolume makes the volume but its answer is lost; the
	// SDK's retry then meets the regional quota, which that very volume
	// filled.
	e.drop.Store(1)
	e.lost = func() {
		e.sim.FailNext("CreateVolume", 1, "VolumeLimitExceeded", "You have exceeded your maximum gp3 storage limit of 1 GiB in this region.")
	}
	v, err := b.Create(ctx(t), backends.CreateRequest{Name: "quota", RequiredBytes: 1 << 30})
	if err != nil {
		t.Fatalf("create whose retry met the quota: %v", err)
	}
	if got := e.named("quota"); len(got) != 1 || got[0].ID != v.ID {
		t.Fatalf("volumes %+v", got)
	}
}

// newPlainEnv is a test server without devices, for attaching many volumes.
func newPlainEnv(t *testing.T, insts ...ec2sim.Instance) (*ec2sim.Server, func(cfg func(*Config)) *Backend) {
	t.Helper()
	sim, err := ec2sim.New(ec2sim.Options{Region: "us-east-1", Instances: insts, StateDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	url := sim.Start()
	t.Cleanup(func() { sim.Close() })
	return sim, func(mod func(*Config)) *Backend {
		c := Config{Name: "ebs", Type: Type, Region: "us-east-1", Endpoint: url, AccessKeyID: "AKIDTEST", SecretAccessKey: "SECRETTEST",
			ClusterID: "c1", Zone: zoneA, AttachTimeout: "5s", PollInterval: "5ms"}
		if mod != nil {
			mod(&c)
		}
		b, err := New(c, Options{Logger: zaptest.NewLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

func TestDeviceNamesAreTheDocumentedOnes(t *testing.T) {
	if n, last := len(xvdSuffixes), xvdSuffixes[len(xvdSuffixes)-1]; n != 102 || last != "az" || !strings.Contains(strings.Join(xvdSuffixes, ","), "dw,dx,aa") {
		t.Fatalf("%d names ending %q: want xvd[b-c][a-z], xvdd[a-x], then xvda[a-z]", n, last)
	}
	if got := strings.Join(sdSuffixes, ""); got != "fghijklmnopqrstuvwxyz" {
		t.Fatalf("sd names %q", got)
	}
	// The test server refuses names EC2 does not document; an instance
	// that takes more volumes than there are names runs out of names, not
	// into refused ones.
	sim, backend := newPlainEnv(t, ec2sim.Instance{ID: inst1, AvailabilityZone: zoneA, MaxAttachments: 200})
	b := backend(func(c *Config) { c.MaxVolumesPerNode = len(xvdSuffixes) + 1 })
	var names []string
	for i := range len(xvdSuffixes) + 1 {
		v := create(t, b, fmt.Sprintf("n-%03d", i), 1, nil)
		pc, err := b.Attach(ctx(t), v.ID, backends.AttachRequest{Node: inst1, Mode: backends.SingleNodeWriter})
		if i == len(xvdSuffixes) {
			if !errors.Is(err, backends.ErrLimit) {
				t.Fatalf("attach %d: %v, want ErrLimit", i+1, err)
			}
			break
		}
		if err != nil {
			t.Fatalf("attach %d (names so far %v): %v", i+1, names, err)
		}
		names = append(names, pc[PublishDevicePath])
	}
	if names[75] != "/dev/xvddx" || names[101] != "/dev/xvdaz" {
		t.Fatalf("names 76 and 102: %s %s", names[75], names[101])
	}
	if n := sim.Calls("AttachVolume"); n != len(xvdSuffixes) {
		t.Fatalf("AttachVolume sent %d times; EC2 must have refused some names", n)
	}
}

func TestAttachmentLimits(t *testing.T) {
	tests := []struct {
		typ                string
		enis, stores, want int
	}{
		{"m5.large", 1, 0, 27},
		{"m5.large", 3, 0, 25},
		{"m5d.xlarge", 1, 1, 26},
		{"c6i.metal", 2, 0, 26},
		{"m7i.large", 8, 2, 32},
		{"c7i.16xlarge", 1, 0, 48},
		{"r7iz.metal-32xl", 1, 0, 79},
		{"m4.large", 4, 0, 40},
		{"t2.micro", 1, 0, 40},
		{"unknown.size", 1, 0, 27},
	}
	for _, tc := range tests {
		if got := instanceVolumeLimit(tc.typ, tc.enis, tc.stores); got != tc.want {
			t.Errorf("%s with %d ENIs and %d instance stores: %d, want %d", tc.typ, tc.enis, tc.stores, got, tc.want)
		}
	}

	// The controller stops at the limit before EC2 would refuse, and the
	// configured override wins.
	sim, backend := newPlainEnv(t, ec2sim.Instance{ID: inst1, AvailabilityZone: zoneA, RootDeviceName: "/dev/xvda"})
	b := backend(func(c *Config) { c.MaxVolumesPerNode = 4 })
	for i := range 4 {
		v := create(t, b, fmt.Sprintf("l-%d", i), 1, nil)
		_, err := b.Attach(ctx(t), v.ID, backends.AttachRequest{Node: inst1, Mode: backends.SingleNodeWriter})
		switch {
		case i < 3 && err != nil:
			t.Fatalf("attach %d: %v", i+1, err)
		case i == 3 && (!errors.Is(err, backends.ErrLimit) || !strings.Contains(err.Error(), "maxVolumesPerNode")):
			t.Fatalf("attach beyond maxVolumesPerNode=4 (root included): %v", err)
		}
	}
	if n := sim.Calls("AttachVolume"); n != 3 {
		t.Fatalf("AttachVolume sent %d times; the fourth must not reach EC2", n)
	}
}

func TestNodeMaxVolumes(t *testing.T) {
	e := newEnv(t)
	sysfs := t.TempDir()
	for i, model := range []string{"Amazon EC2 NVMe Instance Storage", "Amazon Elastic Block Store", "Amazon EC2 NVMe Instance Storage"} {
		d := filepath.Join(sysfs, "block", fmt.Sprintf("nvme%dn1", i), "device")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "model"), []byte(model+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	node := e.backend(e.config("c1", inst1), inst1, func(o *Options) { o.SysfsRoot = sysfs })
	// m5.large: 28 shared slots - 1 ENI - 2 instance stores - the root volume.
	if n, err := node.NodeMaxVolumes(ctx(t)); err != nil || n != 24 {
		t.Fatalf("NodeMaxVolumes = %d, %v; want 24", n, err)
	}
	cfg := e.config("c1", inst1)
	cfg.MaxVolumesPerNode = 10
	if n, err := e.backend(cfg, inst1).NodeMaxVolumes(ctx(t)); err != nil || n != 9 {
		t.Fatalf("NodeMaxVolumes with maxVolumesPerNode=10: %d, %v; want 9", n, err)
	}
}

func TestNVMeFoundWithoutUdevLinks(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	v := create(t, ctrl, "noudev", 1, nil)
	pc := attach(t, ctrl, v.ID, inst1, false)
	loop, ok := e.loops.DevicePath(v.ID)
	if !ok {
		t.Fatalf("no loop device for %s", v.ID)
	}
	// A minimal image: no by-id links, no device-name links; the kernel's
	// sysfs still names the namespace's serial.
	root, sysfs := t.TempDir(), t.TempDir()
	d := filepath.Join(sysfs, "block", "nvme3n1", "device")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "serial"), []byte(serialOf(v.ID)+"  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(loop, filepath.Join(root, "dev", "nvme3n1")); err != nil {
		t.Fatal(err)
	}
	cfg := e.config("c1", inst1)
	cfg.ByIDDir = t.TempDir()
	node := e.backend(cfg, inst1, func(o *Options) { o.SysfsRoot, o.DevRoot = sysfs, root })
	dev, err := node.Connect(within(t, 3*time.Second), v.ID, pc, false)
	if err != nil || dev.Path != loop {
		t.Fatalf("connect without udev links: %v %v, want %s", dev, err, loop)
	}
	// A namespace with another volume's serial is not taken for it.
	if err := os.WriteFile(filepath.Join(d, "serial"), []byte("vol0000000000000000a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Connect(within(t, 500*time.Millisecond), v.ID, pc, false); err == nil {
		t.Fatal("connect took a namespace with another serial")
	}
	detach(t, ctrl, v.ID, inst1)
}

func TestEachAPIHasItsOwnAdaptiveRetryer(t *testing.T) {
	sim, backend := newPlainEnv(t, ec2sim.Instance{ID: inst1, AvailabilityZone: zoneA})
	b := backend(nil)
	v := create(t, b, "probe", 1, nil)
	sim.FailNext("DescribeVolumes", 2, "RequestLimitExceeded", "")
	if _, err := b.Get(ctx(t), v.ID); err != nil {
		t.Fatalf("get after two throttles: %v", err)
	}
	if err := b.Probe(ctx(t)); err != nil {
		t.Fatal(err)
	}
	r, ok := b.ec2.Options().Retryer.(*perAPIRetryer)
	if !ok {
		t.Fatalf("retryer %T", b.ec2.Options().Retryer)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	dv, az := r.by["DescribeVolumes"], r.by["DescribeAvailabilityZones"]
	if dv == nil || az == nil || dv == az {
		t.Fatalf("retryers per API: %v", r.by)
	}
}

func (e *env) temporarySnapshots() []ec2sim.SnapshotInfo {
	var out []ec2sim.SnapshotInfo
	for _, sn := range e.sim.Snapshots() {
		if sn.Tags[TagTemporary] != "" {
			out = append(out, sn)
		}
	}
	return out
}

func TestCloneCopiesTheVolume(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	v := create(t, ctrl, "orig", 2, nil)
	c, err := ctrl.Create(ctx(t), backends.CreateRequest{Name: "copy", RequiredBytes: 2 << 30, SourceVolume: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	if c.SourceVolume != v.ID || c.CapacityBytes != 2<<30 {
		t.Fatalf("clone %+v", c)
	}
	if n := e.sim.Calls("CreateSnapshot"); n != 0 || e.sim.Calls("CopyVolumes") == 0 {
		t.Fatalf("clone took %d snapshots, CopyVolumes %d calls", n, e.sim.Calls("CopyVolumes"))
	}
	again, err := ctrl.Create(ctx(t), backends.CreateRequest{Name: "copy", RequiredBytes: 2 << 30, SourceVolume: v.ID})
	if err != nil || again.ID != c.ID || len(e.named("copy")) != 1 {
		t.Fatalf("repeated clone: %v %v", again, err)
	}
}

func TestCloneThroughASnapshotLeavesNone(t *testing.T) {
	e := newEnv(t)
	e.sim.DisableCopyVolumes()
	ctrl := e.backend(e.config("c1", ""), "")
	v := create(t, ctrl, "orig", 1, nil)
	// The CO gives up while the temporary snapshot is still pending.
	e.sim.SetSnapshotDelay(time.Minute)
	if _, err := ctrl.Create(within(t, 500*time.Millisecond), backends.CreateRequest{Name: "abandoned", SourceVolume: v.ID}); err == nil {
		t.Fatal("clone succeeded while its snapshot was pending")
	}
	if left := e.temporarySnapshots(); len(left) != 0 {
		t.Fatalf("temporary snapshots left by an abandoned clone: %+v", left)
	}
	// A snapshot that fails is not left behind either.
	e.sim.SetSnapshotDelay(0)
	e.sim.FailSnapshots(1, "internal error")
	if _, err := ctrl.Create(ctx(t), backends.CreateRequest{Name: "failed", SourceVolume: v.ID}); err == nil {
		t.Fatal("clone succeeded from a failed snapshot")
	}
	c, err := ctrl.Create(ctx(t), backends.CreateRequest{Name: "failed", SourceVolume: v.ID})
	if err != nil || c.SourceVolume != v.ID {
		t.Fatalf("clone: %+v %v", c, err)
	}
	if left := e.temporarySnapshots(); len(left) != 0 {
		t.Fatalf("temporary snapshots left: %+v", left)
	}
}

func TestTemporarySnapshotsSweptAtStart(t *testing.T) {
	e := newEnv(t)
	first := e.backend(e.config("c1", ""), "")
	v := create(t, first, "orig", 1, nil)
	// A process died in the middle of a clone.
	sn, err := first.snapshot(ctx(t), v.ID, cloneSnapshotName("died"), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.waitSnapshot(ctx(t), sn.ID); err != nil {
		t.Fatal(err)
	}
	next := e.backend(e.config("c1", ""), "")
	next.tempGrace = 0
	create(t, next, "any", 1, nil)
	if left := e.temporarySnapshots(); len(left) != 0 {
		t.Fatalf("temporary snapshots after the first create of a new process: %+v", left)
	}
	// A young one (a clone of another process in flight) is kept.
	if _, err := first.snapshot(ctx(t), v.ID, cloneSnapshotName("young"), nil, true); err != nil {
		t.Fatal(err)
	}
	third := e.backend(e.config("c1", ""), "")
	create(t, third, "other", 1, nil)
	if left := e.temporarySnapshots(); len(left) != 1 {
		t.Fatalf("temporary snapshots: %+v, want the young one kept", left)
	}
}
