package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends/file"
	"github.com/csi-libstorage/csi-libstorage/internal/loop"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// TestRandomLifecycleUndo races 32 clients making random node calls
// (stage, publish read-write or read-only, unpublish, unstage) with random
// staging paths (two per volume) and targets (three per volume) on two
// mount volumes and one block volume, without ControllerPublish (as the Mesos
// isolator calls). Whatever state the race leaves, the plain undo (unpublish
// every target, unstage every staging path) must leave nothing behind: no
// mount, no loop device, and ControllerUnpublish succeeds. Issue 9, item 6:
// a volume staged at two staging paths could never be unstaged.
func TestRandomLifecycleUndo(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	block := &csi.VolumeCapability{AccessMode: snw.AccessMode, AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}}
	caps := []*csi.VolumeCapability{snw, snw, block}
	var ids []string
	for i, c := range caps {
		r, err := e.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: fmt.Sprintf("race-%d", i), VolumeCapabilities: []*csi.VolumeCapability{c}, CapacityRange: &csi.CapacityRange{RequiredBytes: 32 << 20}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.GetVolume().GetVolumeId())
	}
	// Paths are the volume's own (a CO never gives two volumes one path;
	// calls on different volumes run in parallel).
	stagings, targets := make([][]string, len(ids)), make([][]string, len(ids))
	for v := range ids {
		for i := 0; i < 2; i++ {
			stagings[v] = append(stagings[v], filepath.Join(e.dir, fmt.Sprintf("v%d", v), fmt.Sprintf("st ag%d", i)))
		}
		for i := 0; i < 3; i++ {
			targets[v] = append(targets[v], filepath.Join(e.dir, fmt.Sprintf("v%d", v), "pods", fmt.Sprintf("t%d", i)))
		}
	}

	var mu sync.Mutex
	seen := map[string]map[codes.Code]int{}
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, seed*31+7))
			for i := 0; i < 25; i++ {
				v := r.IntN(len(ids))
				s, tg := stagings[v][r.IntN(2)], targets[v][r.IntN(3)]
				cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				var name string
				var err error
				switch r.IntN(4) {
				case 0:
					name = "NodeStage"
					_, err = e.node.NodeStageVolume(cctx, &csi.NodeStageVolumeRequest{VolumeId: ids[v], StagingTargetPath: s, VolumeCapability: caps[v]})
				case 1:
					name = "NodePublish"
					_, err = e.node.NodePublishVolume(cctx, &csi.NodePublishVolumeRequest{VolumeId: ids[v], StagingTargetPath: s, TargetPath: tg, VolumeCapability: caps[v], Readonly: r.IntN(2) == 0})
				case 2:
					name = "NodeUnpublish"
					_, err = e.node.NodeUnpublishVolume(cctx, &csi.NodeUnpublishVolumeRequest{VolumeId: ids[v], TargetPath: tg})
				case 3:
					name = "NodeUnstage"
					_, err = e.node.NodeUnstageVolume(cctx, &csi.NodeUnstageVolumeRequest{VolumeId: ids[v], StagingTargetPath: s})
				}
				cancel()
				code := status.Code(err)
				mu.Lock()
				if seen[name] == nil {
					seen[name] = map[codes.Code]int{}
				}
				seen[name][code]++
				mu.Unlock()
				switch code {
				case codes.OK, codes.FailedPrecondition, codes.AlreadyExists, codes.DeadlineExceeded:
				default:
					t.Errorf("%s of %s (staging %s, target %s): %v", name, ids[v], s, tg, err)
				}
			}
		}(uint64(g + 1000))
	}
	wg.Wait()
	for name, m := range seen {
		t.Logf("%-14s %v", name, m)
	}

	// The undo a CO makes: every target, then every staging path; every
	// call must answer OK.
	for v, id := range ids {
		for _, tg := range targets[v] {
			if _, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: tg}); err != nil {
				t.Errorf("unpublish %s at %s: %v", id, tg, err)
			}
		}
		for _, s := range stagings[v] {
			if _, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: s}); err != nil {
				t.Errorf("unstage %s at %s: %v", id, s, err)
			}
		}
	}
	if ms := harness.MountsUnder(t, e.dir); len(ms) != 0 {
		t.Errorf("mounts left: %q", ms)
	}
	devs, _ := loop.List()
	for _, d := range devs {
		if strings.HasPrefix(d.BackingFile, e.pool) || strings.HasPrefix(d.Name, "csi-libstorage-ro ") {
			t.Errorf("loop device left: %s over %s (%q)", d.Device, d.BackingFile, d.Name)
		}
	}
	for _, id := range ids {
		if _, err := e.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: "n1"}); err != nil {
			t.Errorf("ControllerUnpublish %s: %v", id, err)
		}
		native := id[strings.Index(id, "/")+1:]
		metaPath, _ := file.PoolPaths(e.pool, native)
		if meta, _ := os.ReadFile(metaPath); strings.Contains(string(meta), `"attachments"`) {
			t.Errorf("volume %s still attached: %s", id, meta)
		}
		if _, err := e.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Errorf("delete %s: %v", id, err)
		}
	}
}
