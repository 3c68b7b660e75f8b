package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/backends/file"
)

// TestForceDetachExitsNonZeroWhenNothingMatched: the operator's
// force-detach fails, saying what the pool holds, when the volume or the
// node matches no attachment; only a real detach succeeds.
func TestForceDetachExitsNonZeroWhenNothingMatched(t *testing.T) {
	ctx := context.Background()
	pool := filepath.Join(t.TempDir(), "pool")
	b, err := file.New(file.Config{Name: "local", Dir: pool}, file.Options{NodeID: "agent-a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.RegisterNode(ctx, "agent-a"); err != nil {
		t.Fatal(err)
	}
	v, err := b.Create(ctx, backends.CreateRequest{Name: "db", RequiredBytes: file.MinSize, Modes: []backends.AccessMode{backends.SingleNodeWriter}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Attach(ctx, v.ID, backends.AttachRequest{Node: "agent-a", Mode: backends.SingleNodeWriter}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, volume, node string
		wantErr            string // empty: success
	}{
		{"wrong node", "local/" + v.ID, "agent-b", "no attachment for node agent-b; it is attached to agent-a"},
		{"unknown volume", "local/" + strings.Repeat("f", 32), "agent-a", "does not exist"},
		{"the dead node", "local/" + v.ID, "agent-a", ""},
		{"repeated", "local/" + v.ID, "agent-a", "attached to no node"},
	}
	for _, tt := range tests {
		err := run([]string{"force-detach", "--pool", pool, "--volume", tt.volume, "--node", tt.node, "--yes-the-node-is-dead"})
		switch {
		case tt.wantErr == "" && err != nil:
			t.Fatalf("%s: %v", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: force-detach returned %v, want an error saying %q", tt.name, err, tt.wantErr)
		}
	}
	got, err := b.Get(ctx, v.ID)
	if err != nil || len(got.Attachments) != 0 {
		t.Fatalf("attachments after force-detach: %+v, %v", got, err)
	}
}
