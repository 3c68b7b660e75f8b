package sanity

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// TestSanity runs every csi-sanity spec that applies to the capabilities the
// plugin reports. The specs it skips, and why:
//   - snapshot accessibility constraints (1.13 alpha) and group
//     snapshots: not advertised; the file pool has no topology, and a group
//     snapshot of loop images could not be taken atomically;
//   - the node attach-limit spec: it needs TestNodeVolumeAttachLimit and a
//     configured maxVolumesPerNode, which the plugin only reports to the CO
//     (Kubernetes enforces it; Mesos has no such limit);
//   - ControllerListVolumeHealth and NodeGetStorageHealth (spec 1.13
//     alpha): LIST_VOLUME_HEALTH and GET_STORAGE_HEALTH are not
//     advertised; a CO asks per volume (ControllerGetVolumeHealth,
//     NodeGetVolumeHealth, which run), and a pool has no node-wide
//     storage state beyond what Probe reports. Mesos (spec 1.1) never
//     calls any of them.
//
// The ModifyVolume specs run with preallocate=true, the file pool's one
// mutable parameter.
//
// csi-sanity's pagination spec is marked pending (XIt) upstream; the plugin's
// own paging test covers it.
func TestSanity(t *testing.T) {
	harness.RequireRoot(t)
	dir := harness.TempDir(t)
	pool := filepath.Join(dir, "pool")
	sock := filepath.Join(dir, "csi.sock")

	ctx, cancel := context.WithCancel(context.Background())
	p, err := wiring.New(ctx, wiring.Options{
		Endpoint: "unix://" + sock,
		NodeID:   "sanity-node",
		Mode:     wiring.ModeAll,
		Config:   config.Default(pool),
		Logger:   zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		harness.AssertNoLeaks(t, harness.LeakCheck{Dir: dir})
	}()

	preallocate := map[string]string{"preallocate": "true"}
	for _, c := range []Case{
		{Name: "mount ext4", Access: "mount", Params: nil, Mutable: preallocate},
		{Name: "mount xfs", Access: "mount", Params: map[string]string{"fsType": "xfs"}, Mutable: preallocate},
		{Name: "block", Access: "block", Params: nil, Mutable: preallocate},
	} {
		// 512 MiB: above mkfs.xfs's 300 MiB minimum.
		cfg := Config(dir, sock, c, 512<<20, 1<<30)
		Context(c.Name, func() { sanity.GinkgoTest(&cfg) })
	}
	RegisterFailHandler(Fail)
	suite, reporter := GinkgoConfiguration()
	suite.Timeout = 40 * time.Minute
	RunSpecs(t, "csi-sanity", suite, reporter)
}
