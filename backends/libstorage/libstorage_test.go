package libstorage

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/csi-libstorage/csi-libstorage/backends"
	ec2sim "github.com/csi-libstorage/csi-libstorage/test/sim/ec2"
	libstoragesim "github.com/csi-libstorage/csi-libstorage/test/sim/libstorage"
)

// newSim starts a test server with one service of each type.
func newSim(t *testing.T, opt libstoragesim.Options) (*libstoragesim.Server, string) {
	t.Helper()
	if opt.Services == nil {
		opt.Services = []libstoragesim.Service{
			{Name: "cinder", Driver: "cinder", Type: libstoragesim.TypeBlock, SingleAttach: true, NextDevice: libstoragesim.NextDevice{Prefix: "vd", Pattern: "[a-z]"}},
			{Name: "efs", Driver: "efs", Type: libstoragesim.TypeNAS, Export: "fs-1.efs.example:/exports", NextDevice: libstoragesim.NextDevice{Ignore: true}},
			{Name: "vfs", Driver: "vfs", Type: libstoragesim.TypeObject, VFSRoot: t.TempDir(), NextDevice: libstoragesim.NextDevice{Ignore: true}},
			{Name: "ebs", Driver: "ebs", Type: libstoragesim.TypeBlock, SingleAttach: true, IDFormat: "vol-%017x", NextDevice: libstoragesim.NextDevice{Prefix: "xvd", Pattern: "[f-p]"}},
		}
	}
	sim, err := libstoragesim.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	host, err := sim.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim, host
}

func newBackend(t *testing.T, cfg Config, opt Options) *Backend {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "ls"
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	b, err := New(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := b.(snapBackend); ok {
		return s.Backend
	}
	return b.(*Backend)
}

func TestNewAndCapabilities(t *testing.T) {
	sim, host := newSim(t, libstoragesim.Options{})
	_ = sim
	for _, c := range []struct {
		service string
		cfg     Config
		block   bool
		fs      []string
		multi   bool
		err     string
	}{
		{service: "cinder", block: true},
		{service: "efs", fs: []string{"nfs", "nfs4"}, multi: true},
		{service: "vfs", cfg: Config{VFSRoot: "/srv/vfs"}, fs: []string{}, multi: true},
		{service: "vfs", err: "set vfsRoot"},
		{service: "nope", err: `read service "nope"`},
		{service: "", err: "service is required"},
		{service: "cinder", cfg: Config{Timeout: "soon"}, err: `timeout "soon"`},
		{service: "cinder", cfg: Config{Host: "ftp://x"}, err: `scheme "ftp"`},
		{service: "cinder", cfg: Config{TLS: &TLS{}}, err: "not https"},
		{service: "cinder", cfg: Config{Token: "/nonexistent"}, err: "token"},
	} {
		t.Run(c.service+c.err, func(t *testing.T) {
			cfg := c.cfg
			cfg.Name, cfg.Service = "ls", c.service
			if cfg.Host == "" {
				cfg.Host = host
			}
			b, err := New(cfg, Options{})
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("New: %v, want an error with %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			caps := b.Capabilities()
			if caps.Block != c.block || !caps.Mount || !caps.AttachRequired || !slices.Equal(caps.FilesystemTypes, c.fs) || (caps.FilesystemTypes == nil) != (c.fs == nil) {
				t.Errorf("capabilities %+v", caps)
			}
			if caps.Supports(backends.MultiNodeMultiWriter, false) != c.multi {
				t.Errorf("multi-node mount support = %t, want %t", !c.multi, c.multi)
			}
			_, snaps := b.(backends.Snapshotter)
			if caps.Clone != c.block || snaps != c.block {
				t.Errorf("clone %t, snapshots %t: want both only for the cinder block service", caps.Clone, snaps)
			}
		})
	}
}

// TestHosts reaches the server over each kind of host and with a token.
func TestHosts(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("jwt-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongToken := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrongToken, []byte("other"), 0o600); err != nil {
		t.Fatal(err)
	}
	svc := []libstoragesim.Service{{Name: "vfs", Driver: "vfs", Type: libstoragesim.TypeObject, VFSRoot: t.TempDir(), NextDevice: libstoragesim.NextDevice{Ignore: true}}}
	tlsSim, tlsHost := newSim(t, libstoragesim.Options{Services: svc, TLS: true})
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, tlsSim.Certificate(), 0o600); err != nil {
		t.Fatal(err)
	}
	_, unixHost := newSim(t, libstoragesim.Options{Services: svc, Unix: filepath.Join(dir, "ls.sock")})
	_, tokenHost := newSim(t, libstoragesim.Options{Services: svc, Token: "jwt-value"})
	for _, c := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"https with CA", Config{Host: tlsHost, TLS: &TLS{CA: ca}}, ""},
		{"https insecure", Config{Host: tlsHost, TLS: &TLS{InsecureSkipVerify: true}}, ""},
		{"https unknown CA", Config{Host: tlsHost}, "certificate"},
		{"unix", Config{Host: unixHost}, ""},
		{"token", Config{Host: tokenHost, Token: tokenFile}, ""},
		{"wrong token", Config{Host: tokenHost, Token: wrongToken}, "401"},
		{"no token", Config{Host: tokenHost}, "401"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Name, cfg.Service, cfg.VFSRoot, cfg.Timeout = "ls", "vfs", "/srv", "5s"
			_, err := New(cfg, Options{})
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("New: %v, want %q", err, c.err)
			}
			if err != nil && strings.Contains(err.Error(), "jwt-value") {
				t.Errorf("the token leaked into an error: %v", err)
			}
		})
	}
}

// TestCreateBody: parameters, under their libStorage and dvdi names, become
// the fields the server's schema knows (it answers anything else with 500),
// and the plugin's own facts travel in opts.
func TestCreateBody(t *testing.T) {
	sim, host := newSim(t, libstoragesim.Options{})
	b := newBackend(t, Config{Host: host, Service: "cinder"}, Options{NodeID: "n1"})
	ctx := context.Background()
	v, err := b.Create(ctx, backends.CreateRequest{Name: "db", RequiredBytes: 3<<30 + 1, Block: true, Modes: []backends.AccessMode{backends.SingleNodeWriter},
		Parameters: map[string]string{"volumetype": "ssd", "iops": "300", "availabilityzone": "z1", "encrypted": "true", "encryptionkey": "k-secret", "fsType": "xfs"}})
	if err != nil {
		t.Fatal(err)
	}
	if v.CapacityBytes != 4<<30 || !v.Block || v.Zone != "z1" || !slices.Equal(v.Modes, []backends.AccessMode{backends.SingleNodeWriter}) {
		t.Errorf("volume %+v", v)
	}
	got := sim.Volumes("cinder")[0]
	if got.Size != 4 || got.Type != "ssd" || got.IOPS != 300 || got.AvailabilityZone != "z1" || !got.Encrypted {
		t.Errorf("server volume %+v", got)
	}
	for k, val := range got.Fields {
		if strings.Contains(val, "k-secret") {
			t.Errorf("the encryption key was stored in field %s", k)
		}
	}
	if got.Fields[FieldParamPrefix+"fsType"] != "xfs" {
		t.Errorf("fields %v", got.Fields)
	}
	for _, c := range []struct {
		req  backends.CreateRequest
		want error
	}{
		{backends.CreateRequest{Name: "db", RequiredBytes: 5 << 30}, backends.ErrAlreadyExists},
		{backends.CreateRequest{Name: "db", RequiredBytes: 1 << 30, Block: false}, backends.ErrAlreadyExists},
		{backends.CreateRequest{Name: "x", RequiredBytes: 1<<30 + 1, LimitBytes: 3 << 29}, backends.ErrOutOfRange},
		{backends.CreateRequest{Name: "x", Parameters: map[string]string{"iops": "many"}}, backends.ErrInvalid},
		{backends.CreateRequest{Name: "x", Parameters: map[string]string{"type": "a", "volumetype": "b"}}, backends.ErrInvalid},
		{backends.CreateRequest{Name: "x", SourceVolume: "cinder-000"}, backends.ErrUnsupported},
	} {
		if _, err := b.Create(ctx, c.req); !errors.Is(err, c.want) {
			t.Errorf("create %+v: %v, want %v", c.req, err, c.want)
		}
	}
	if n := len(sim.Volumes("cinder")); n != 1 {
		t.Errorf("server holds %d volumes", n)
	}
}

// TestInstanceIDs: the header format and how each driver's node names
// itself.
func TestInstanceIDs(t *testing.T) {
	_, host := newSim(t, libstoragesim.Options{})
	ec2, err := ec2sim.New(ec2sim.Options{Region: "us-east-1", Instances: []ec2sim.Instance{{ID: "i-0123456789abcdef0", AvailabilityZone: "us-east-1b"}}})
	if err != nil {
		t.Fatal(err)
	}
	ec2.Start()
	defer ec2.Close()
	host1, _ := os.Hostname()
	for _, c := range []struct {
		service, instanceID, want string
	}{
		{"cinder", "", "cinder:cinder=n1"},
		{"cinder", "server-uuid", "cinder:cinder=server-uuid"},
		{"vfs", "", "vfs:vfs=" + host1},
		{"ebs", "", "ebs:ebs=i-0123456789abcdef0,availabilityZone=us-east-1b&region=us-east-1"},
	} {
		b := newBackend(t, Config{Host: host, Service: c.service, InstanceID: c.instanceID, VFSRoot: "/srv"}, Options{NodeID: "n1", IMDSEndpoint: strings.TrimSuffix(ec2.IMDSURL("i-0123456789abcdef0"), "/")})
		in, err := b.selfInstance(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", c.service, err)
		}
		if got := b.header(in); got != c.want {
			t.Errorf("%s: header %q, want %q", c.service, got, c.want)
		}
	}
	b := newBackend(t, Config{Host: host, Service: "cinder", Nodes: map[string]string{"n2": "i-2"}}, Options{NodeID: "n1"})
	for node, want := range map[string]error{"n3": backends.ErrNodeNotFound, "a,b": backends.ErrInvalid, "": backends.ErrInvalid} {
		if _, err := b.instanceOf(context.Background(), node); !errors.Is(err, want) {
			t.Errorf("instanceOf(%q): %v, want %v", node, err, want)
		}
	}
	if in, err := b.instanceOf(context.Background(), "n2"); err != nil || in.id != "i-2" {
		t.Errorf("instanceOf(n2) = %v, %v", in, err)
	}
}

// TestDeviceRules: where each driver's device is looked for, and that a
// path that is not a block device is never handed to the node.
func TestDeviceRules(t *testing.T) {
	_, host := newSim(t, libstoragesim.Options{})
	dir := t.TempDir()
	byID, rbd, dev := filepath.Join(dir, "by-id"), filepath.Join(dir, "rbd"), filepath.Join(dir, "dev")
	for _, d := range []string{byID, rbd, dev} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(byID, "emc-vol-sys1-abcd"), nil, 0o600)
	os.WriteFile(filepath.Join(dev, "xvdf"), nil, 0o600)
	b := newBackend(t, Config{Host: host, Service: "cinder", ByIDDir: byID, RBDDir: rbd, DevDir: dev}, Options{NodeID: "n1"})
	b.self = &instance{id: "n1"}
	att := func(devName string) []wireAttachment {
		var a wireAttachment
		a.InstanceID.ID, a.DeviceName = "n1", devName
		return []wireAttachment{a}
	}
	for _, c := range []struct {
		driver string
		vol    wireVolume
		want   string
	}{
		{"cinder", wireVolume{ID: "0123456789abcdef0123456789"}, filepath.Join(byID, "virtio-0123456789abcdef0123")},
		{"scaleio", wireVolume{ID: "abcd"}, filepath.Join(byID, "emc-vol-sys1-abcd")},
		{"rbd", wireVolume{ID: "pool.image"}, filepath.Join(rbd, "pool", "image")},
		{"gcepd", wireVolume{ID: "123", Name: "disk1"}, filepath.Join(byID, "google-disk1")},
		{"dobs", wireVolume{ID: "123", Name: "vol1"}, filepath.Join(byID, "scsi-0DO_Volume_vol1")},
		{"ebs", wireVolume{ID: "vol-0abc"}, filepath.Join(byID, "nvme-Amazon_Elastic_Block_Store_vol0abc")},
		{"ebs", wireVolume{ID: "vol-0abc", Attachments: att("/dev/sdf")}, filepath.Join(dev, "xvdf")},
		{"virtualbox", wireVolume{ID: "x"}, ""},
	} {
		b.driver = c.driver
		got, err := b.devicePath(&c.vol)
		if c.want == "" {
			if !errors.Is(err, backends.ErrUnsupported) {
				t.Errorf("%s: %q, %v; want no rule", c.driver, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s %s: %q, %v; want %s", c.driver, c.vol.ID, got, err, c.want)
		}
	}
	// The scaleio link exists but is a plain file: not a block device.
	if _, err := blockDevice(filepath.Join(byID, "emc-vol-sys1-abcd")); err == nil || !strings.Contains(err.Error(), "not a block device") {
		t.Errorf("a plain file passed as a block device: %v", err)
	}
}

// TestNASConnect: a NAS service's node mounts the NFS export the server
// names for this node's attachment.
func TestNASConnect(t *testing.T) {
	_, host := newSim(t, libstoragesim.Options{})
	b := newBackend(t, Config{Host: host, Service: "efs"}, Options{NodeID: "n1"})
	ctx := context.Background()
	v, err := b.Create(ctx, backends.CreateRequest{Name: "share", Modes: []backends.AccessMode{backends.MultiNodeMultiWriter}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Connect(ctx, v.ID, nil, false); !errors.Is(err, backends.ErrUnavailable) {
		t.Errorf("connect before attach: %v", err)
	}
	if _, err := b.Attach(ctx, v.ID, backends.AttachRequest{Node: "n1", Mode: backends.MultiNodeMultiWriter}); err != nil {
		t.Fatal(err)
	}
	dev, err := b.Connect(ctx, v.ID, nil, false)
	if err != nil || dev.Path != "fs-1.efs.example:/exports/"+v.ID || dev.FSType != "nfs" {
		t.Errorf("connect: %+v, %v", dev, err)
	}
}

// TestTaskPolling: a task answered 408 and then failing on the server
// gives the task's error, not a timeout.
func TestTaskPolling(t *testing.T) {
	timeouts := make(chan int, 4)
	sim, host := newSim(t, libstoragesim.Options{TaskTimeout: 20 * time.Millisecond, OnTimeout: func(string, int) { timeouts <- 1 }})
	b := newBackend(t, Config{Host: host, Service: "cinder", Nodes: map[string]string{"n2": "i-2"}}, Options{NodeID: "n1", PollInterval: 5 * time.Millisecond})
	ctx := context.Background()
	v, err := b.Create(ctx, backends.CreateRequest{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	// An attach elsewhere that the plugin did not record (another
	// client's), so the server itself refuses the plugin's attach.
	req, _ := http.NewRequest(http.MethodPost, "http://"+strings.TrimPrefix(host, "tcp://")+"/volumes/cinder/"+v.ID+"?attach", strings.NewReader("{}"))
	req.Header.Set(HeaderInstanceID, "cinder=other")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	release := sim.Hold("cinder")
	done := make(chan error, 1)
	go func() {
		_, err := b.c.call(ctx, request{method: http.MethodPost, path: "/volumes/cinder/" + v.ID, query: "attach", instanceID: "cinder=i-2", body: map[string]any{}}, nil)
		done <- err
	}()
	<-timeouts
	release()
	err = <-done
	var ae *apiError
	if !errors.As(err, &ae) || !strings.Contains(ae.Message, "already attached") {
		t.Errorf("attach refused by the server after a 408: %v", err)
	}
}

// TestNextDeviceName: an attach names a device of the driver's rule that
// neither this node's local devices nor the server's attachments on the
// target instance use, and tells the server this node's local devices.
func TestNextDeviceName(t *testing.T) {
	sim, host := newSim(t, libstoragesim.Options{})
	dev := t.TempDir()
	for _, n := range []string{"vda", "vdb", "sda"} {
		if err := os.WriteFile(filepath.Join(dev, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b := newBackend(t, Config{Host: host, Service: "cinder", DevDir: dev, Nodes: map[string]string{"n2": "i-2"}}, Options{NodeID: "n1"})
	ctx := context.Background()
	var ids []string
	for _, n := range []string{"a", "b", "c"} {
		v, err := b.Create(ctx, backends.CreateRequest{Name: n})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	for _, c := range []struct {
		id, node, want string
	}{
		{ids[0], "n1", "/dev/vdc"}, // vda and vdb are local devices
		{ids[1], "n1", "/dev/vdd"}, // vdc is attached here
		{ids[2], "n2", "/dev/vdb"}, // another node: only the server's view counts, a is the root disk
	} {
		pc, err := b.Attach(ctx, c.id, backends.AttachRequest{Node: c.node, Mode: backends.SingleNodeWriter})
		if err != nil {
			t.Fatal(err)
		}
		if pc[PublishDeviceName] != c.want {
			t.Errorf("attach %s to %s: device %q, want %s", c.id, c.node, pc[PublishDeviceName], c.want)
		}
	}
	var local string
	for _, call := range sim.Calls() {
		if strings.Contains(call.Query, "attach") && strings.HasSuffix(call.InstanceID, "=n1") {
			local = call.LocalDevices
		}
	}
	if local != "cinder=/dev/vda::,/dev/vdb::" {
		t.Errorf("Libstorage-Localdevices %q", local)
	}
}

// TestConflictMovesOnlyByHand: libStorage has no proof that a holder
// stopped writing, so a second node's attach is refused with a message
// that says the volume moves only by hand and names the command, and the
// command in it frees the volume.
func TestConflictMovesOnlyByHand(t *testing.T) {
	_, host := newSim(t, libstoragesim.Options{})
	b := newBackend(t, Config{Host: host, Service: "cinder", DevDir: t.TempDir(), Nodes: map[string]string{"n2": "i-2", "n3": "i-3"}}, Options{NodeID: "n1"})
	ctx := context.Background()
	v, err := b.Create(ctx, backends.CreateRequest{Name: "held", Modes: []backends.AccessMode{backends.SingleNodeWriter}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Attach(ctx, v.ID, backends.AttachRequest{Node: "n2", Mode: backends.SingleNodeWriter}); err != nil {
		t.Fatal(err)
	}
	_, err = b.Attach(ctx, v.ID, backends.AttachRequest{Node: "n3", Mode: backends.SingleNodeWriter})
	if !errors.Is(err, backends.ErrConflict) {
		t.Fatalf("second node: %v, want ErrConflict", err)
	}
	for _, want := range []string{"moves only by hand", "csi-libstorage force-detach --volume ls/" + v.ID + " --node n2 --yes-the-node-is-dead"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if err := b.ForceDetach(ctx, v.ID, "n2"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Attach(ctx, v.ID, backends.AttachRequest{Node: "n3", Mode: backends.SingleNodeWriter}); err != nil {
		t.Fatalf("attach after the operator's force-detach: %v", err)
	}
}
