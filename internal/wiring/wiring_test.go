package wiring_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/backends/file"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	"github.com/csi-libstorage/csi-libstorage/test/harness/inproc"
)

// TestMetricsOfAPlugin runs a plugin with metrics on a real file pool: a
// volume staged (formatted) and a volume whose image already holds a
// foreign filesystem (the format refused) show in the plugin's own
// figures, and the optional abilities of the backend (expand, snapshots)
// are still advertised through the timing decorator.
func TestMetricsOfAPlugin(t *testing.T) {
	harness.RequireRoot(t)
	dir := harness.TempDir(t)
	pool := filepath.Join(dir, "pool")
	sock := filepath.Join(dir, "csi.sock")
	ctx := context.Background()
	p := inproc.Start(t, wiring.Options{
		Endpoint: "unix://" + sock, NodeID: "n1", Mode: wiring.ModeAll, Config: config.Default(pool),
		Logger: zap.NewNop(), MetricsAddress: "127.0.0.1:0", ShutdownGrace: 5 * time.Second,
	})
	conn := inproc.Dial(t, sock)
	cc, nc := csi.NewControllerClient(conn), csi.NewNodeClient(conn)

	caps, err := cc.ControllerGetCapabilities(ctx, &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var advertised []string
	for _, c := range caps.GetCapabilities() {
		advertised = append(advertised, c.GetRpc().GetType().String())
	}
	for _, want := range []string{"EXPAND_VOLUME", "CREATE_DELETE_SNAPSHOT"} {
		if !strings.Contains(strings.Join(advertised, " "), want) {
			t.Errorf("%s not advertised through the metrics decorator: %v", want, advertised)
		}
	}

	mount := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	create := func(name string) string {
		r, err := cc.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{mount},
			CapacityRange: &csi.CapacityRange{RequiredBytes: 32 << 20}})
		if err != nil {
			t.Fatalf("CreateVolume %s: %v", name, err)
		}
		return r.GetVolume().GetVolumeId()
	}
	good, foreign := create("good"), create("foreign")
	native := strings.TrimPrefix(foreign, "local/")
	// A filesystem the plugin did not make, written where the volume's
	// image will be: its first stage must find it and refuse.
	_, img := file.PoolPaths(pool, native)
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext2", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext2 %s: %v: %s", img, err, out)
	}

	staging := filepath.Join(dir, "staging-good")
	if _, err := nc.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: good, StagingTargetPath: staging, VolumeCapability: mount}); err != nil {
		t.Fatalf("NodeStageVolume: %v", err)
	}
	defer func() {
		if _, err := nc.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: good, StagingTargetPath: staging}); err != nil {
			t.Errorf("NodeUnstageVolume: %v", err)
		}
	}()
	_, err = nc.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: foreign, StagingTargetPath: filepath.Join(dir, "staging-foreign"), VolumeCapability: mount})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("staging a volume that holds ext2 as ext4: %v, want FailedPrecondition", err)
	}
	nc.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: foreign, StagingTargetPath: filepath.Join(dir, "staging-foreign")})

	resp, err := http.Get("http://" + p.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	exp := string(body)
	for _, want := range []string{
		`csi_libstorage_formats_total{backend="local",result="performed"} 1`,
		`csi_libstorage_formats_total{backend="local",result="refused"} 1`,
		`csi_libstorage_volumes{backend="local",state="created"} 2`,
		`csi_libstorage_volumes{backend="local",state="staged"} 1`,
		`csi_libstorage_backend_call_duration_seconds_count{backend="local",operation="Connect"} 2`,
		`grpc_server_handled_total{grpc_code="FailedPrecondition",grpc_method="NodeStageVolume",grpc_service="csi.v1.Node",grpc_type="unary"} 1`,
	} {
		if !strings.Contains(exp, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, leak := range []string{native, strings.TrimPrefix(good, "local/"), dir} {
		if strings.Contains(exp, leak) {
			t.Errorf("metrics carry %q", leak)
		}
	}
	if _, ok := p.Set.Default().(backends.Expander); !ok {
		t.Error("the plugin's Set lost the file backend's Expander")
	}
}

// TestFileLeaseConfig: the lease key of a file backend as the
// configuration file gives it. A node service holds a lease file on the
// pool with a lease, none with lease: 0 (even if an earlier run left one),
// and a lease too short to mean anything stops the plugin at start.
func TestFileLeaseConfig(t *testing.T) {
	harness.RequireRoot(t)
	tests := []struct {
		name, lease string
		want        bool   // a lease file
		err         string // from New
	}{
		{"default", "", true, ""},
		{"two seconds", "lease: 2s", true, ""},
		{"off", "lease: 0", false, ""},
		{"too short", "lease: 1ms", false, "lease"},
		{"not a duration", "lease: soon", false, "lease"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := harness.TempDir(t)
			pool := filepath.Join(dir, "pool")
			leaseFile := filepath.Join(pool, "leases", "n1.lease")
			// A lease file left by an earlier run with leases on.
			if err := os.MkdirAll(filepath.Dir(leaseFile), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(leaseFile, []byte("15s\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfgPath := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(cfgPath, []byte("backends:\n  - name: local\n    type: file\n    dir: "+pool+"\n    "+tt.lease+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p, err := wiring.New(ctx, wiring.Options{Endpoint: "unix://" + filepath.Join(dir, "csi.sock"), NodeID: "n1", Mode: wiring.ModeNode, Config: cfg, Logger: zap.NewNop()})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("New: %v, want an error about %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- p.Serve(ctx) }()
			_, statErr := os.Stat(leaseFile)
			if got := statErr == nil; got != tt.want {
				t.Errorf("lease file present: %t, want %t", got, tt.want)
			}
			cancel()
			if err := <-served; err != nil {
				t.Fatal(err)
			}
			// A node service that stops gives its lease up.
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, err := os.Stat(leaseFile); os.IsNotExist(err) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the lease file is still there after the node service stopped")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
