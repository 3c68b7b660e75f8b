package scaleio

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/volname"
	scaleiosim "github.com/csi-libstorage/csi-libstorage/test/sim/scaleio"
)

const (
	testPassword = "S3cret-Pw-never-logged"
	guid1        = "9E56672F-2F4B-4A42-BFF4-88B6846FBFDA"
	guid2        = "1A2B3C4D-0000-4000-8000-00000000BEEF"
	systemID     = "14dbbf5617523654"
)

type rig struct {
	sim  *scaleiosim.Server
	b    *Backend
	byID string
	logs *observer.ObservedLogs
}

func newRig(t *testing.T, version string) *rig {
	t.Helper()
	sim := scaleiosim.New(scaleiosim.Options{
		User: "admin", Password: testPassword, Version: version, SystemID: systemID, SystemName: "sio",
		ProtectionDomain: "pd1", PoolName: "pool1", PoolCapacityBytes: 64 << 30,
		SDCs: []scaleiosim.SDC{{ID: "d0f055a700000000", GUID: guid1, Name: "node1"}, {ID: "d0f055a700000001", GUID: guid2}},
	})
	url := sim.Start()
	t.Cleanup(sim.Close)
	t.Setenv("SIO_TEST_PASSWORD", testPassword)
	core, logs := observer.New(zap.DebugLevel)
	byID := t.TempDir()
	b, err := New(Config{Name: "sio", Gateway: url, User: "admin", PasswordEnv: "SIO_TEST_PASSWORD", System: "sio",
		ProtectionDomain: "pd1", StoragePool: "pool1", SDCGUID: guid1, ByIDDir: byID, AttachTimeout: "200ms", PollInterval: "10ms"},
		Options{NodeID: guid1, Logger: zap.New(core), Rescan: func(context.Context) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{sim: sim, b: b, byID: byID, logs: logs}
}

func TestReloginAfterTokenExpiry(t *testing.T) {
	for _, version := range []string{"3.6", "4.0"} { // Basic, then Bearer
		t.Run(version, func(t *testing.T) {
			r := newRig(t, version)
			ctx := context.Background()
			if err := r.b.Probe(ctx); err != nil {
				t.Fatal(err)
			}
			if n := r.sim.Logins(); n != 1 {
				t.Fatalf("logins after probe: %d, want 1", n)
			}
			if _, err := r.b.List(ctx); err != nil {
				t.Fatal(err)
			}
			if n := r.sim.Logins(); n != 1 {
				t.Fatalf("the token was not kept: %d logins", n)
			}
			r.sim.ExpireTokens()
			if _, err := r.b.List(ctx); err != nil {
				t.Fatalf("list after expiry: %v", err)
			}
			if n := r.sim.Logins(); n != 2 {
				t.Fatalf("logins after expiry: %d, want 2", n)
			}
		})
	}
}

func TestNameDerivation(t *testing.T) {
	long := strings.Repeat("pvc-0123456789abcdef", 4)
	tests := []struct {
		csi      string
		wantStem string
	}{
		{"vol1", "vol1-"},
		{"pvc-1b2c3d4e-aaaa-bbbb-cccc-1234567890ab", "pvc-1b2c3d4-"},
		{long, "pvc-0123456-"},
		{long + "x", "pvc-0123456-"},
		{"a/b c_d", "a-b-c-d-"},
		{"ünïcode", "-n-code-"},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		m := volname.Meta{Key: volname.Key(tt.csi, MaxNameLen), Kind: volname.Block, Modes: []backends.AccessMode{backends.SingleNodeWriter, backends.MultiNodeReaderOnly}, FSType: "xfs", Mark: backends.FormattedRaw, ByNode: true}
		n := m.Name()
		if len(n) > MaxNameLen {
			t.Errorf("%q: name %q has %d characters", tt.csi, n, len(n))
		}
		if !strings.HasPrefix(n, tt.wantStem) {
			t.Errorf("%q: name %q does not start with %q", tt.csi, n, tt.wantStem)
		}
		if again := (volname.Meta{Key: volname.Key(tt.csi, MaxNameLen), Kind: volname.Block, Modes: m.Modes, FSType: "xfs", Mark: backends.FormattedRaw, ByNode: true}).Name(); again != n {
			t.Errorf("%q: not stable: %q then %q", tt.csi, n, again)
		}
		if other, ok := seen[m.Key]; ok {
			t.Errorf("%q and %q share the key %q", tt.csi, other, m.Key)
		}
		seen[m.Key] = tt.csi
		got, ok := volname.Parse(n)
		if !ok || got.Key != m.Key || got.Kind != volname.Block || got.FSType != "xfs" || got.Mark != backends.FormattedRaw || !got.ByNode || !sameModes(got.Modes, m.Modes) {
			t.Errorf("%q: volname.Parse(%q) = %+v, %t", tt.csi, n, got, ok)
		}
	}
	for _, foreign := range []string{"", "vol1", "data_m0100c", "k8s-1a2b3c4d5e6f7a8b9c0d", "x-0123456789ab_q0100c", "x-0123456789ab_m0100x"} {
		if _, ok := volname.Parse(foreign); ok {
			t.Errorf("volname.Parse(%q) accepted a name this backend never gives", foreign)
		}
	}
}

func TestAllocate(t *testing.T) {
	const g = 1 << 30
	tests := []struct {
		required, limit, want int64
		err                   error
	}{
		{0, 0, 8 * g, nil},
		{1, 0, 8 * g, nil},
		{8 * g, 0, 8 * g, nil},
		{8*g + 1, 0, 16 * g, nil},
		{9 * g, 16 * g, 16 * g, nil},
		{1 * g, 4 * g, 0, backends.ErrOutOfRange},
		{1 << 62, 0, 0, backends.ErrOutOfRange},
	}
	for _, tt := range tests {
		got, err := allocate(tt.required, tt.limit)
		if !errors.Is(err, tt.err) || got != tt.want {
			t.Errorf("allocate(%d, %d) = %d, %v; want %d, %v", tt.required, tt.limit, got, err, tt.want, tt.err)
		}
	}
	r := newRig(t, "")
	v, err := r.b.Create(context.Background(), backends.CreateRequest{Name: "one-gib", RequiredBytes: 1 << 30, Modes: []backends.AccessMode{backends.SingleNodeWriter}})
	if err != nil {
		t.Fatal(err)
	}
	if sim := r.sim.Volumes(); len(sim) != 1 || v.CapacityBytes != 8*g || sim[0].SizeInKb*1024 != v.CapacityBytes {
		t.Fatalf("capacity %d, gateway %+v: want 8 GiB on both", v.CapacityBytes, sim)
	}
}

func TestCreateAfterLostAnswer(t *testing.T) {
	r := newRig(t, "")
	ctx := context.Background()
	req := backends.CreateRequest{Name: "lost-answer", RequiredBytes: 1, Modes: []backends.AccessMode{backends.SingleNodeWriter}, Parameters: map[string]string{"fsType": "ext4"}}
	r.sim.Inject(scaleiosim.Fault{Method: http.MethodPost, Path: "/api/types/Volume/instances", Drop: true, Count: 1})
	if _, err := r.b.Create(ctx, req); !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("create with a lost answer: %v, want ErrUnavailable", err)
	}
	if n := len(r.sim.Volumes()); n != 1 {
		t.Fatalf("the lost create made %d volumes, want 1", n)
	}
	v, err := r.b.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if vs := r.sim.Volumes(); len(vs) != 1 || vs[0].ID != v.ID {
		t.Fatalf("retry made another volume: %+v (got %s)", vs, v.ID)
	}
	// Same name, other size: AlreadyExists, nothing new.
	req.RequiredBytes = 20 << 30
	if _, err := r.b.Create(ctx, req); !errors.Is(err, backends.ErrAlreadyExists) {
		t.Fatalf("create with another size: %v, want ErrAlreadyExists", err)
	}
	// A formatted mark renames the volume; create still finds it.
	if err := r.b.MarkFormatted(ctx, v.ID, "ext4"); err != nil {
		t.Fatal(err)
	}
	req.RequiredBytes = 1
	again, err := r.b.Create(ctx, req)
	if err != nil || again.ID != v.ID || again.Formatted != "ext4" {
		t.Fatalf("create after Mark: %+v, %v", again, err)
	}
}

func TestCreateFindsNameInUse(t *testing.T) {
	// Another controller created the volume between this one's lookup
	// and its create: the gateway says the name is in use and the
	// backend takes the volume of that name (queryIdByKey).
	r := newRig(t, "")
	ctx := context.Background()
	req := backends.CreateRequest{Name: "race", Modes: []backends.AccessMode{backends.SingleNodeWriter}}
	p, err := r.b.resolve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := volname.Meta{Key: volname.Key(req.Name, MaxNameLen), Kind: volname.Mount, Modes: req.Modes}.Name()
	id, err := r.b.c.createVolume(ctx, p.pd, p.pool, name, 8<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	v, err := r.b.createNamed(ctx, p, name, 8<<30, true)
	if err != nil || v != id {
		t.Fatalf("create of a taken name: %q, %v; want %s", v, err, id)
	}
}

func TestErrorTable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"not found", &APIError{Message: "Could not find the volume", HTTPStatusCode: 500, ErrorCode: 79}, backends.ErrNotFound},
		{"old not found code", &APIError{Message: "x", HTTPStatusCode: 500, ErrorCode: 78}, backends.ErrNotFound},
		{"removal in progress", &APIError{Message: "A volume removal operation is currently in progress", HTTPStatusCode: 500}, backends.ErrUnavailable},
		{"unauthorized", &APIError{Message: "Unauthorized", HTTPStatusCode: 401}, backends.ErrPermission},
		{"forbidden", &APIError{Message: "Forbidden", HTTPStatusCode: 403}, backends.ErrPermission},
		{"permission text", &APIError{Message: "The user does not have permission for this operation", HTTPStatusCode: 500}, backends.ErrPermission},
		{"capacity", &APIError{Message: "Not enough capacity in the storage pool", HTTPStatusCode: 500}, backends.ErrCapacity},
		{"gateway down", &APIError{Message: "bad gateway", HTTPStatusCode: 502}, backends.ErrUnavailable},
		{"timeout", context.DeadlineExceeded, backends.ErrUnavailable},
	}
	for _, tt := range tests {
		if got := mapErr(tt.err, "op"); !errors.Is(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	// Through the gateway.
	r := newRig(t, "")
	ctx := context.Background()
	if _, err := r.b.Get(ctx, "00000000deadbeef"); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("get of a missing volume: %v", err)
	}
	v, err := r.b.Create(ctx, backends.CreateRequest{Name: "busy", Modes: []backends.AccessMode{backends.SingleNodeWriter}})
	if err != nil {
		t.Fatal(err)
	}
	r.sim.Inject(scaleiosim.Fault{Path: "/action/removeVolume", Status: 500, Message: scaleiosim.MsgRemoveInProcess, Count: 1})
	if err := r.b.Delete(ctx, v.ID); !errors.Is(err, backends.ErrUnavailable) {
		t.Errorf("delete during a removal: %v, want ErrUnavailable", err)
	}
	if err := r.b.Delete(ctx, v.ID); err != nil {
		t.Errorf("delete retry: %v", err)
	}
	r.sim.Inject(scaleiosim.Fault{Path: "/api/types/Volume/instances", Status: 403, Message: "Forbidden", Count: 2})
	if _, err := r.b.List(ctx); !errors.Is(err, backends.ErrPermission) {
		t.Errorf("list as a user without rights: %v, want ErrPermission", err)
	}
}

func TestPasswordNeverInLogsOrErrors(t *testing.T) {
	r := newRig(t, "")
	ctx := context.Background()
	if _, err := r.b.Create(ctx, backends.CreateRequest{Name: "p", Modes: []backends.AccessMode{backends.SingleNodeWriter}}); err != nil {
		t.Fatal(err)
	}
	// A wrong password: the error names the user, never a password.
	t.Setenv("SIO_WRONG", "Wr0ng-"+testPassword)
	bad, err := New(Config{Name: "bad", Gateway: r.b.cfg.Gateway, User: "admin", PasswordEnv: "SIO_WRONG", ProtectionDomain: "pd1", StoragePool: "pool1", SDCGUID: guid1},
		Options{Logger: r.b.log})
	if err != nil {
		t.Fatal(err)
	}
	perr := bad.Probe(ctx)
	if !errors.Is(perr, backends.ErrPermission) {
		t.Fatalf("probe with a wrong password: %v, want ErrPermission", perr)
	}
	texts := []string{perr.Error()}
	for _, e := range r.logs.All() {
		texts = append(texts, e.Message)
		for k, v := range e.ContextMap() {
			texts = append(texts, k, strings.TrimSpace(strings.ReplaceAll(toString(v), "\n", " ")))
		}
	}
	if len(r.logs.All()) == 0 {
		t.Fatal("nothing was logged; the check proves nothing")
	}
	for _, s := range texts {
		if strings.Contains(s, testPassword) {
			t.Fatalf("the password appears in %q", s)
		}
	}
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func TestAttachAccessModes(t *testing.T) {
	r := newRig(t, "")
	ctx := context.Background()
	single, err := r.b.Create(ctx, backends.CreateRequest{Name: "single", Modes: []backends.AccessMode{backends.SingleNodeWriter}})
	if err != nil {
		t.Fatal(err)
	}
	multi, err := r.b.Create(ctx, backends.CreateRequest{Name: "multi", Modes: []backends.AccessMode{backends.MultiNodeReaderOnly}})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		vol  string
		req  backends.AttachRequest
		want error
	}{
		{single.ID, backends.AttachRequest{Node: guid1, Mode: backends.SingleNodeWriter}, nil},
		{single.ID, backends.AttachRequest{Node: strings.ToLower(guid1), Mode: backends.SingleNodeWriter}, nil}, // repeat
		{single.ID, backends.AttachRequest{Node: guid2, Mode: backends.SingleNodeWriter}, backends.ErrConflict},
		{single.ID, backends.AttachRequest{Node: "no-such-node", Mode: backends.SingleNodeWriter}, backends.ErrNodeNotFound},
		{multi.ID, backends.AttachRequest{Node: guid1, Mode: backends.MultiNodeReaderOnly, ReadOnly: true}, nil},
		{multi.ID, backends.AttachRequest{Node: guid2, Mode: backends.MultiNodeReaderOnly, ReadOnly: true}, nil},
	}
	for i, s := range steps {
		if _, err := r.b.Attach(ctx, s.vol, s.req); !errors.Is(err, s.want) || (err != nil) != (s.want != nil) {
			t.Fatalf("step %d: attach %s to %s: %v, want %v", i, s.vol, s.req.Node, err, s.want)
		}
	}
	got, err := r.b.Get(ctx, multi.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Attachments) != 2 || !got.Attachments[0].ReadOnly || got.Attachments[1].Node != guid2 {
		t.Fatalf("multi attachments: %+v", got.Attachments)
	}
	if err := r.b.Delete(ctx, single.ID); !errors.Is(err, backends.ErrInUse) {
		t.Fatalf("delete of a mapped volume: %v, want ErrInUse", err)
	}
	for _, n := range []string{guid1, guid1, "no-such-node"} { // repeat and unknown node: no error
		if err := r.b.Detach(ctx, single.ID, n); err != nil {
			t.Fatalf("detach from %s: %v", n, err)
		}
	}
	if vs := r.sim.Volumes(); len(vs[0].MappedSdcInfo)+len(vs[1].MappedSdcInfo) != 2 {
		t.Fatalf("mappings after detach: %+v", vs)
	}
}

// blockNodes returns two distinct block device nodes of this host to point
// links at (Verify only looks at device numbers).
func blockNodes(t *testing.T) (string, string) {
	t.Helper()
	var found []string
	for _, p := range []string{"/dev/loop0", "/dev/loop1", "/dev/loop2", "/dev/loop3", "/dev/loop4", "/dev/loop5", "/dev/loop6", "/dev/loop7"} {
		if _, _, err := resolveBlock(p); err == nil {
			found = append(found, p)
		}
	}
	if len(found) < 2 {
		t.Skip("needs two /dev/loopN nodes")
	}
	return found[0], found[1]
}

func TestIdentityMismatchRefused(t *testing.T) {
	devA, devB := blockNodes(t)
	r := newRig(t, "")
	ctx := context.Background()
	var ids []string
	for _, n := range []string{"vol-a", "vol-b"} {
		v, err := r.b.Create(ctx, backends.CreateRequest{Name: n, Modes: []backends.AccessMode{backends.SingleNodeWriter}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.b.Attach(ctx, v.ID, backends.AttachRequest{Node: guid1, Mode: backends.SingleNodeWriter}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ID)
	}
	link := func(id, dev string) {
		p := filepath.Join(r.byID, LinkName(systemID, id))
		_ = os.Remove(p)
		if err := os.Symlink(dev, p); err != nil {
			t.Fatal(err)
		}
	}
	// Right links: each volume gets its own device, and Verify refuses
	// the other volume's device.
	link(ids[0], devA)
	link(ids[1], devB)
	dev, err := r.b.Connect(ctx, ids[0], nil, false)
	if err != nil || dev.Path != devA {
		t.Fatalf("connect: %+v, %v; want %s", dev, err, devA)
	}
	if err := r.b.Verify(ctx, ids[0], dev); err != nil {
		t.Fatalf("verify of the right device: %v", err)
	}
	if err := r.b.Verify(ctx, ids[0], backends.Device{Path: devB}); !errors.Is(err, errRefused) {
		t.Fatalf("verify of another volume's device: %v, want refused", err)
	}
	// A's link points at B's device: both Connect and Verify refuse it.
	link(ids[0], devB)
	if dev, err := r.b.Connect(ctx, ids[0], nil, false); !errors.Is(err, errRefused) {
		t.Fatalf("connect through a link to another volume's device: %+v, %v; want refused", dev, err)
	}
	if err := r.b.Verify(ctx, ids[0], backends.Device{Path: devB}); !errors.Is(err, errRefused) {
		t.Fatalf("verify through a link to another volume's device: %v; want refused", err)
	}
	// A volume not mapped to this SDC is not connected, and a missing
	// link times out as UNAVAILABLE.
	if err := r.b.Detach(ctx, ids[1], guid1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.b.Connect(ctx, ids[1], nil, false); !errors.Is(err, backends.ErrConflict) {
		t.Fatalf("connect of an unmapped volume: %v, want ErrConflict", err)
	}
	os.Remove(filepath.Join(r.byID, LinkName(systemID, ids[0])))
	if _, err := r.b.Connect(ctx, ids[0], nil, false); !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("connect without a link: %v, want ErrUnavailable", err)
	}
}

func TestSnapshotsCloneExpandCapacity(t *testing.T) {
	r := newRig(t, "")
	ctx := context.Background()
	src, err := r.b.Create(ctx, backends.CreateRequest{Name: "src", Modes: []backends.AccessMode{backends.SingleNodeWriter}, Parameters: map[string]string{"fsType": "xfs"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.b.MarkFormatted(ctx, src.ID, "xfs"); err != nil {
		t.Fatal(err)
	}
	snap, err := r.b.CreateSnapshot(ctx, src.ID, "snap1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := r.b.CreateSnapshot(ctx, src.ID, "snap1", nil); err != nil || again.ID != snap.ID {
		t.Fatalf("repeat snapshot: %+v, %v", again, err)
	}
	clone, err := r.b.Create(ctx, backends.CreateRequest{Name: "clone", RequiredBytes: 9 << 30, SourceSnapshot: snap.ID,
		Modes: []backends.AccessMode{backends.SingleNodeWriter}, Parameters: map[string]string{"fsType": "xfs"}})
	if err != nil {
		t.Fatal(err)
	}
	if clone.CapacityBytes != 16<<30 || clone.Formatted != "xfs" {
		t.Fatalf("clone: %d bytes, mark %q; want 16 GiB and the source's xfs mark", clone.CapacityBytes, clone.Formatted)
	}
	if got, err := r.b.Expand(ctx, src.ID, 17<<30, 0); err != nil || got != 24<<30 {
		t.Fatalf("expand: %d, %v; want 24 GiB", got, err)
	}
	vols, err := r.b.List(ctx)
	if err != nil || len(vols) != 2 {
		t.Fatalf("list: %d volumes, %v; want 2 (the snapshot is not a volume)", len(vols), err)
	}
	snaps, err := r.b.ListSnapshots(ctx)
	if err != nil || len(snaps) != 1 || snaps[0].SourceID != src.ID {
		t.Fatalf("snapshots: %+v, %v", snaps, err)
	}
	free, err := r.b.Capacity(ctx, nil)
	if want := int64(64-24-8-16) << 30; err != nil || free != want {
		t.Fatalf("capacity: %d, %v; want %d", free, err, want)
	}
	if err := r.b.DeleteSnapshot(ctx, snap.ID); err != nil {
		t.Fatal(err)
	}
	if err := r.b.DeleteSnapshot(ctx, src.ID); err != nil {
		t.Fatalf("delete snapshot of a volume id: %v (must be a no-op)", err)
	}
	if len(r.sim.Volumes()) != 2 {
		t.Fatalf("DeleteSnapshot removed a volume: %+v", r.sim.Volumes())
	}
}

func TestNodeAttachIsRecorded(t *testing.T) {
	// The Mesos volume/csi isolator sends no ControllerPublish: the node
	// maps the volume itself and must find that out again on unstage,
	// from the storage alone.
	r := newRig(t, "")
	ctx := context.Background()
	v, err := r.b.Create(ctx, backends.CreateRequest{Name: "by-node", Modes: []backends.AccessMode{backends.SingleNodeWriter}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.b.Attach(ctx, v.ID, backends.AttachRequest{Node: guid1, Mode: backends.SingleNodeWriter, ByNode: true}); err != nil {
		t.Fatal(err)
	}
	got, err := r.b.Get(ctx, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := got.AttachedTo(guid1); !ok || !a.ByNode {
		t.Fatalf("attachment after a node attach: %+v", got.Attachments)
	}
	if err := r.b.Detach(ctx, v.ID, guid1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.b.Attach(ctx, v.ID, backends.AttachRequest{Node: guid1, Mode: backends.SingleNodeWriter}); err != nil {
		t.Fatal(err)
	}
	if got, err = r.b.Get(ctx, v.ID); err != nil {
		t.Fatal(err)
	}
	if a, ok := got.AttachedTo(guid1); !ok || a.ByNode {
		t.Fatalf("attachment after a controller attach: %+v", got.Attachments)
	}
}

// TestCreateFindsTheNameHolderGone: the gateway refuses the name as taken,
// and the other controller deletes its holder before the create looks it
// up. The create must make the volume anyway, not answer NOT_FOUND.
func TestCreateFindsTheNameHolderGone(t *testing.T) {
	r := newRig(t, "4.0")
	ctx := context.Background()
	r.sim.Inject(scaleiosim.Fault{Method: http.MethodPost, Path: "/api/types/Volume/instances", Status: http.StatusInternalServerError, Message: msgNameInUse, Count: 1})
	v, err := r.b.Create(ctx, backends.CreateRequest{Name: "holder-gone", RequiredBytes: 8 << 30, Modes: []backends.AccessMode{backends.SingleNodeWriter}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	all, err := r.b.List(ctx)
	if err != nil || len(all) != 1 || all[0].ID != v.ID {
		t.Fatalf("list: %v, %v; want only %s", all, err, v.ID)
	}
}

// TestCreateReadsAVolumeGoneMeanwhile: another controller may delete, by
// id, the volume a create just made before the create reads it (the name
// lock is per process). The create must look again instead of answering
// NOT_FOUND, which for CreateVolume would claim a missing source.
func TestCreateReadsAVolumeGoneMeanwhile(t *testing.T) {
	r := newRig(t, "4.0")
	ctx := context.Background()
	r.sim.Inject(scaleiosim.Fault{Method: http.MethodGet, Path: "/api/instances/Volume::", Status: http.StatusInternalServerError, Message: "Could not find the volume", Count: 1})
	v, err := r.b.Create(ctx, backends.CreateRequest{Name: "gone-meanwhile", RequiredBytes: 8 << 30, Modes: []backends.AccessMode{backends.SingleNodeWriter}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	again, err := r.b.Create(ctx, backends.CreateRequest{Name: "gone-meanwhile", RequiredBytes: 8 << 30, Modes: []backends.AccessMode{backends.SingleNodeWriter}})
	if err != nil || again.ID != v.ID {
		t.Fatalf("repeat create: %v, %v; want the same volume %s", again, err, v.ID)
	}
	all, err := r.b.List(ctx)
	if err != nil || len(all) != 1 {
		t.Fatalf("list: %d volumes, %v; want 1", len(all), err)
	}
}
