// Package libstorage runs csi-sanity, and the scenarios REX-Ray users hit,
// against the real plugin server configured with libStorage backends that
// talk to the in-process libStorage test server (test/sim/libstorage). The
// block service is a "cinder" service whose attach makes a loop device
// appear behind /dev/disk/by-id/virtio-<first 20 chars of the id>, so
// staging formats and mounts real devices after the driver rule's identity
// check; the vfs service keeps its volumes as directories that the node
// bind-mounts.
package libstorage

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/backends/libstorage"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	libstoragesim "github.com/csi-libstorage/csi-libstorage/test/sim/libstorage"
)

const (
	nodeID = "node-a"
	// otherNode is a second node the configuration maps to an instance.
	otherNode     = "node-b"
	otherInstance = "node-b-instance"
)

// env is one test server and one plugin (mode all) in front of it.
type env struct {
	dir     string
	sock    string
	sim     *libstoragesim.Server
	loops   *libstoragesim.LoopDevices
	vfsRoot string
	plugin  *wiring.Plugin
	conn    *grpc.ClientConn
	ctl     csi.ControllerClient
	node    csi.NodeClient
}

type envOptions struct {
	taskTimeout time.Duration
	onTimeout   func(string, int)
	backendTO   string
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	harness.RequireRoot(t)
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Fatalf("loop devices are needed: %v", err)
	}
	e := &env{dir: harness.TempDir(t)}
	e.vfsRoot = filepath.Join(e.dir, "vfs")
	e.loops = &libstoragesim.LoopDevices{ImageDir: filepath.Join(e.dir, "images"), ByIDDir: filepath.Join(e.dir, "by-id")}
	sim, err := libstoragesim.New(libstoragesim.Options{
		TaskTimeout: o.taskTimeout,
		OnTimeout:   o.onTimeout,
		Services: []libstoragesim.Service{
			{Name: "cinder", Driver: "cinder", Type: libstoragesim.TypeBlock, SingleAttach: true,
				NextDevice: libstoragesim.NextDevice{Prefix: "vd", Pattern: "[a-z]"},
				Devices:    e.loops, IDFormat: "%08x-1111-2222-3333-444455556666"},
			{Name: "vfs", Driver: "vfs", Type: libstoragesim.TypeObject, VFSRoot: e.vfsRoot,
				NextDevice: libstoragesim.NextDevice{Ignore: true}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.sim = sim
	host, err := sim.Start()
	if err != nil {
		t.Fatal(err)
	}
	timeout := o.backendTO
	if timeout == "" {
		timeout = "20s"
	}
	yaml := fmt.Sprintf(`backends:
  - name: rexray
    type: libstorage
    host: %s
    service: cinder
    timeout: %s
    byIDDir: %s
    devDir: %s
    stateDir: %s
    attachTimeout: 10s
    nodes: {node-b: node-b-instance}
  - name: vfs
    type: libstorage
    host: %s
    service: vfs
    vfsRoot: %s
    stateDir: %s
    nodes: {node-b: node-b-instance}
`, host, timeout, e.loops.LinkDir(nodeID), filepath.Join(e.dir, "dev"), filepath.Join(e.dir, "state"),
		host, e.vfsRoot, filepath.Join(e.dir, "state-vfs"))
	cfgPath := filepath.Join(e.dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	factories := map[string]wiring.Factory{libstorage.Type: func(en config.Entry, bo wiring.BackendOptions) (backends.Backend, error) {
		var c libstorage.Config
		if err := en.Decode(&c); err != nil {
			return nil, err
		}
		c.Name = en.Name
		return libstorage.New(c, libstorage.Options{NodeID: bo.NodeID, Logger: bo.Logger, PollInterval: 10 * time.Millisecond})
	}}
	e.sock = filepath.Join(e.dir, "csi.sock")
	ctx, cancel := context.WithCancel(context.Background())
	p, err := wiring.New(ctx, wiring.Options{Endpoint: "unix://" + e.sock, NodeID: nodeID, Mode: wiring.ModeAll, Config: cfg, Logger: zap.NewNop(), Factories: factories})
	if err != nil {
		cancel()
		sim.Close()
		t.Fatal(err)
	}
	e.plugin = p
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx) }()
	conn, err := grpc.NewClient("unix://"+e.sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", e.sock)
		}))
	if err != nil {
		t.Fatal(err)
	}
	e.conn, e.ctl, e.node = conn, csi.NewControllerClient(conn), csi.NewNodeClient(conn)
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		for _, m := range harness.MountsUnder(t, e.dir) {
			t.Errorf("mount left behind at %s", m)
		}
		sim.Close()
		if err := e.loops.Close(); err != nil {
			t.Errorf("close loop devices: %v", err)
		}
	})
	return e
}

// assertNoVolumes fails when the test server still holds volumes in svc.
func (e *env) assertNoVolumes(t *testing.T, svc string) {
	t.Helper()
	if left := e.sim.Volumes(svc); len(left) > 0 {
		t.Errorf("volumes left in %s: %+v", svc, left)
	}
	if devs, err := e.loops.Leaked(); err == nil && len(devs) > 0 {
		t.Errorf("loop devices left: %v", devs)
	}
	if imgs, _ := filepath.Glob(filepath.Join(e.loops.ImageDir, "*")); len(imgs) > 0 {
		t.Errorf("images of deleted volumes or snapshots left: %v", imgs)
	}
}

type libstoragesimVolume = libstoragesim.Volume

func simVolumes(e *env, svc string) []libstoragesim.Volume { return e.sim.Volumes(svc) }
