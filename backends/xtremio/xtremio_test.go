package xtremio

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/csi-libstorage/csi-libstorage/backends"
	xtremiosim "github.com/csi-libstorage/csi-libstorage/test/sim/xtremio"
)

const testPassword = "Xio-Pw-never-logged"

type rig struct {
	sim   *xtremiosim.Server
	b     *Backend
	sysfs string
	byID  string
	dev   string
	logs  *observer.ObservedLogs
}

func newRig(t *testing.T, o xtremiosim.Options) *rig {
	t.Helper()
	o.User, o.Password = "admin", testPassword
	sim := xtremiosim.New(o)
	url := sim.Start()
	t.Cleanup(sim.Close)
	dir := t.TempDir()
	r := &rig{sim: sim, sysfs: filepath.Join(dir, "sys"), byID: filepath.Join(dir, "by-id"), dev: filepath.Join(dir, "dev")}
	for _, d := range []string{r.sysfs + "/class/scsi_host/host0", r.sysfs + "/class/scsi_host/host1", r.byID, r.dev, dir + "/etc/iscsi"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []string{"host0", "host1"} {
		if err := os.WriteFile(r.sysfs+"/class/scsi_host/"+h+"/scan", nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(dir+"/etc/iscsi/initiatorname.iscsi", []byte("InitiatorName=iqn.2026-12.test:node1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	r.logs = logs
	b, err := New(Config{Name: "xio", XMS: url, User: "admin", PasswordFile: pw, Cluster: o.Cluster, HostRoot: dir, SysfsRoot: r.sysfs,
		ByIDDir: r.byID, AttachTimeout: "200ms", PollInterval: "10ms"}, Options{NodeID: "node1", Logger: zap.New(core), DevDir: r.dev})
	if err != nil {
		t.Fatal(err)
	}
	r.b = b
	return r
}

func TestAPIVersionAndCluster(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  xtremiosim.Options
		want string
	}{
		{"XMS 6", xtremiosim.Options{}, "v3"},
		{"XMS 4", xtremiosim.Options{V2Only: true}, "v2"},
		{"multi-cluster", xtremiosim.Options{Cluster: "xbrick2"}, "v3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.opt)
			ctx := context.Background()
			v, err := r.b.Create(ctx, backends.CreateRequest{Name: "pvc-1", RequiredBytes: 3<<20 + 1, Modes: []backends.AccessMode{backends.SingleNodeWriter}})
			if err != nil {
				t.Fatal(err)
			}
			if r.b.c.version != tc.want {
				t.Fatalf("API version %s, want %s", r.b.c.version, tc.want)
			}
			if v.CapacityBytes != 4<<20 {
				t.Fatalf("capacity %d, want 4 MiB (whole MiB)", v.CapacityBytes)
			}
			if err := r.b.Probe(ctx); err != nil {
				t.Fatal(err)
			}
			if err := r.b.Delete(ctx, v.ID); err != nil {
				t.Fatal(err)
			}
			if n := len(r.sim.Volumes()); n != 0 {
				t.Fatalf("%d volumes after delete", n)
			}
		})
	}
}

func TestErrorTable(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want error
	}{
		{&APIError{Status: 400, Message: "obj_not_found"}, backends.ErrNotFound},
		{&APIError{Status: 400, Message: "vol_obj_not_found"}, backends.ErrNotFound},
		{&APIError{Status: 400, Message: "system_is_busy"}, backends.ErrUnavailable},
		{&APIError{Status: 503, Message: "x"}, backends.ErrUnavailable},
		{&APIError{Status: 401, Message: "Unauthorized"}, backends.ErrPermission},
		{&APIError{Status: 400, Message: "no_space_left"}, backends.ErrCapacity},
	} {
		if got := mapErr(tt.err, "op"); !errors.Is(got, tt.want) {
			t.Errorf("%v: %v, want %v", tt.err, got, tt.want)
		}
	}
	r := newRig(t, xtremiosim.Options{})
	ctx := context.Background()
	r.sim.Inject(xtremiosim.Fault{Path: "/volumes", Status: 400, Message: "system_is_busy", Count: 1})
	if _, err := r.b.List(ctx); !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("busy XMS: %v, want ErrUnavailable", err)
	}
	if _, err := r.b.Get(ctx, "77"); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("missing volume: %v", err)
	}
	// A lost create answer: the retry finds the volume by name.
	req := backends.CreateRequest{Name: "lost", Modes: []backends.AccessMode{backends.SingleNodeWriter}}
	r.sim.Inject(xtremiosim.Fault{Method: http.MethodPost, Path: "/volumes", Drop: true, Count: 1})
	if _, err := r.b.Create(ctx, req); !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("create with a lost answer: %v", err)
	}
	v, err := r.b.Create(ctx, req)
	if err != nil || len(r.sim.Volumes()) != 1 {
		t.Fatalf("retry: %+v, %v; volumes %+v", v, err, r.sim.Volumes())
	}
}

func TestNodeInitiatorsAndGroup(t *testing.T) {
	r := newRig(t, xtremiosim.Options{})
	fc := filepath.Join(r.sysfs, "class/fc_host/host5")
	if err := os.MkdirAll(fc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fc, "port_name"), []byte("0x10000090fa1b2c3d\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := r.b.Initiators()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10:00:00:90:fa:1b:2c:3d", "iqn.2026-12.test:node1"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("initiators %v, want %v", got, want)
	}
	ctx := context.Background()
	for range 2 { // idempotent
		if err := r.b.RegisterNode(ctx, "node1"); err != nil {
			t.Fatal(err)
		}
	}
	if g := r.sim.Groups()["node1"]; strings.Join(g, ",") != strings.Join(want, ",") {
		t.Fatalf("group node1 has %v", g)
	}
	// An existing group named in the configuration is used, never created.
	r.b.cfg.InitiatorGroup = "preexisting"
	if err := r.b.RegisterNode(ctx, "node1"); !errors.Is(err, backends.ErrNodeNotFound) {
		t.Fatalf("missing configured group: %v", err)
	}
	r.sim.AddGroup("preexisting", "iqn.other")
	if err := r.b.RegisterNode(ctx, "node1"); err != nil {
		t.Fatal(err)
	}
}

// fakeDevice gives volume naa a by-id link to a real block device node
// and a fake sysfs WWID.
func (r *rig) fakeDevice(t *testing.T, naa, dev, wwid string) {
	t.Helper()
	name := filepath.Base(dev)
	d := filepath.Join(r.sysfs, "block", name, "device")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "wwid"), []byte("naa."+wwid+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(r.byID, "wwn-0x"+naa)
	_ = os.Remove(link)
	if err := os.Symlink(dev, link); err != nil {
		t.Fatal(err)
	}
}

func blockNode(t *testing.T) string {
	for _, p := range []string{"/dev/loop0", "/dev/loop1", "/dev/loop2", "/dev/loop3"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeDevice != 0 {
			return p
		}
	}
	t.Skip("needs a /dev/loopN node")
	return ""
}

func TestConnectIdentityAndMultipath(t *testing.T) {
	devNode := blockNode(t)
	r := newRig(t, xtremiosim.Options{})
	ctx := context.Background()
	if err := r.b.RegisterNode(ctx, "node1"); err != nil {
		t.Fatal(err)
	}
	var ids []string
	var naas []string
	for _, n := range []string{"a", "b"} {
		v, err := r.b.Create(ctx, backends.CreateRequest{Name: n, Modes: []backends.AccessMode{backends.SingleNodeWriter}})
		if err != nil {
			t.Fatal(err)
		}
		pc, err := r.b.Attach(ctx, v.ID, backends.AttachRequest{Node: "node1", Mode: backends.SingleNodeWriter})
		if err != nil {
			t.Fatal(err)
		}
		if pc[PublishLUNAddress] == "" || len(pc[PublishDeviceWWN]) != 16 {
			t.Fatalf("publish context %v", pc)
		}
		ids, naas = append(ids, v.ID), append(naas, pc[PublishDeviceWWN])
	}
	// Volume a's link points at a device whose WWID is b's: refused.
	r.fakeDevice(t, naas[0], devNode, naas[1])
	if dev, err := r.b.Connect(ctx, ids[0], nil, false); !errors.Is(err, errRefused) {
		t.Fatalf("connect through a device of another volume: %+v, %v", dev, err)
	}
	// The right WWID: connected, and the rescan reached every SCSI host.
	r.fakeDevice(t, naas[0], devNode, naas[0])
	dev, err := r.b.Connect(ctx, ids[0], map[string]string{PublishDeviceWWN: naas[0]}, false)
	if err != nil || dev.Path != devNode {
		t.Fatalf("connect: %+v, %v", dev, err)
	}
	for _, h := range []string{"host0", "host1"} {
		if data, _ := os.ReadFile(filepath.Join(r.sysfs, "class/scsi_host", h, "scan")); string(data) != "- - -" {
			t.Fatalf("%s scan file holds %q", h, data)
		}
	}
	if err := r.b.Verify(ctx, ids[0], dev); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if err := r.b.Verify(ctx, ids[1], dev); !errors.Is(err, errRefused) {
		t.Fatalf("verify of a's device as b: %v", err)
	}
	// A dm-multipath holder is preferred, after its own WWID check.
	name := filepath.Base(devNode)
	if err := os.MkdirAll(filepath.Join(r.sysfs, "block", name, "holders", "dm-3"), 0o755); err != nil {
		t.Fatal(err)
	}
	dm := filepath.Join(r.sysfs, "block/dm-3/dm")
	if err := os.MkdirAll(dm, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dm, "uuid"), []byte("mpath-3"+naas[1]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.b.Connect(ctx, ids[0], nil, false); !errors.Is(err, errRefused) {
		t.Fatalf("multipath device of another WWID: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dm, "uuid"), []byte("mpath-3"+naas[0]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if dev, err := r.b.Connect(ctx, ids[0], nil, false); err != nil || dev.Path != filepath.Join(r.dev, "dm-3") {
		t.Fatalf("multipath connect: %+v, %v; want %s", dev, err, filepath.Join(r.dev, "dm-3"))
	}
	// Not mapped here: FAILED_PRECONDITION; mapped without a device: UNAVAILABLE.
	if err := r.b.Detach(ctx, ids[0], "node1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.b.Connect(ctx, ids[0], nil, false); !errors.Is(err, backends.ErrConflict) {
		t.Fatalf("connect of an unmapped volume: %v", err)
	}
	if _, err := r.b.Connect(ctx, ids[1], nil, false); !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("connect without a device: %v", err)
	}
}

func TestVPD83(t *testing.T) {
	naa := []byte{0x51, 0x4f, 0x0c, 0x54, 0x47, 0x60, 0x03, 0x51}
	page := []byte{0x00, 0x83, 0x00, 0x00}
	page = append(page, 0x02, 0x08, 0x00, 0x04, 't', 'e', 's', 't') // T10 vendor id, ascii
	page = append(page, 0x01, 0x03, 0x00, 0x08)
	page = append(page, naa...)
	page[3] = byte(len(page) - 4)
	got, err := naaFromVPD83(page)
	if err != nil || got != "514f0c5447600351" {
		t.Fatalf("naaFromVPD83 = %q, %v", got, err)
	}
	for _, bad := range [][]byte{nil, {0, 0x80, 0, 0}, page[:12]} {
		if _, err := naaFromVPD83(bad); err == nil {
			t.Errorf("naaFromVPD83(%x) accepted", bad)
		}
	}
}

func TestPasswordNeverInLogsOrErrors(t *testing.T) {
	r := newRig(t, xtremiosim.Options{})
	ctx := context.Background()
	if err := r.b.RegisterNode(ctx, "node1"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XIO_WRONG", "Wrong-"+testPassword)
	bad, err := New(Config{Name: "bad", XMS: r.b.cfg.XMS, User: "admin", PasswordEnv: "XIO_WRONG"}, Options{Logger: r.b.log})
	if err != nil {
		t.Fatal(err)
	}
	perr := bad.Probe(ctx)
	if !errors.Is(perr, backends.ErrPermission) {
		t.Fatalf("wrong password: %v", perr)
	}
	texts := []string{perr.Error()}
	for _, e := range r.logs.All() {
		b, _ := json.Marshal(e.ContextMap())
		texts = append(texts, e.Message, string(b))
	}
	if len(r.logs.All()) == 0 {
		t.Fatal("nothing logged")
	}
	for _, s := range texts {
		if strings.Contains(s, testPassword) {
			t.Fatalf("the password appears in %q", s)
		}
	}
}
