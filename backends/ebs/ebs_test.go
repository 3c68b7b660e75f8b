package ebs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"go.uber.org/zap/zaptest"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	"github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
)

const (
	inst1 = "i-0123456789abcdef0" // us-east-1a
	inst2 = "i-0fedcba9876543210" // us-east-1a, root device /dev/xvdba
	instB = "i-00000000000000bbb" // us-east-1b
	zoneA = "us-east-1a"
)

type env struct {
	t     *testing.T
	sim   *ec2sim.Server
	loops *ec2sim.LoopDevices
	url   string // EC2 endpoint the backends use (the sim, or a proxy)
	// drop, when > 0, makes the proxy swallow that many CreateVolume
	// responses after the sim has handled the request.
	drop atomic.Int32
	// lost, if set, runs after each CreateVolume whose answer the proxy
	// swallowed.
	lost func()
}

func newEnv(t *testing.T) *env {
	t.Helper()
	harness.RequireRoot(t)
	dir := harness.TempDir(t)
	loops := &ec2sim.LoopDevices{ImageDir: filepath.Join(dir, "images"), ByIDDir: filepath.Join(dir, "by-id"), PerInstance: true}
	sim, err := ec2sim.New(ec2sim.Options{
		Region: "us-east-1",
		Instances: []ec2sim.Instance{
			{ID: inst1, AvailabilityZone: zoneA},
			{ID: inst2, AvailabilityZone: zoneA, RootDeviceName: "/dev/xvdba"},
			{ID: instB, AvailabilityZone: "us-east-1b"},
		},
		StateDelay: 15 * time.Millisecond,
		Devices:    loops,
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, sim: sim, loops: loops}
	sim.Start()
	proxy := httptest.NewServer(http.HandlerFunc(e.proxy))
	e.url = proxy.URL
	t.Cleanup(func() {
		proxy.Close()
		if err := sim.Close(); err != nil {
			t.Errorf("sim close: %v", err)
		}
		if left, err := ec2sim.LoopsBackedBy(loops.ImageDir); err == nil && len(left) > 0 {
			t.Errorf("loop devices leaked: %v", left)
		}
	})
	return e
}

func (e *env) proxy(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	if form.Get("Action") == "CreateVolume" && e.drop.Load() > 0 {
		e.drop.Add(-1)
		e.sim.ServeHTTP(httptest.NewRecorder(), r) // EC2 did it; the answer is lost
		if e.lost != nil {
			e.lost()
		}
		http.Error(w, "connection reset", http.StatusBadGateway)
		return
	}
	e.sim.ServeHTTP(w, r)
}

// named returns the simulated volumes tagged with name.
func (e *env) named(name string) []ec2sim.VolumeInfo {
	var out []ec2sim.VolumeInfo
	for _, v := range e.sim.Volumes() {
		if v.Tags[TagName] == name {
			out = append(out, v)
		}
	}
	return out
}

func (e *env) config(cluster, inst string) Config {
	c := Config{
		Name: "ebs", Type: Type, Region: "us-east-1", Endpoint: e.url,
		AccessKeyID: "AKIDTEST", SecretAccessKey: "SECRETTEST",
		ClusterID: cluster, Zone: zoneA,
		AttachTimeout: "5s", PollInterval: "10ms",
	}
	if inst != "" {
		c.IMDSEndpoint = e.sim.IMDSURL(inst)
		c.ByIDDir = e.loops.LinkDir(inst)
	}
	return c
}

// backend builds a backend for node (an instance id, another node id, or
// "" for a controller) on instance inst.
func (e *env) backend(cfg Config, node string, mod ...func(*Options)) *Backend {
	e.t.Helper()
	o := Options{NodeID: node, Logger: zaptest.NewLogger(e.t), Serial: e.loops.Serial}
	for _, m := range mod {
		m(&o)
	}
	b, err := New(cfg, o)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func create(t *testing.T, b *Backend, name string, gib int64, params map[string]string) *backends.Volume {
	t.Helper()
	v, err := b.Create(ctx(t), backends.CreateRequest{Name: name, RequiredBytes: gib << 30, Parameters: params, Modes: []backends.AccessMode{backends.SingleNodeWriter}})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return v
}

func attach(t *testing.T, b *Backend, id, node string, byNode bool) map[string]string {
	t.Helper()
	pc, err := b.Attach(ctx(t), id, backends.AttachRequest{Node: node, Mode: backends.SingleNodeWriter, ByNode: byNode})
	if err != nil {
		t.Fatalf("attach %s to %s: %v", id, node, err)
	}
	return pc
}

func detach(t *testing.T, b *Backend, id, node string) {
	t.Helper()
	if err := b.Detach(ctx(t), id, node); err != nil {
		t.Fatalf("detach %s from %s: %v", id, node, err)
	}
}

func TestCreateIdempotent(t *testing.T) {
	e := newEnv(t)
	b := e.backend(e.config("c1", ""), "")
	v1 := create(t, b, "pvc-1", 2, map[string]string{"type": "gp3"})
	if v1.Zone != zoneA || v1.CapacityBytes != 2<<30 || v1.Name != "pvc-1" {
		t.Fatalf("volume %+v", v1)
	}
	v2 := create(t, b, "pvc-1", 2, map[string]string{"type": "gp3"})
	if v2.ID != v1.ID {
		t.Fatalf("second create gave %s, first %s", v2.ID, v1.ID)
	}
	if n := e.sim.Calls("CreateVolume"); n != 1 {
		t.Fatalf("CreateVolume called %d times, want 1", n)
	}
	// A request that only rounds to the same GiB is the same volume.
	if v3, err := b.Create(ctx(t), backends.CreateRequest{Name: "pvc-1", RequiredBytes: 2<<30 - 5, Parameters: map[string]string{"type": "gp3"}}); err != nil || v3.ID != v1.ID {
		t.Fatalf("rounded repeat: %v %v", v3, err)
	}
}

func TestCreateLostResponse(t *testing.T) {
	e := newEnv(t)
	b := e.backend(e.config("c1", ""), "")
	// Every attempt the SDK makes reaches EC2 but no answer comes back.
	e.drop.Store(5)
	_, err := b.Create(ctx(t), backends.CreateRequest{Name: "lost", RequiredBytes: 1 << 30})
	if !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("create with lost answers: %v, want ErrUnavailable", err)
	}
	sent := e.sim.Calls("CreateVolume")
	if sent < 2 {
		t.Fatalf("SDK sent CreateVolume %d times; want retries", sent)
	}
	if n := len(e.named("lost")); n != 1 {
		t.Fatalf("%d volumes after retried creates with one token, want 1: %+v", n, e.sim.Volumes())
	}
	v := create(t, b, "lost", 1, nil)
	if got := e.sim.Calls("CreateVolume"); got != sent {
		t.Fatalf("the retried create called CreateVolume again (%d → %d) instead of finding the volume by its tag", sent, got)
	}
	if vs := e.named("lost"); len(vs) != 1 || vs[0].ID != v.ID {
		t.Fatalf("volumes %+v, want only %s", vs, v.ID)
	}
}

func TestCreateAfterDeleteReusesNoToken(t *testing.T) {
	e := newEnv(t)
	b := e.backend(e.config("c1", ""), "")
	v1 := create(t, b, "again", 1, nil)
	if err := b.Delete(ctx(t), v1.ID); err != nil {
		t.Fatal(err)
	}
	// Same name, other size: the old token is burnt, a new volume comes.
	v2 := create(t, b, "again", 2, nil)
	if v2.ID == v1.ID || v2.CapacityBytes != 2<<30 {
		t.Fatalf("recreate: %+v (old %s)", v2, v1.ID)
	}
}

func TestCreateAlreadyExists(t *testing.T) {
	e := newEnv(t)
	b := e.backend(e.config("c1", ""), "")
	create(t, b, "pvc-x", 1, nil)
	for _, req := range []backends.CreateRequest{
		{Name: "pvc-x", RequiredBytes: 3 << 30},
		{Name: "pvc-x", RequiredBytes: 1 << 30, Parameters: map[string]string{"type": "gp2"}},
		{Name: "pvc-x", RequiredBytes: 1 << 30, Block: true},
	} {
		if _, err := b.Create(ctx(t), req); !errors.Is(err, backends.ErrAlreadyExists) {
			t.Errorf("create %+v: %v, want ErrAlreadyExists", req, err)
		}
	}
	// A name with filter wildcards matches only itself.
	if _, err := b.Create(ctx(t), backends.CreateRequest{Name: "pvc-*", RequiredBytes: 3 << 30}); err != nil {
		t.Fatalf("create pvc-*: %v", err)
	}
}

func TestParams(t *testing.T) {
	b := &Backend{volType: "gp3"}
	bk := &Backend{volType: "gp3", cfg: Config{KMSKeyID: "alias/k"}}
	capped := &Backend{volType: "gp3", cfg: Config{CapIOPS: true}}
	tests := []struct {
		name    string
		b       *Backend
		p       map[string]string
		gib     int64
		want    string // error substring; "" = ok
		volType string
		iops    int32
		size    int32
	}{
		{name: "default", p: nil, gib: 0, volType: "gp3", size: 1},
		{name: "volumetype alias", p: map[string]string{"volumetype": "io2", "iops": "1000"}, gib: 10, volType: "io2", iops: 1000, size: 10},
		{name: "type and volumetype disagree", p: map[string]string{"type": "gp2", "volumetype": "gp3"}, want: "disagree"},
		{name: "unknown type", p: map[string]string{"type": "gp9"}, want: "use one of"},
		{name: "iops on gp2", p: map[string]string{"type": "gp2", "iops": "3000"}, want: "no provisioned IOPS"},
		{name: "iops on st1", p: map[string]string{"type": "st1", "iops": "3000"}, want: "no provisioned IOPS"},
		{name: "iops on sc1", p: map[string]string{"type": "sc1", "iopsPerGB": "3"}, want: "no provisioned IOPS"},
		{name: "iops on standard", p: map[string]string{"type": "standard", "iops": "300"}, want: "no provisioned IOPS"},
		{name: "io1 without iops", p: map[string]string{"type": "io1"}, want: "needs provisioned IOPS"},
		{name: "io2 without iops", p: map[string]string{"type": "io2"}, want: "needs provisioned IOPS"},
		{name: "iops and iopsPerGB", p: map[string]string{"type": "io1", "iops": "100", "iopsPerGB": "10"}, want: "not both"},
		{name: "iopsPerGB", p: map[string]string{"type": "io1", "iopsPerGB": "10"}, gib: 20, volType: "io1", iops: 200, size: 20},
		{name: "iopsPerGB clamped", p: map[string]string{"type": "gp3", "iopsPerGB": "10"}, gib: 10, volType: "gp3", iops: 3000, size: 10},
		{name: "gp3 iops too low", p: map[string]string{"iops": "100"}, want: "takes 3000-80000"},
		{name: "iops not a number", p: map[string]string{"type": "io1", "iops": "many"}, want: "whole number"},
		{name: "throughput on gp2", p: map[string]string{"type": "gp2", "throughput": "250"}, want: "gp3 only"},
		{name: "throughput range", p: map[string]string{"throughput": "5000"}, want: "125-2000"},
		{name: "throughput ok", p: map[string]string{"throughput": "250"}, volType: "gp3", size: 1},
		{name: "io1 too small is raised", p: map[string]string{"type": "io1", "iops": "100"}, gib: 1, volType: "io1", iops: 100, size: 4},
		{name: "st1 min size", p: map[string]string{"type": "st1"}, gib: 10, volType: "st1", size: 125},
		{name: "standard too big", p: map[string]string{"type": "standard"}, gib: 2000, want: "at most 1024"},
		{name: "gp3 64 TiB", p: nil, gib: 65536, volType: "gp3", size: 65536},
		{name: "gp3 too big", p: nil, gib: 70000, want: "at most 65536"},
		{name: "io1 iops per GiB", p: map[string]string{"type": "io1", "iops": "1000"}, gib: 10, want: "at most 500 IOPS (50 per GiB); ask for at least 20 GiB"},
		{name: "io1 iops capped", b: capped, p: map[string]string{"type": "io1", "iops": "1000"}, gib: 10, volType: "io1", iops: 500, size: 10},
		{name: "io2 iops per GiB", p: map[string]string{"type": "io2", "iops": "5000"}, gib: 4, want: "at most 4000 IOPS"},
		{name: "gp3 iops per GiB", p: map[string]string{"iops": "16000"}, gib: 8, want: "at most 4000 IOPS"},
		{name: "gp3 iops capped", b: capped, p: map[string]string{"iops": "16000"}, gib: 8, volType: "gp3", iops: 4000, size: 8},
		{name: "gp3 baseline iops at 1 GiB", p: map[string]string{"iops": "3000"}, gib: 1, volType: "gp3", iops: 3000, size: 1},
		{name: "gp3 throughput per IOPS", p: map[string]string{"throughput": "1000"}, gib: 100, want: "needs iops=4000"},
		{name: "gp3 throughput with iops", p: map[string]string{"throughput": "1000", "iops": "4000"}, gib: 100, volType: "gp3", iops: 4000, size: 100},
		{name: "encrypted bad", p: map[string]string{"encrypted": "maybe"}, want: "true or false"},
		{name: "kms with encrypted=false", p: map[string]string{"encrypted": "false", "kmsKeyId": "k"}, want: "encrypted=false"},
		{name: "tags bad", p: map[string]string{"tags": "novalue"}, want: "key=value"},
		{name: "tags reserved", p: map[string]string{"tags": "csi-libstorage/cluster=x"}, want: "reserved"},
		{name: "tags aws", p: map[string]string{"tags": "aws:x=1"}, want: "reserved by AWS"},
		{name: "tags ok", p: map[string]string{"tags": "team=a, cost=b"}, volType: "gp3", size: 1},
		{name: "config key encrypts", b: bk, p: nil, volType: "gp3", size: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bb := tc.b
			if bb == nil {
				bb = b
			}
			s, err := bb.parseSpec(tc.p)
			var size, iops int32
			if err == nil {
				size, err = s.sizeGiB(tc.gib<<30, 0)
			}
			if err == nil {
				iops, _, err = s.performance(size, bb.cfg.CapIOPS)
			}
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v, want %q", err, tc.want)
				}
				if !errors.Is(err, backends.ErrInvalid) && !errors.Is(err, backends.ErrOutOfRange) {
					t.Fatalf("err %v wraps neither ErrInvalid nor ErrOutOfRange", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.volType != tc.volType || size != tc.size || iops != tc.iops {
				t.Fatalf("got type %s size %d iops %d", s.volType, size, iops)
			}
			if bb == bk && (!s.encrypted || s.kmsKeyID != "alias/k") {
				t.Fatalf("config kmsKeyID not applied: %+v", s)
			}
		})
	}
	s, _ := b.parseSpec(nil)
	if _, err := s.sizeGiB(1<<30, 1<<29); !errors.Is(err, backends.ErrOutOfRange) {
		t.Fatalf("limit below one GiB: %v", err)
	}
}

func TestAttachConnectVerifyDetach(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	node := e.backend(e.config("c1", inst1), inst1)
	v := create(t, ctrl, "vol-a", 1, nil)
	pc := attach(t, ctrl, v.ID, inst1, false)
	if pc[PublishDevicePath] != "/dev/xvdba" || pc[PublishVolumeID] != v.ID {
		t.Fatalf("publish context %v", pc)
	}
	// Idempotent.
	if pc2 := attach(t, ctrl, v.ID, inst1, false); pc2[PublishDevicePath] != pc[PublishDevicePath] {
		t.Fatalf("second attach gave %v", pc2)
	}
	if n := e.sim.Calls("AttachVolume"); n != 1 {
		t.Fatalf("AttachVolume called %d times", n)
	}
	got, _ := ctrl.Get(ctx(t), v.ID)
	if len(got.Attachments) != 1 || got.Attachments[0].Node != inst1 || got.Attachments[0].ByNode {
		t.Fatalf("attachments %+v", got.Attachments)
	}
	// Another instance is refused (single node).
	if _, err := ctrl.Attach(ctx(t), v.ID, backends.AttachRequest{Node: inst2, Mode: backends.SingleNodeWriter}); !errors.Is(err, backends.ErrConflict) {
		t.Fatalf("attach to a second node: %v, want ErrConflict", err)
	}
	dev, err := node.Connect(ctx(t), v.ID, pc, false)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := e.loops.DevicePath(v.ID)
	if dev.Path != want {
		t.Fatalf("connect gave %s, want %s", dev.Path, want)
	}
	if err := node.Verify(ctx(t), v.ID, dev); err != nil {
		t.Fatal(err)
	}
	if err := node.MarkFormatted(ctx(t), v.ID, "ext4"); err != nil {
		t.Fatal(err)
	}
	if err := node.MarkFormatted(ctx(t), v.ID, "xfs"); err == nil {
		t.Fatal("a second, different format mark was accepted")
	}
	if got, _ := node.Get(ctx(t), v.ID); got.Formatted != "ext4" {
		t.Fatalf("formatted %q", got.Formatted)
	}
	// Delete while attached.
	if err := ctrl.Delete(ctx(t), v.ID); !errors.Is(err, backends.ErrInUse) {
		t.Fatalf("delete attached: %v, want ErrInUse", err)
	}
	detach(t, ctrl, v.ID, inst1)
	detach(t, ctrl, v.ID, inst1) // idempotent
	if got, _ := ctrl.Get(ctx(t), v.ID); len(got.Attachments) != 0 {
		t.Fatalf("attachments after detach %+v", got.Attachments)
	}
	if err := ctrl.Delete(ctx(t), v.ID); err != nil {
		t.Fatal(err)
	}
	if err := ctrl.Delete(ctx(t), v.ID); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := ctrl.Get(ctx(t), v.ID); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	for _, bad := range []string{"vol-xyz", "../etc", "vol-0123456789abcdef0123"} {
		if _, err := ctrl.Get(ctx(t), bad); !errors.Is(err, backends.ErrNotFound) {
			t.Errorf("get %q: %v", bad, err)
		}
	}
}

func TestStaleLinkRefused(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	node := e.backend(e.config("c1", inst1), inst1)
	a := create(t, ctrl, "a", 1, nil)
	b := create(t, ctrl, "b", 1, nil)
	pcA := attach(t, ctrl, a.ID, inst1, false)
	attach(t, ctrl, b.ID, inst1, false)
	if _, err := e.loops.PlantStaleLink(inst1, a.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	_, err := node.Connect(ctx(t), a.ID, pcA, false)
	if err == nil || !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "stale") {
		t.Fatalf("connect through a stale link: %v, want a refusal", err)
	}
	devB, _ := e.loops.DevicePath(b.ID)
	if err := node.Verify(ctx(t), a.ID, backends.Device{Path: devB}); err == nil {
		t.Fatal("Verify accepted another volume's device")
	}
	detach(t, ctrl, a.ID, inst1)
	detach(t, ctrl, b.ID, inst1)
}

func TestDeviceNameDiscovery(t *testing.T) {
	e := newEnv(t)
	devRoot := t.TempDir()
	ctrl := e.backend(e.config("c1", ""), "")
	v := create(t, ctrl, "xvd", 1, nil)
	pc := attach(t, ctrl, v.ID, inst1, false)
	loopDev, _ := e.loops.DevicePath(v.ID)
	// No by-id link (a Xen instance); the kernel renamed xvdba to sdba.
	if err := os.Remove(e.loops.LinkPath(inst1, v.ID)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(devRoot, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(loopDev, filepath.Join(devRoot, "dev", "sd"+suffixOf(pc[PublishDevicePath]))); err != nil {
		t.Fatal(err)
	}
	withRoot := func(o *Options) { o.DevRoot = devRoot }
	node := e.backend(e.config("c1", inst1), inst1, withRoot)
	dev, err := node.Connect(ctx(t), v.ID, pc, false)
	if err != nil || dev.Path != loopDev {
		t.Fatalf("connect by renamed name: %v %v, want %s", dev, err, loopDev)
	}
	// A device without serial is accepted only as the attachment's own
	// name, and Verify agrees.
	noSerial := func(o *Options) {
		o.DevRoot = devRoot
		o.Serial = func(string) (string, error) { return "", ErrNoSerial }
	}
	xen := e.backend(e.config("c1", inst1), inst1, noSerial)
	dev, err = xen.Connect(ctx(t), v.ID, nil, false)
	if err != nil || dev.Path != loopDev {
		t.Fatalf("connect without serial: %v %v", dev, err)
	}
	if err := xen.Verify(ctx(t), v.ID, dev); err != nil {
		t.Fatalf("verify without serial: %v", err)
	}
	// ...but never when a by-id link says the device is NVMe.
	if err := os.Symlink(loopDev, e.loops.LinkPath(inst1, v.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := xen.Connect(ctx(t), v.ID, nil, false); !errors.Is(err, errRefused) {
		t.Fatalf("no-serial device with a by-id link: %v", err)
	}
	detach(t, ctrl, v.ID, inst1)
}

func TestConnectWaitsAndRefusesUnattached(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	node := e.backend(e.config("c1", inst1), inst1)
	v := create(t, ctrl, "w", 1, nil)
	// Unattached, or attached and not described yet: not yet, then
	// UNAVAILABLE before the caller's deadline.
	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelShort()
	// On a loaded machine the last describe can be in flight when the
	// deadline comes: then the call is cut off (DEADLINE_EXCEEDED), which
	// a CO retries as it does UNAVAILABLE.
	if _, err := node.Connect(short, v.ID, nil, false); !notYet(err) {
		t.Fatalf("connect unattached: %v", err)
	}
	e.sim.HoldAttach(true)
	c, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := ctrl.Attach(c, v.ID, backends.AttachRequest{Node: inst1, Mode: backends.SingleNodeWriter})
	if !notYet(err) {
		t.Fatalf("attach held: %v, want ErrUnavailable (or the deadline)", err)
	}
	e.sim.HoldAttach(false)
	pc := attach(t, ctrl, v.ID, inst1, false) // resumes the same attachment
	if _, err := node.Connect(ctx(t), v.ID, pc, false); err != nil {
		t.Fatal(err)
	}
	if n := e.sim.Calls("AttachVolume"); n != 1 {
		t.Fatalf("AttachVolume called %d times", n)
	}
	detach(t, ctrl, v.ID, inst1)
}

func TestAllocator(t *testing.T) {
	al := newAllocator(xvdSuffixes)
	s1, _ := al.take("i-1", map[string]bool{"ba": true}, 0)
	s2, _ := al.take("i-1", map[string]bool{"ba": true}, 0)
	if s1 != "bb" || s2 != "bc" {
		t.Fatalf("got %s %s", s1, s2)
	}
	al.release("i-1", s1, true) // EC2 said bb was taken
	s3, _ := al.take("i-1", nil, 0)
	if s3 != "ba" {
		t.Fatalf("got %s", s3)
	}
	if s, _ := al.take("i-2", nil, 0); s != "ba" {
		t.Fatalf("other instance got %s", s)
	}
	used := map[string]bool{}
	for _, s := range xvdSuffixes {
		used[s] = true
	}
	if _, err := al.take("i-3", used, 0); !errors.Is(err, backends.ErrLimit) {
		t.Fatalf("full instance: %v", err)
	}
	if suffixOf("/dev/sdbc") != "bc" || suffixOf("/dev/xvdbc") != "bc" || suffixOf("xvda") != "a" {
		t.Fatal("suffixOf")
	}
}

func TestConcurrentAttachDistinctNames(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	node := e.backend(e.config("c1", inst2), inst2)
	var ids []string
	for i := range 6 {
		ids = append(ids, create(t, ctrl, fmt.Sprintf("c-%d", i), 1, nil).ID)
	}
	var wg sync.WaitGroup
	pcs := make([]map[string]string, len(ids))
	errs := make([]error, len(ids))
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pcs[i], errs[i] = ctrl.Attach(ctx(t), id, backends.AttachRequest{Node: inst2, Mode: backends.SingleNodeWriter})
		}()
	}
	wg.Wait()
	seen := map[string]string{}
	for i, id := range ids {
		if errs[i] != nil {
			t.Fatalf("attach %s: %v", id, errs[i])
		}
		d := pcs[i][PublishDevicePath]
		if d == "/dev/xvdba" {
			t.Errorf("%s got the root device's name", id)
		}
		if other, dup := seen[d]; dup {
			t.Errorf("%s and %s both got %s", id, other, d)
		}
		seen[d] = id
		dev, err := node.Connect(ctx(t), id, pcs[i], false)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := e.loops.DevicePath(id); dev.Path != want {
			t.Errorf("%s connected %s, want %s", id, dev.Path, want)
		}
	}
	if n := e.sim.Calls("AttachVolume"); n != len(ids) {
		t.Errorf("AttachVolume called %d times for %d volumes (collisions?)", n, len(ids))
	}
	for _, id := range ids {
		detach(t, ctrl, id, inst2)
	}
}

func TestClusterIsolation(t *testing.T) {
	e := newEnv(t)
	mine := e.backend(e.config("c1", ""), "")
	theirs := e.backend(e.config("c2", ""), "")
	v := create(t, mine, "shared-name", 1, nil)
	w := create(t, theirs, "shared-name", 1, nil)
	if v.ID == w.ID {
		t.Fatal("two clusters share one volume for one name")
	}
	if _, err := theirs.Get(ctx(t), v.ID); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("get foreign: %v", err)
	}
	list, err := theirs.List(ctx(t))
	if err != nil || len(list) != 1 || list[0].ID != w.ID {
		t.Fatalf("list: %v %v", list, err)
	}
	if _, err := theirs.Attach(ctx(t), v.ID, backends.AttachRequest{Node: inst1, Mode: backends.SingleNodeWriter}); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("attach foreign: %v", err)
	}
	if err := theirs.Delete(ctx(t), v.ID); err != nil {
		t.Fatalf("delete foreign: %v", err)
	}
	if _, err := mine.Get(ctx(t), v.ID); err != nil {
		t.Fatalf("the other cluster's delete touched the volume: %v", err)
	}
	if err := theirs.MarkFormatted(ctx(t), v.ID, "ext4"); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("mark foreign: %v", err)
	}
	if _, err := New(Config{Name: "x", Region: "us-east-1"}, Options{}); err == nil || !strings.Contains(err.Error(), "clusterID") {
		t.Fatalf("no clusterID: %v", err)
	}
}

func TestListPaged(t *testing.T) {
	e := newEnv(t)
	b := e.backend(e.config("c1", ""), "")
	b.pageSize = 5
	for i := range 12 {
		create(t, b, fmt.Sprintf("p-%02d", i), 1, nil)
	}
	e.sim.ResetCalls()
	list, err := b.List(ctx(t))
	if err != nil || len(list) != 12 {
		t.Fatalf("list: %d %v", len(list), err)
	}
	for i := 1; i < len(list); i++ {
		if list[i-1].ID >= list[i].ID {
			t.Fatal("not sorted")
		}
	}
	if n := e.sim.Calls("DescribeVolumes"); n != 3 {
		t.Fatalf("%d pages, want 3", n)
	}
}

func TestThrottling(t *testing.T) {
	e := newEnv(t)
	b := e.backend(e.config("c1", ""), "")
	v := create(t, b, "t", 1, nil)
	// Every error a call below returns is kept, so that the check for
	// leaked credentials at the end looks at all of them.
	var errs []error
	keep := func(err error) error {
		errs = append(errs, err)
		return err
	}
	e.sim.ResetCalls()
	e.sim.FailNext("DescribeVolumes", 2, "RequestLimitExceeded", "")
	if _, err := b.Get(ctx(t), v.ID); keep(err) != nil {
		t.Fatalf("get after 2 throttles: %v", err)
	}
	if n := e.sim.Calls("DescribeVolumes"); n != 3 {
		t.Fatalf("DescribeVolumes %d times, want 3", n)
	}
	e.sim.FailNext("DescribeVolumes", 5, "RequestLimitExceeded", "")
	if _, err := b.Get(ctx(t), v.ID); !errors.Is(keep(err), backends.ErrUnavailable) {
		t.Fatalf("get while throttled: %v, want ErrUnavailable", err)
	}
	e.sim.FailNext("CreateVolume", 5, "InternalError", "")
	if _, err := b.Create(ctx(t), backends.CreateRequest{Name: "t2", RequiredBytes: 1 << 30}); !errors.Is(keep(err), backends.ErrUnavailable) {
		t.Fatalf("create on 500s: %v", err)
	}
	e.sim.FailNext("CreateVolume", 1, "VolumeLimitExceeded", "")
	if _, err := b.Create(ctx(t), backends.CreateRequest{Name: "t3", RequiredBytes: 1 << 30}); !errors.Is(keep(err), backends.ErrLimit) {
		t.Fatalf("create over the limit: %v", err)
	}
	e.sim.FailNext("AttachVolume", 1, "AttachmentLimitExceeded", "")
	if _, err := b.Attach(ctx(t), v.ID, backends.AttachRequest{Node: inst1, Mode: backends.SingleNodeWriter}); !errors.Is(keep(err), backends.ErrLimit) {
		t.Fatalf("attach over the limit: %v", err)
	}
	c, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-c.Done()
	if _, err := b.Get(c, v.ID); !errors.Is(keep(err), context.DeadlineExceeded) {
		t.Fatalf("expired context: %v", err)
	}
	failed := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		failed++
		if s := fmt.Sprint(err); strings.Contains(s, "SECRETTEST") || strings.Contains(s, "AKIDTEST") {
			t.Errorf("credentials in error: %s", s)
		}
	}
	if failed != 5 {
		t.Fatalf("%d calls failed, want the 5 that were made to fail", failed)
	}
	if s := fmt.Sprint(e.config("c1", "")); strings.Contains(s, "SECRETTEST") || strings.Contains(s, "AKIDTEST") {
		t.Fatalf("config prints credentials: %s", s)
	}
}

func TestRestartBetweenAttachAndStage(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("c1", inst1)
	first := e.backend(cfg, inst1)
	v := create(t, first, "r", 1, nil)
	pc := attach(t, first, v.ID, inst1, true)
	// The plugin restarts: a new backend, nothing in memory.
	second := e.backend(cfg, inst1)
	dev, err := second.Connect(ctx(t), v.ID, pc, false)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := e.loops.DevicePath(v.ID); dev.Path != want {
		t.Fatalf("connected %s, want %s", dev.Path, want)
	}
	got, _ := second.Get(ctx(t), v.ID)
	if a, ok := got.AttachedTo(inst1); !ok || !a.ByNode {
		t.Fatalf("the node's attachment was forgotten: %+v", got.Attachments)
	}
	// With no publish context at all (the Mesos isolator path).
	if _, err := second.Connect(ctx(t), v.ID, nil, false); err != nil {
		t.Fatal(err)
	}
	detach(t, second, v.ID, inst1)
}

func TestNodeIDMapping(t *testing.T) {
	e := newEnv(t)
	const agent = "0a1b2c3d-4e5f-S0"
	node := e.backend(e.config("c1", inst1), agent)
	if err := node.RegisterNode(ctx(t), agent); err != nil {
		t.Fatal(err)
	}
	ctrl := e.backend(e.config("c1", ""), "")
	v := create(t, ctrl, "m", 1, nil)
	pc := attach(t, ctrl, v.ID, agent, false)
	got, _ := ctrl.Get(ctx(t), v.ID)
	if _, ok := got.AttachedTo(agent); !ok {
		t.Fatalf("attachments %+v", got.Attachments)
	}
	for _, vi := range e.sim.Volumes() {
		if vi.ID == v.ID && vi.InstanceID != inst1 {
			t.Fatalf("attached to %s", vi.InstanceID)
		}
	}
	if _, err := node.Connect(ctx(t), v.ID, pc, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.Attach(ctx(t), v.ID, backends.AttachRequest{Node: "no-such-agent", Mode: backends.SingleNodeWriter}); !errors.Is(err, backends.ErrNodeNotFound) {
		t.Fatalf("unknown node: %v", err)
	}
	detach(t, ctrl, v.ID, agent)
	// The node attaches by itself under its agent id.
	attach(t, node, v.ID, agent, true)
	got, _ = node.Get(ctx(t), v.ID)
	if a, ok := got.AttachedTo(agent); !ok || !a.ByNode {
		t.Fatalf("attachments %+v", got.Attachments)
	}
	if z, err := node.NodeZone(ctx(t)); err != nil || z != zoneA {
		t.Fatalf("zone %q %v", z, err)
	}
	detach(t, node, v.ID, agent)
}

func TestZoneMismatch(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	v := create(t, ctrl, "z", 1, nil)
	if _, err := ctrl.Attach(ctx(t), v.ID, backends.AttachRequest{Node: instB, Mode: backends.SingleNodeWriter}); !errors.Is(err, backends.ErrInvalid) {
		t.Fatalf("attach across zones: %v", err)
	}
	w, err := ctrl.Create(ctx(t), backends.CreateRequest{Name: "zb", RequiredBytes: 1 << 30, Zones: []string{"us-east-1b"}})
	if err != nil || w.Zone != "us-east-1b" {
		t.Fatalf("create in zone b: %+v %v", w, err)
	}
}

func TestExpand(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	v := create(t, ctrl, "grow", 1, nil)
	attach(t, ctrl, v.ID, inst1, false)
	size, err := ctrl.Expand(ctx(t), v.ID, 3<<30, 0)
	if err != nil || size != 3<<30 {
		t.Fatalf("expand: %d %v", size, err)
	}
	if size, err := ctrl.Expand(ctx(t), v.ID, 2<<30, 0); err != nil || size != 3<<30 {
		t.Fatalf("smaller expand: %d %v", size, err)
	}
	if got, _ := ctrl.Get(ctx(t), v.ID); got.CapacityBytes != 3<<30 {
		t.Fatalf("size %d", got.CapacityBytes)
	}
	if _, err := ctrl.Expand(ctx(t), v.ID, 1<<50, 0); !errors.Is(err, backends.ErrOutOfRange) {
		t.Fatalf("huge expand: %v", err)
	}
	detach(t, ctrl, v.ID, inst1)
}

func TestSnapshots(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	other := e.backend(e.config("c2", ""), "")
	v := create(t, ctrl, "snapme", 1, nil)
	w := create(t, ctrl, "other", 1, nil)
	s, err := ctrl.CreateSnapshot(ctx(t), v.ID, "s1", map[string]string{"tags": "a=b"})
	if err != nil || s.SourceID != v.ID || s.Name != "s1" {
		t.Fatalf("snapshot: %+v %v", s, err)
	}
	s2, err := ctrl.CreateSnapshot(ctx(t), v.ID, "s1", nil)
	if err != nil || s2.ID != s.ID {
		t.Fatalf("repeat: %+v %v", s2, err)
	}
	if _, err := ctrl.CreateSnapshot(ctx(t), w.ID, "s1", nil); !errors.Is(err, backends.ErrAlreadyExists) {
		t.Fatalf("same name, other volume: %v", err)
	}
	if _, err := ctrl.CreateSnapshot(ctx(t), v.ID, "s2", map[string]string{"x": "y"}); !errors.Is(err, backends.ErrInvalid) {
		t.Fatalf("bad parameter: %v", err)
	}
	if l, err := ctrl.ListSnapshots(ctx(t)); err != nil || len(l) != 1 {
		t.Fatalf("list: %v %v", l, err)
	}
	if l, err := other.ListSnapshots(ctx(t)); err != nil || len(l) != 0 {
		t.Fatalf("other cluster lists: %v %v", l, err)
	}
	if err := other.DeleteSnapshot(ctx(t), s.ID); err != nil {
		t.Fatal(err)
	}
	if l, _ := ctrl.ListSnapshots(ctx(t)); len(l) != 1 {
		t.Fatal("other cluster deleted the snapshot")
	}
	if err := ctrl.DeleteSnapshot(ctx(t), s.ID); err != nil {
		t.Fatal(err)
	}
	if err := ctrl.DeleteSnapshot(ctx(t), s.ID); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if err := ctrl.DeleteSnapshot(ctx(t), "snap-0123456789abcdef0"); err != nil {
		t.Fatalf("delete missing: %v", err)
	}
}

func TestRestoreAndClone(t *testing.T) {
	e := newEnv(t)
	ctrl := e.backend(e.config("c1", ""), "")
	v := create(t, ctrl, "src", 2, nil)
	if err := ctrl.MarkFormatted(ctx(t), v.ID, "xfs"); err != nil {
		t.Fatal(err)
	}
	s, err := ctrl.CreateSnapshot(ctx(t), v.ID, "s", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Smaller than the snapshot: raised to its size.
	r, err := ctrl.Create(ctx(t), backends.CreateRequest{Name: "restored", RequiredBytes: 1 << 30, SourceSnapshot: s.ID})
	if err != nil {
		t.Fatal(err)
	}
	if r.SourceSnapshot != s.ID || r.CapacityBytes != 2<<30 || r.Formatted != "xfs" {
		t.Fatalf("restored %+v", r)
	}
	if again, err := ctrl.Create(ctx(t), backends.CreateRequest{Name: "restored", RequiredBytes: 1 << 30, SourceSnapshot: s.ID}); err != nil || again.ID != r.ID {
		t.Fatalf("repeat restore: %v %v", again, err)
	}
	if _, err := ctrl.Create(ctx(t), backends.CreateRequest{Name: "restored", RequiredBytes: 1 << 30}); !errors.Is(err, backends.ErrAlreadyExists) {
		t.Fatalf("same name without source: %v", err)
	}
	if _, err := ctrl.Create(ctx(t), backends.CreateRequest{Name: "r2", SourceSnapshot: "snap-0123456789abcdef0"}); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("missing snapshot: %v", err)
	}
	c, err := ctrl.Create(ctx(t), backends.CreateRequest{Name: "clone", RequiredBytes: 2 << 30, SourceVolume: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	if c.SourceVolume != v.ID || c.Formatted != "xfs" {
		t.Fatalf("clone %+v", c)
	}
	if l, _ := ctrl.ListSnapshots(ctx(t)); len(l) != 1 {
		t.Fatalf("snapshots after clone: %+v (the temporary one should be gone or hidden)", l)
	}
	if _, err := ctrl.Create(ctx(t), backends.CreateRequest{Name: "c2", SourceVolume: "vol-0123456789abcdef0"}); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("missing source volume: %v", err)
	}
}

func TestProbeCapacity(t *testing.T) {
	e := newEnv(t)
	b := e.backend(e.config("c1", ""), "")
	if err := b.Probe(ctx(t)); err != nil {
		t.Fatal(err)
	}
	e.sim.FailNext("DescribeAvailabilityZones", 5, "Unavailable", "")
	if err := b.Probe(ctx(t)); !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("probe: %v", err)
	}
	if n, err := b.Capacity(ctx(t), nil); err != nil || n != ReportedCapacity {
		t.Fatalf("capacity %d %v", n, err)
	}
	if _, err := b.Capacity(ctx(t), map[string]string{"type": "io1"}); !errors.Is(err, backends.ErrInvalid) {
		t.Fatalf("capacity with bad params: %v", err)
	}
	// Zone from DescribeAvailabilityZones when nothing else says.
	cfg := e.config("c1", "")
	cfg.Zone = ""
	cfg.IMDSEndpoint = "http://127.0.0.1:1" // no IMDS here
	nb := e.backend(cfg, "")
	if z, err := nb.pickZone(ctx(t), nil); err != nil || z != zoneA {
		t.Fatalf("zone %q %v", z, err)
	}
	_ = aws.String
	_ = ec2.New
}

// notYet reports whether err says "not yet, retry": UNAVAILABLE when a wait
// ended before the deadline, or the deadline itself when it cut a call off.
func notYet(err error) bool {
	return errors.Is(err, backends.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}
