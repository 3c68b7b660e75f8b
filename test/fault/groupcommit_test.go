package fault_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// TestCrashDuringConcurrentCreates: concurrent creates share the fsync of
// the pool's directory (group commit). The plugin is killed when the Nth
// create has written its metadata, while others are writing, waiting for
// the shared sync or already answered; then every create is retried,
// as a CO would. Each name gets exactly one volume, a create answered
// before the crash keeps its id, and deleting them all leaves the pool
// empty.
func TestCrashDuringConcurrentCreates(t *testing.T) {
	harness.RequireRoot(t)
	const creates, sequential = 16, 4
	for _, hit := range []int{2, 7, 13} {
		t.Run(fmt.Sprintf("hit %d", hit), func(t *testing.T) {
			dir := harness.TempDir(t)
			tr := &trial{t: t, dir: dir, sock: filepath.Join(dir, "csi.sock"), pool: filepath.Join(dir, "pool"), crashAt: "file.create.written", hit: hit}
			tr.node, tr.args = "n1", []string{"--pool", tr.pool}
			tr.start(true)
			name := func(i int) string { return fmt.Sprintf("batch-%02d", i) }
			create := func(i int, timeout time.Duration) (string, error) {
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				r, err := csi.NewControllerClient(tr.p.conn).CreateVolume(ctx, &csi.CreateVolumeRequest{
					Name: name(i), VolumeCapabilities: []*csi.VolumeCapability{snw}, CapacityRange: &csi.CapacityRange{RequiredBytes: 16 << 20}})
				return r.GetVolume().GetVolumeId(), err
			}
			// A few creates one by one, answered before the batch
			// unless the crash comes first, then the rest at once.
			answered := make([]string, creates)
			for i := range sequential {
				answered[i], _ = create(i, 20*time.Second)
			}
			var wg sync.WaitGroup
			for i := sequential; i < creates; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					answered[i], _ = create(i, 20*time.Second)
				}()
			}
			wg.Wait()
			select {
			case <-tr.p.done:
			case <-time.After(5 * time.Second):
				t.Fatalf("the plugin did not crash at hit %d of file.create.written\n%s", hit, tr.p.stderr)
			}
			if !strings.Contains(tr.p.stderr.String(), "fault: crash at file.create.written") {
				t.Fatalf("the plugin died without the injected fault\n%s", tr.p.stderr)
			}
			before := 0
			for _, id := range answered {
				if id != "" {
					before++
				}
			}
			if before == creates {
				t.Fatalf("all %d creates were answered although the plugin crashed during them", creates)
			}
			tr.p.conn.Close()
			tr.start(false)

			var ids []string
			for i := range creates {
				id, err := create(i, time.Minute)
				if err != nil {
					t.Fatalf("retried create %s: %v", name(i), err)
				}
				if answered[i] != "" && answered[i] != id {
					t.Fatalf("create %s was answered %s before the crash and %s after it: the answer was not durable", name(i), answered[i], id)
				}
				ids = append(ids, id)
			}
			listed := call(tr, "ListVolumes", func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.ListVolumesResponse, error) {
				return c.ListVolumes(ctx, &csi.ListVolumesRequest{})
			})
			var got []string
			for _, e := range listed.GetEntries() {
				got = append(got, e.GetVolume().GetVolumeId())
			}
			sort.Strings(got)
			sort.Strings(ids)
			if strings.Join(got, ",") != strings.Join(ids, ",") {
				t.Fatalf("ListVolumes after the crash = %v, want exactly the %d created %v", got, creates, ids)
			}
			for _, id := range ids {
				call(tr, "DeleteVolume", func(ctx context.Context, c csi.ControllerClient, _ csi.NodeClient) (*csi.DeleteVolumeResponse, error) {
					return c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
				})
			}
			tr.stop()
			tr.assertCleanPool()
			t.Logf("crash at hit %d: %d of %d creates answered before it; every retry kept or made exactly one volume", hit, before, creates)
		})
	}
}
