// Package chaos_test drives the real plugin server with many goroutines
// issuing duplicate and conflicting calls on a few volumes, and checks that
// the plugin stays consistent: no panic, no ABORTED, nothing leaked, data
// and filesystems intact.
package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends/file"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

type env struct {
	stop func()
	dir  string
	pool string
	ctl  csi.ControllerClient
	node csi.NodeClient
}

var snw = &csi.VolumeCapability{
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
}

func start(t *testing.T) *env {
	harness.RequireRoot(t)
	dir := harness.TempDir(t)
	e := &env{dir: dir, pool: filepath.Join(dir, "pool")}
	sock := filepath.Join(dir, "csi.sock")
	ctx, cancel := context.WithCancel(context.Background())
	p, err := wiring.New(ctx, wiring.Options{Endpoint: "unix://" + sock, NodeID: "n1", Mode: wiring.ModeAll, Config: config.Default(e.pool), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	t.Cleanup(e.stop)
	e.ctl, e.node = csi.NewControllerClient(conn), csi.NewNodeClient(conn)
	return e
}

// TestConcurrentLifecycleChaos interleaves every lifecycle call on three
// volumes from 24 goroutines.
func TestConcurrentLifecycleChaos(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	e := start(t)
	ctx := context.Background()
	other, err := file.New(file.Config{Name: "local", Dir: e.pool}, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.RegisterNode(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 0; i < 3; i++ {
		r, err := e.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: fmt.Sprintf("chaos-%d", i), VolumeCapabilities: []*csi.VolumeCapability{snw}, CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.GetVolume().GetVolumeId())
	}
	staging := func(v int) string { return filepath.Join(e.dir, fmt.Sprintf("v%d", v), "staging") }
	target := func(v, n int) string { return filepath.Join(e.dir, fmt.Sprintf("v%d", v), fmt.Sprintf("target%d", n)) }

	type op func(ctx context.Context, v int, r *rand.Rand) error
	ops := map[string]op{
		"ControllerPublish": func(ctx context.Context, v int, _ *rand.Rand) error {
			_, err := e.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: ids[v], NodeId: "n1", VolumeCapability: snw})
			return err
		},
		"ControllerUnpublish": func(ctx context.Context, v int, _ *rand.Rand) error {
			_, err := e.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: ids[v], NodeId: "n1"})
			return err
		},
		"NodeStage": func(ctx context.Context, v int, _ *rand.Rand) error {
			_, err := e.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: ids[v], StagingTargetPath: staging(v), VolumeCapability: snw})
			return err
		},
		"NodeUnstage": func(ctx context.Context, v int, _ *rand.Rand) error {
			_, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: ids[v], StagingTargetPath: staging(v)})
			return err
		},
		"NodePublish": func(ctx context.Context, v int, r *rand.Rand) error {
			_, err := e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: ids[v], StagingTargetPath: staging(v), TargetPath: target(v, r.IntN(2)), VolumeCapability: snw})
			return err
		},
		"NodeUnpublish": func(ctx context.Context, v int, r *rand.Rand) error {
			_, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: ids[v], TargetPath: target(v, r.IntN(2))})
			return err
		},
		"CreateVolume again": func(ctx context.Context, v int, _ *rand.Rand) error {
			r, err := e.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: fmt.Sprintf("chaos-%d", v), VolumeCapabilities: []*csi.VolumeCapability{snw}, CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}})
			if err == nil && r.GetVolume().GetVolumeId() != ids[v] {
				return fmt.Errorf("repeated create of chaos-%d gave %s, not %s", v, r.GetVolume().GetVolumeId(), ids[v])
			}
			return err
		},
		"ControllerPublish n2": func(ctx context.Context, v int, _ *rand.Rand) error {
			_, err := e.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: ids[v], NodeId: "n2", VolumeCapability: snw})
			if err == nil {
				// The second node got it: n1 held nothing at that moment.
				// Give it back so the node service can go on.
				_, err = e.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: ids[v], NodeId: "n2"})
			}
			return err
		},
	}
	names := make([]string, 0, len(ops))
	for n := range ops {
		names = append(names, n)
	}
	var mu sync.Mutex
	codesSeen := map[string]map[codes.Code]int{}
	var wg sync.WaitGroup
	for g := 0; g < 24; g++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, seed*7+1))
			for i := 0; i < 40; i++ {
				name := names[r.IntN(len(names))]
				v := r.IntN(len(ids))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := ops[name](ctx, v, r)
				cancel()
				code := status.Code(err)
				mu.Lock()
				if codesSeen[name] == nil {
					codesSeen[name] = map[codes.Code]int{}
				}
				codesSeen[name][code]++
				mu.Unlock()
				switch code {
				case codes.OK, codes.FailedPrecondition, codes.DeadlineExceeded:
				default:
					t.Errorf("%s on %s: %v", name, ids[v], err)
				}
			}
		}(uint64(g + 1))
	}
	wg.Wait()
	for name, m := range codesSeen {
		t.Logf("%-20s %v", name, m)
		if m[codes.Aborted] > 0 {
			t.Errorf("%s answered ABORTED", name)
		}
	}

	// Tear everything down the way a CO would and check nothing is left.
	for v := range ids {
		for n := 0; n < 2; n++ {
			if _, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: ids[v], TargetPath: target(v, n)}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: ids[v], StagingTargetPath: staging(v)}); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"n1", "n2"} {
			if _, err := e.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: ids[v], NodeId: n}); err != nil {
				t.Fatal(err)
			}
		}
	}
	harness.AssertNoLeaks(t, harness.LeakCheck{Dir: e.dir})
	if t.Failed() {
		t.FailNow()
	}
	// Each volume holds exactly the filesystem its first stage made: a
	// clean ext4 (fsck finds nothing to fix) formatted once.
	for _, id := range ids {
		native := id[strings.Index(id, "/")+1:]
		metaPath, img := file.PoolPaths(e.pool, native)
		if _, err := os.Stat(img); err == nil {
			// An image is made by the first stage, which may have
			// failed before mkfs: then it is still empty.
			if out, err := exec.Command("e2fsck", "-n", "-f", img).CombinedOutput(); err != nil && !strings.Contains(string(out), "Bad magic number") {
				t.Errorf("fsck of %s: %v\n%s", id, err, out)
			}
		}
		meta, _ := os.ReadFile(metaPath)
		if strings.Contains(string(meta), `"attachments"`) {
			t.Errorf("volume %s still attached: %s", id, meta)
		}
	}
	for _, id := range ids {
		if _, err := e.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Fatal(err)
		}
	}
	// Once the server stops, every goroutine it and the calls started is
	// gone.
	e.stop()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after the server stopped, %d before it started:\n%s", n, goroutines, buf[:runtime.Stack(buf, true)])
	}
}

// TestCreateDeleteSameNameChaos races creates and deletes of a few names:
// whatever interleaving happens, a name ends with at most one volume, a
// repeated create while it exists returns the same id, and after a final
// delete of everything the pool holds no image, metadata or reservation.
func TestCreateDeleteSameNameChaos(t *testing.T) {
	e := start(t)
	createDeleteSameName(t, []csi.ControllerClient{e.ctl}, 16<<20)
	harness.AssertNoLeaks(t, harness.LeakCheck{Empty: []string{filepath.Join(e.pool, "vols"), filepath.Join(e.pool, "volumes"), filepath.Join(e.pool, "names")}})
}

// createDeleteSameName races creates and deletes of three names from 16
// clients, spread over the plugins in ctls. No name may ever have two live
// volumes; at the end every volume is deleted through the plugin.
func createDeleteSameName(t *testing.T, ctls []csi.ControllerClient, size int64) {
	t.Helper()
	ctl := ctls[0]
	ctx := context.Background()
	names := []string{"a", "b", "c"}
	var mu sync.Mutex
	seen := map[string]map[string]bool{} // name → ids handed out
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, seed^0x9e3779b9))
			for i := 0; i < 30; i++ {
				name := names[r.IntN(len(names))]
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if r.IntN(2) == 0 {
					resp, err := ctls[seed%uint64(len(ctls))].CreateVolume(cctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{snw}, CapacityRange: &csi.CapacityRange{RequiredBytes: size}})
					if err != nil {
						t.Errorf("create %s: %v", name, err)
					} else {
						mu.Lock()
						if seen[name] == nil {
							seen[name] = map[string]bool{}
						}
						seen[name][resp.GetVolume().GetVolumeId()] = true
						mu.Unlock()
					}
				} else {
					mu.Lock()
					var ids []string
					for id := range seen[name] {
						ids = append(ids, id)
					}
					mu.Unlock()
					for _, id := range ids {
						if _, err := ctls[(seed+1)%uint64(len(ctls))].DeleteVolume(cctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
							t.Errorf("delete %s: %v", id, err)
						}
					}
				}
				cancel()
			}
		}(uint64(g + 100))
	}
	wg.Wait()
	list, err := ctl.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	perName := map[string]int{}
	for _, en := range list.GetEntries() {
		id := en.GetVolume().GetVolumeId()
		for name, ids := range seen {
			if ids[id] {
				perName[name]++
			}
		}
	}
	for name, n := range perName {
		if n > 1 {
			t.Errorf("name %s has %d live volumes", name, n)
		}
	}
	for _, en := range list.GetEntries() {
		if _, err := ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: en.GetVolume().GetVolumeId()}); err != nil {
			t.Fatal(err)
		}
	}
}
