package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness/inproc"
)

// startPlugin serves the real plugin's controller over a file pool in a
// temporary directory (no root needed: nothing is attached or mounted).
func startPlugin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "csi.sock")
	inproc.Start(t, wiring.Options{Endpoint: "unix://" + sock, Mode: wiring.ModeController, Config: config.Default(filepath.Join(dir, "pool")), Logger: zap.NewNop()})
	return "unix://" + sock
}

// runJSON runs the CLI in-process and decodes its -o json output into v.
func runJSON(t *testing.T, ep string, v any, args ...string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), append([]string{"--endpoint", ep, "-o", "json"}, args...), &out, &errOut); code != 0 {
		t.Fatalf("csictl %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	if v != nil {
		if err := json.Unmarshal(out.Bytes(), v); err != nil {
			t.Fatalf("csictl %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
	}
}

// TestSnapshotAndExpandAgainstThePlugin drives the snapshot, clone and
// expand commands against the real plugin.
func TestSnapshotAndExpandAgainstThePlugin(t *testing.T) {
	ep := startPlugin(t)
	var vol struct {
		Volume struct {
			ID       string `json:"volume_id"`
			Capacity string `json:"capacity_bytes"`
		} `json:"volume"`
	}
	runJSON(t, ep, &vol, "volume", "create", "src", "--size", "32MiB")
	src := vol.Volume.ID

	var snap struct {
		Snapshot struct {
			ID     string `json:"snapshot_id"`
			Source string `json:"source_volume_id"`
			Size   string `json:"size_bytes"`
			Ready  bool   `json:"ready_to_use"`
		} `json:"snapshot"`
	}
	runJSON(t, ep, &snap, "snapshot", "create", "nightly", "--source", src)
	if snap.Snapshot.Source != src || snap.Snapshot.Size != "33554432" || !snap.Snapshot.Ready {
		t.Fatalf("snapshot %+v", snap.Snapshot)
	}
	var list struct {
		Entries []struct {
			Snapshot struct {
				ID string `json:"snapshot_id"`
			} `json:"snapshot"`
		} `json:"entries"`
	}
	runJSON(t, ep, &list, "snapshot", "list", "--source", src, "--all")
	if len(list.Entries) != 1 || list.Entries[0].Snapshot.ID != snap.Snapshot.ID {
		t.Fatalf("snapshot list %+v", list)
	}

	runJSON(t, ep, &vol, "volume", "create", "restored", "--size", "32MiB", "--from-snapshot", snap.Snapshot.ID)
	if vol.Volume.ID == src || vol.Volume.Capacity != "33554432" {
		t.Fatalf("restored volume %+v", vol.Volume)
	}
	runJSON(t, ep, &vol, "volume", "create", "clone", "--size", "48MiB", "--from-volume", src)

	var grown struct {
		Capacity string `json:"capacity_bytes"`
		Node     bool   `json:"node_expansion_required"`
	}
	runJSON(t, ep, &grown, "volume", "expand", src, "--size", "64MiB")
	if grown.Capacity != "67108864" || !grown.Node {
		t.Fatalf("expand: %+v", grown)
	}

	runJSON(t, ep, nil, "snapshot", "delete", snap.Snapshot.ID)
	list.Entries = nil // an empty list has no entries field to overwrite them
	runJSON(t, ep, &list, "snapshot", "list")
	if len(list.Entries) != 0 {
		t.Fatalf("snapshots after delete: %+v", list)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--endpoint", ep, "snapshot", "create", "x"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "--source is required") {
		t.Fatalf("snapshot create without --source: exit %d, %s", code, errOut.String())
	}
}
