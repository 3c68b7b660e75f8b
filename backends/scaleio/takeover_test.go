package scaleio

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	scaleiosim "github.com/csi-libstorage/csi-libstorage/test/sim/scaleio"
)

// takeoverRig is newRig's gateway with a backend for the second node
// (guid2), the one that takes volumes over.
func takeoverRig(t *testing.T, grace string, rec *harness.Events) (*scaleiosim.Server, *Backend, *Backend) {
	t.Helper()
	r := newRig(t, "")
	b2, err := New(Config{Name: "sio", Gateway: r.b.cfg.Gateway, User: "admin", PasswordEnv: "SIO_TEST_PASSWORD", System: "sio",
		ProtectionDomain: "pd1", StoragePool: "pool1", SDCGUID: guid2, ByIDDir: t.TempDir(), AttachTimeout: "200ms", PollInterval: "10ms",
		SDCDisconnectGrace: grace},
		Options{NodeID: guid2, Logger: zaptest.NewLogger(t), Events: rec, Rescan: func(context.Context) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return r.sim, r.b, b2
}

// mappedTo returns the SDC ids volume id is mapped to.
func mappedTo(sim *scaleiosim.Server, id string) []string {
	var out []string
	for _, v := range sim.Volumes() {
		if v.ID == id {
			for _, m := range v.MappedSdcInfo {
				out = append(out, m.SdcID)
			}
		}
	}
	return out
}

const sdc1, sdc2 = "d0f055a700000000", "d0f055a700000001"

// TestTakeoverFromADisconnectedSDC: an attach that meets a volume mapped
// to another SDC unmaps that SDC (the storage-side fence) and maps the
// volume here only once the gateway has reported the holder disconnected
// for the grace period, through ControllerPublish and the node's own
// attach alike; before that, and while it is connected, the attach is
// refused with a message naming the SDC, its state and the operator's
// command, and nothing is unmapped. Each takeover is reported once.
func TestTakeoverFromADisconnectedSDC(t *testing.T) {
	cases := []struct {
		name   string
		grace  string
		byNode bool
		// states the gateway reports for the holder, one per attach
		// attempt, the last of which is expected to succeed unless
		// refusal is set.
		states  []string
		refusal string
	}{
		{name: "disconnected, no grace", grace: "0s", states: []string{scaleiosim.SDCDisconnected}},
		{name: "disconnected, the node maps itself", grace: "0s", byNode: true, states: []string{scaleiosim.SDCDisconnected}},
		{name: "disconnected past the grace", grace: "150ms", states: []string{scaleiosim.SDCDisconnected, scaleiosim.SDCDisconnected}},
		{name: "connected", grace: "0s", states: []string{scaleiosim.SDCConnected}, refusal: "whose MDM connection state is Connected"},
		{name: "disconnected within the grace", grace: "1h", states: []string{scaleiosim.SDCDisconnected}, refusal: "has been seen disconnected for"},
		{name: "reconnected within the grace", grace: "150ms", states: []string{scaleiosim.SDCDisconnected, scaleiosim.SDCConnected, scaleiosim.SDCDisconnected},
			refusal: "seen disconnected for 0s"},
		{name: "takeover off", grace: "off", states: []string{scaleiosim.SDCDisconnected}, refusal: "automatic takeover is off"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := harness.NewEvents()
			sim, b1, b2 := takeoverRig(t, tc.grace, rec)
			ctx := context.Background()
			v, err := b1.Create(ctx, backends.CreateRequest{Name: "moving", Modes: []backends.AccessMode{backends.SingleNodeWriter}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b1.Attach(ctx, v.ID, backends.AttachRequest{Node: guid1, Mode: backends.SingleNodeWriter}); err != nil {
				t.Fatal(err)
			}
			req := backends.AttachRequest{Node: guid2, Mode: backends.SingleNodeWriter, ByNode: tc.byNode}
			for i, st := range tc.states {
				if err := sim.SetSDCState(guid1, st); err != nil {
					t.Fatal(err)
				}
				_, err = b2.Attach(ctx, v.ID, req)
				if i < len(tc.states)-1 {
					if !errors.Is(err, backends.ErrConflict) {
						t.Fatalf("attempt %d (holder %s): %v, want ErrConflict before the grace is over", i, st, err)
					}
					time.Sleep(200 * time.Millisecond) // past a 150ms grace
				}
			}
			if tc.refusal != "" {
				if !errors.Is(err, backends.ErrConflict) {
					t.Fatalf("attach: %v, want ErrConflict", err)
				}
				for _, want := range []string{sdc1, guid1, "node1", tc.refusal, "force-detach --volume sio/" + v.ID + " --node " + guid1 + " --yes-the-node-is-dead"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("refusal %q does not say %q", err, want)
					}
				}
				if got := mappedTo(sim, v.ID); len(got) != 1 || got[0] != sdc1 {
					t.Fatalf("after a refusal the volume is mapped to %v, want only the holder %s", got, sdc1)
				}
				if got := rec.Takeovers(); len(got) != 0 {
					t.Fatalf("a refusal reported %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("attach after the holder was disconnected for %s: %v", tc.grace, err)
			}
			if got := mappedTo(sim, v.ID); len(got) != 1 || got[0] != sdc2 {
				t.Fatalf("after the takeover the volume is mapped to %v, want only %s", got, sdc2)
			}
			want := backends.Takeover{Backend: "sio", VolumeID: v.ID, From: guid1, To: guid2, Proof: ProofSDCDisconnected}
			if got := rec.Takeovers(); len(got) != 1 || got[0] != want {
				t.Fatalf("events %+v, want exactly %+v", got, want)
			}
			// A retry changes nothing; the fenced SDC comes back and still
			// does not get the volume back by itself.
			if _, err := b2.Attach(ctx, v.ID, req); err != nil {
				t.Fatal(err)
			}
			if err := sim.SetSDCState(guid1, scaleiosim.SDCConnected); err != nil {
				t.Fatal(err)
			}
			if got := mappedTo(sim, v.ID); len(got) != 1 || got[0] != sdc2 || len(rec.Takeovers()) != 1 {
				t.Fatalf("after a retry: mapped to %v, events %+v", got, rec.Takeovers())
			}
			got, err := b1.Get(ctx, v.ID)
			if err != nil {
				t.Fatal(err)
			}
			if a, ok := got.AttachedTo(guid2); !ok || a.ByNode != tc.byNode || len(got.Attachments) != 1 {
				t.Fatalf("attachments %+v", got.Attachments)
			}
			// The dead node's late detach leaves the new holder alone.
			if err := b1.Detach(ctx, v.ID, guid1); err != nil {
				t.Fatal(err)
			}
			if got := mappedTo(sim, v.ID); len(got) != 1 || got[0] != sdc2 {
				t.Fatalf("the old node's detach changed the mapping to %v", got)
			}
		})
	}
}

func TestDisconnectGraceConfig(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{{"", DefaultDisconnectGrace, true}, {"0s", 0, true}, {"2m", 2 * time.Minute, true}, {"off", -1, true}, {"-1s", 0, false}, {"soon", 0, false}} {
		got, err := parseGrace(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("parseGrace(%q) = %v, %v", tc.in, got, err)
		}
	}
}

// TestForceDetachIsTheRefusalsCommand: the command a refusal names unmaps
// the holder, after which the volume maps elsewhere, and is reported to
// no one: it is the operator's act, not a takeover.
func TestForceDetachIsTheRefusalsCommand(t *testing.T) {
	rec := harness.NewEvents()
	sim, b1, b2 := takeoverRig(t, "", rec)
	ctx := context.Background()
	v, err := b1.Create(ctx, backends.CreateRequest{Name: "manual", Modes: []backends.AccessMode{backends.SingleNodeWriter}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b1.Attach(ctx, v.ID, backends.AttachRequest{Node: guid1, Mode: backends.SingleNodeWriter}); err != nil {
		t.Fatal(err)
	}
	req := backends.AttachRequest{Node: guid2, Mode: backends.SingleNodeWriter}
	if _, err := b2.Attach(ctx, v.ID, req); !errors.Is(err, backends.ErrConflict) {
		t.Fatalf("attach while the holder is connected: %v", err)
	}
	if fd, ok := backends.As[backends.ForceDetacher](b2); !ok {
		t.Fatal("the ScaleIO backend offers no force-detach")
	} else if err := fd.ForceDetach(ctx, v.ID, guid1); err != nil {
		t.Fatal(err)
	}
	if got := mappedTo(sim, v.ID); len(got) != 0 {
		t.Fatalf("mapped to %v after force-detach", got)
	}
	if _, err := b2.Attach(ctx, v.ID, req); err != nil {
		t.Fatal(err)
	}
	if got := rec.Takeovers(); len(got) != 0 {
		t.Fatalf("an operator's force-detach was reported as a takeover: %+v", got)
	}
}
