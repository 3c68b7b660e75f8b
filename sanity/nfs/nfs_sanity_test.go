// Package nfs runs csi-sanity against the real plugin server configured
// with one NFS backend on a real NFS server: nfs-ganesha, started by
// test/harness/ganesha on ports of its own. The controller side is
// exercised for real, over the wire. The node specs that need the kernel's
// NFS client are skipped: this machine's kernel has none (see TestSanity).
package nfs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	lssanity "github.com/csi-libstorage/csi-libstorage/sanity"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	"github.com/csi-libstorage/csi-libstorage/test/harness/ganesha"
	"github.com/csi-libstorage/csi-libstorage/test/harness/inproc"
)

// needsKernelNFS lists the seven specs that stage a volume, which mounts it with
// the kernel's NFS client. This machine's kernel has none (no nfs in
// /proc/filesystems, no modules to load), so these specs cannot pass here;
// the node path they would cover is proven instead by
// backends/nfs TestNodeThroughMounterSeam (the exact mount the kernel is
// asked for, binds, unmounts, nothing left) and TestNodeStageRealKernel
// (one real mount(2) whose refusal names the missing client). On a kernel
// with an NFS client they run.
var needsKernelNFS = []string{
	// Stage, publish, unpublish, unstage: a full node cycle.
	"Node Service should work",
	"Node Service should be idempotent",
	// Publishes (so stages) the volume before checking the target is gone.
	"NodeUnpublishVolume should remove target path",
	// Publishes the volume at one path before asking about another.
	"NodeGetVolumeStats should fail when volume does not exist on the specified path",
	// Publishes a SINGLE_NODE_SINGLE_WRITER volume, then a second target.
	"should fail when volume with single node single writer access mode is already mounted at a different target path",
	// Stages and publishes the volume before NodeExpandVolume (which has
	// nothing to grow on NFS: TestNodeThroughMounterSeam checks that).
	"should work if node-expand is called after node-publish",
	// Stages and publishes the volume, then asks for its health there.
	"NodeGetVolumeHealth should return health for a valid volume",
}

// TestSanity runs every csi-sanity spec that applies to what the plugin
// advertises with an NFS backend, against nfs-ganesha. Skipped besides
// needsKernelNFS, and why:
//   - expansion: an NFS directory has no size to grow, so the backend does
//     not advertise it. Clones and snapshots are configured (clone: true,
//     snapshots: true), so their specs run;
//   - CreateSnapshot "with accessibility requirements": needs
//     SNAPSHOT_ACCESSIBILITY_CONSTRAINTS, not advertised;
//   - ModifyVolume and volume attribute classes: no mutable parameters;
//   - group snapshots: no GROUP_CONTROLLER_SERVICE;
//   - volume and storage health (spec 1.13 alpha): not implemented;
//   - the node attach-limit spec: needs a configured maxVolumesPerNode.
func TestSanity(t *testing.T) {
	harness.RequireRoot(t)
	dir := harness.TempDir(t)
	srv := ganesha.Start(t, dir, ganesha.Options{})

	cfgPath := filepath.Join(dir, "config.yaml")
	yaml := fmt.Sprintf(`backends:
  - name: shared
    type: nfs
    server: %s
    export: %s
    subDir: csi
    port: %d
    mountPort: %d
    mountOptions: [nfsvers=3, hard]
    onDelete: delete
    mode: "0770"
    clone: true
    snapshots: true
`, ganesha.Host, srv.Export, srv.Port, srv.MountPort)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "csi.sock")
	inproc.Start(t, wiring.Options{Endpoint: "unix://" + sock, NodeID: "sanity-node", Mode: wiring.ModeAll, Config: cfg, Logger: zap.NewNop()})
	defer assertNothingLeft(t, dir, srv)

	c := lssanity.Case{Name: "nfs", Access: "mount"}
	sc := lssanity.Config(dir, sock, c, 1<<30, 2<<30)
	Context(c.Name, func() { sanity.GinkgoTest(&sc) })
	RegisterFailHandler(Fail)
	suite, reporter := GinkgoConfiguration()
	suite.Timeout = 4 * time.Minute
	if !ganesha.KernelHasNFSClient() {
		suite.SkipStrings = append(suite.SkipStrings, needsKernelNFS...)
	}
	RunSpecs(t, "csi-sanity nfs", suite, reporter)
}

// assertNothingLeft fails the test if the suite left a volume directory,
// a volume record, a snapshot or a mount behind, looking at the export on the
// server's disk.
func assertNothingLeft(t *testing.T, dir string, srv *ganesha.Server) {
	t.Helper()
	base := filepath.Join(srv.Export, "csi")
	entries, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != ".csi-libstorage" {
			t.Errorf("left on the export: %s", e.Name())
		}
	}
	records, _ := os.ReadDir(filepath.Join(base, ".csi-libstorage"))
	for _, r := range records {
		if r.Name() != "snapshots" {
			t.Errorf("volume record left: %s", r.Name())
		}
	}
	snaps, _ := os.ReadDir(filepath.Join(base, ".csi-libstorage", "snapshots"))
	for _, s := range snaps {
		t.Errorf("snapshot left: %s", s.Name())
	}
	for _, m := range harness.MountsUnder(t, dir) {
		t.Errorf("mount left behind at %s", m)
	}
}
