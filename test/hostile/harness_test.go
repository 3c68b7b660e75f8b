package hostile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// world is one running plugin and the scratch directory around it:
//
//	<top>/world/pool      the file pool
//	<top>/world/csi.sock  the endpoint
//	<top>/world/mnt       where staging paths and targets go
//	<top>/outside         stands for "somewhere else on the host"
type world struct {
	t       *testing.T
	top     string
	root    string
	pool    string
	sock    string
	mnt     string
	outside string
	p       *wiring.Plugin
	logs    *observer.ObservedLogs
	conn    *grpc.ClientConn
	ctl     csi.ControllerClient
	node    csi.NodeClient
	id      csi.IdentityClient
}

const poolConfig = `backends:
  - name: local
    type: file
    dir: %s
    defaultSize: 16MiB
`

// newWorld starts the plugin in-process on a fresh pool, with a debug-level
// observed logger. Its cleanup stops the plugin and releases every mount and
// loop device under the scratch directory, even when the test failed.
func newWorld(t *testing.T) *world {
	t.Helper()
	harness.RequireRoot(t)
	top := harness.TempDir(t)
	w := &world{t: t, top: top, root: filepath.Join(top, "world"), outside: filepath.Join(top, "outside")}
	w.pool = filepath.Join(w.root, "pool")
	w.sock = filepath.Join(w.root, "csi.sock")
	w.mnt = filepath.Join(w.root, "mnt")
	for _, d := range []string{w.root, w.mnt, w.outside} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(w.root, "plugin.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(poolConfig, w.pool)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	w.logs = logs
	ctx, cancel := context.WithCancel(context.Background())
	p, err := wiring.New(ctx, wiring.Options{
		Endpoint: "unix://" + w.sock, NodeID: "n1", Mode: wiring.ModeAll, Config: cfg,
		Logger: zap.New(core), MetricsAddress: "127.0.0.1:0", ShutdownGrace: 5 * time.Second,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	w.p = p
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	conn, err := grpc.NewClient("unix://"+w.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	w.conn = conn
	w.ctl, w.node, w.id = csi.NewControllerClient(conn), csi.NewNodeClient(conn), csi.NewIdentityClient(conn)
	t.Cleanup(func() {
		conn.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("plugin did not stop")
		}
		if left := harness.Release(top, 10*time.Second); len(left) > 0 {
			t.Errorf("cleanup: loop devices still bound under %s: %v", top, left)
		}
	})
	return w
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// Capabilities.

func mountCap(flags ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4", MountFlags: flags}},
	}
}

func blockCap() *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
	}
}

func modeCap(m int32) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_Mode(m)},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	}
}

// Lifecycle helpers that must succeed.

func (w *world) create(name string, c *csi.VolumeCapability) string {
	w.t.Helper()
	r, err := w.ctl.CreateVolume(ctx(w.t), &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{c}})
	if err != nil {
		w.t.Fatalf("CreateVolume %q: %v", name, err)
	}
	return r.GetVolume().GetVolumeId()
}

func (w *world) stage(id, staging string, c *csi.VolumeCapability) {
	w.t.Helper()
	if _, err := w.node.NodeStageVolume(ctx(w.t), &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: c}); err != nil {
		w.t.Fatalf("NodeStageVolume %s at %s: %v", id, staging, err)
	}
}

func (w *world) unstage(id, staging string) {
	w.t.Helper()
	if _, err := w.node.NodeUnstageVolume(ctx(w.t), &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		w.t.Errorf("NodeUnstageVolume %s at %s: %v", id, staging, err)
	}
}

func (w *world) publish(id, staging, target string, c *csi.VolumeCapability) error {
	_, err := w.node.NodePublishVolume(ctx(w.t), &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: c})
	return err
}

func (w *world) unpublish(id, target string) error {
	_, err := w.node.NodeUnpublishVolume(ctx(w.t), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
	return err
}

func (w *world) metrics() string {
	w.t.Helper()
	resp, err := http.Get("http://" + w.p.MetricsAddr() + "/metrics")
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatal(err)
	}
	return string(b)
}

// Checking results.

// checkStatus asserts the gRPC code of err and that its message contains
// every one of mention.
func checkStatus(t *testing.T, err error, want codes.Code, mention ...string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != want {
		t.Errorf("code %v (%q), want %v", st.Code(), trunc(st.Message()), want)
		return
	}
	for _, m := range mention {
		if !strings.Contains(st.Message(), m) {
			t.Errorf("message %q does not name %q", trunc(st.Message()), m)
		}
	}
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:300] + fmt.Sprintf("…(%d bytes)", len(s))
	}
	return s
}

// hostMounts lists the mount points of this namespace except those of
// other tests running at the same time (their scratch directories under
// /var/tmp/csi-* and /tmp) and the kernel's automounts under /proc; mine is
// this test's scratch directory, whose mounts are always listed.
func hostMounts(t *testing.T, mine string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, m := range harness.MountsUnder(t, "") { // "" + "/" prefixes every path
		inMine := mine != "" && (m == mine || strings.HasPrefix(m, mine+"/"))
		if !inMine && (strings.HasPrefix(m, "/var/tmp/csi-") || strings.HasPrefix(m, "/tmp/") || strings.HasPrefix(m, "/proc/")) {
			continue
		}
		out[m] = true
	}
	return out
}

// hostState is what the tests must leave as they found it outside their
// scratch directory.
type hostState struct {
	entries map[string][]string // dir -> names, for a few host directories
	etcTime time.Time
	etcStat map[string]time.Time
}

// watched are the directories a path escape would most likely write into.
// Entries other processes make all the time (other tests' scratch
// directories, the go tool's) are left out.
var watched = []string{"/", "/etc", "/var/tmp", "/tmp", "/var", "/root"}

func ignoredEntry(dir, name string) bool {
	for _, p := range []string{"csi-", "go-build", "go-link", "mesos-csi-", "TestMain", ".X11", "systemd-private"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return dir == "/tmp" && strings.HasPrefix(name, "Test")
}

func snapshotHost(t *testing.T) hostState {
	t.Helper()
	s := hostState{entries: map[string][]string{}, etcStat: map[string]time.Time{}}
	for _, d := range watched {
		es, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range es {
			if !ignoredEntry(d, e.Name()) {
				s.entries[d] = append(s.entries[d], e.Name())
			}
		}
		sort.Strings(s.entries[d])
	}
	fi, err := os.Stat("/etc")
	if err != nil {
		t.Fatal(err)
	}
	s.etcTime = fi.ModTime()
	for _, f := range []string{"/etc/passwd", "/etc/shadow", "/etc/hosts", "/etc/fstab"} {
		if fi, err := os.Stat(f); err == nil {
			s.etcStat[f] = fi.ModTime()
		}
	}
	return s
}

// compareHost reports what appeared in the watched directories and whether
// /etc changed since before.
func compareHost(t *testing.T, before hostState) {
	t.Helper()
	after := snapshotHost(t)
	for _, d := range watched {
		old := map[string]bool{}
		for _, n := range before.entries[d] {
			old[n] = true
		}
		for _, n := range after.entries[d] {
			if !old[n] {
				t.Errorf("%s appeared during the test, outside its scratch directory", filepath.Join(d, n))
			}
		}
	}
	if !after.etcTime.Equal(before.etcTime) {
		t.Errorf("/etc was modified during the test (mtime %v, was %v)", after.etcTime, before.etcTime)
	}
	for f, m := range before.etcStat {
		if !after.etcStat[f].Equal(m) {
			t.Errorf("%s was modified during the test", f)
		}
	}
}

// Raw calls: protobuf refuses to marshal invalid UTF-8 in a string field,
// so a hostile client's bytes are sent through this codec instead. The
// message is marshalled with a placeholder that is then replaced by the
// same number of bytes of invalid UTF-8.

type rawMsg struct{ b []byte }

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if r, ok := v.(*rawMsg); ok {
		return r.b, nil
	}
	return proto.Marshal(v.(proto.Message))
}

func (rawCodec) Unmarshal(data []byte, v any) error { return proto.Unmarshal(data, v.(proto.Message)) }
func (rawCodec) Name() string                       { return "proto" }

// placeholder is put where invalid UTF-8 is wanted; badUTF8 replaces it.
const placeholder = "@@INVALID-UTF8@@"

var badUTF8 = "bad\xff\xfe\xc0" + strings.Repeat("x", len(placeholder)-6)

func (w *world) invokeRaw(method string, req proto.Message, reply proto.Message) error {
	b, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte(placeholder)) {
		return errors.New("test bug: placeholder not in the request")
	}
	b = bytes.ReplaceAll(b, []byte(placeholder), []byte(badUTF8))
	return w.conn.Invoke(ctx(w.t), method, &rawMsg{b}, reply, grpc.ForceCodec(rawCodec{}))
}

// isMountPoint reports whether p is listed in this namespace's mount table.
func isMountPoint(t *testing.T, p string) bool {
	for _, m := range harness.MountsUnder(t, p) {
		if m == p {
			return true
		}
	}
	return false
}

func dirEntries(t *testing.T, d string) []string {
	t.Helper()
	es, err := os.ReadDir(d)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func perm(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}
