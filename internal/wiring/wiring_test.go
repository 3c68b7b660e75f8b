package wiring_test

import (
	"context"
	"io"
	"net/http"
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
	img := filepath.Join(pool, "volumes", native, "disk.img")
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
