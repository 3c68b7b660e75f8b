package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/moby/sys/mountinfo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"

	"github.com/csi-libstorage/csi-libstorage/backends/file"
	"github.com/csi-libstorage/csi-libstorage/deploy/check/mesos"
	"github.com/csi-libstorage/csi-libstorage/internal/loop"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// Mesos constants (reference/mesos.md): every CSI call has a 60 s deadline
// (libprocess grpc.hpp), and a managed plugin's socket must appear within a
// minute (service_manager.cpp).
const (
	mesosCallDeadline   = 60 * time.Second
	mesosSocketDeadline = 60 * time.Second
)

// The deploy files the tests launch from.
const (
	managedPluginFile = "csi-plugins/csi-libstorage-managed.json"
	slrpFile          = "resource-providers/libstorage_slrp.json"
	profilesFile      = "disk-profiles.json"
	isolatorConfig    = "plugin-config.yaml"
	slrpConfig        = "plugin-config-slrp.yaml"
)

var binary string // the plugin built by TestMain

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "csi-libstorage-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(tmp, "csi-libstorage")
	// go test puts the GOROOT/bin of the toolchain running it first on
	// $PATH, so "go" is that toolchain.
	build := exec.Command("go", "build", "-o", binary, "github.com/csi-libstorage/csi-libstorage/cmd/csi-libstorage")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the plugin: %v\n%s", err, out)
		os.RemoveAll(tmp)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

func repoRoot() string {
	root, err := harness.ModuleRoot()
	if err != nil {
		panic(err)
	}
	return root
}

func deployPath(rel string) string { return filepath.Join(repoRoot(), "deploy", "mesos", rel) }

// loadDeploy decodes and validates one shipped Mesos file.
func loadDeploy(t *testing.T, rel string) mesos.Validator {
	t.Helper()
	data, err := os.ReadFile(deployPath(rel))
	if err != nil {
		t.Fatal(err)
	}
	_, v, err := mesos.Load(data)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return v
}

// pluginContainer returns the container of a shipped plugin config
// (isolator file or SLRP file) that serves service.
func pluginContainer(t *testing.T, rel, service string) mesos.CSIPluginContainerInfo {
	t.Helper()
	var info *mesos.CSIPluginInfo
	switch v := loadDeploy(t, rel).(type) {
	case *mesos.CSIPluginInfo:
		info = v
	case *mesos.ResourceProviderInfo:
		info = v.Storage.Plugin
	default:
		t.Fatalf("%s: %T is not a plugin config", rel, v)
	}
	for _, c := range info.Containers {
		for _, s := range c.Services {
			if s == service {
				return c
			}
		}
	}
	t.Fatalf("%s: no container serves %s", rel, service)
	return mesos.CSIPluginContainerInfo{}
}

// env is one test's world: a scratch directory, the plugin configs that
// point at a pool inside it, and the processes it started. Its cleanup
// kills the processes and releases every mount and loop device below dir,
// even when the test failed.
type env struct {
	t      *testing.T
	dir    string
	parent *env // subtests share the parent's directory and cleanup
	mu     sync.Mutex
	procs  []*plugin
}

// with returns the env for a subtest: same directory, and the processes it
// starts are killed by the parent's cleanup too.
func (e *env) with(t *testing.T) *env { return &env{t: t, dir: e.dir, parent: e} }

func (e *env) track(p *plugin) {
	r := e
	for r.parent != nil {
		r = r.parent
	}
	r.mu.Lock()
	r.procs = append(r.procs, p)
	r.mu.Unlock()
}

func newEnv(t *testing.T) *env {
	t.Helper()
	harness.RequireRoot(t)
	e := &env{t: t, dir: harness.TempDir(t)}
	t.Cleanup(e.cleanup)
	return e
}

func (e *env) cleanup() {
	e.mu.Lock()
	procs := e.procs
	e.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	if left := harness.Release(e.dir, 10*time.Second); len(left) > 0 {
		e.t.Errorf("cleanup: loop devices still bound under %s: %v", e.dir, left)
	}
}

// config writes a copy of a shipped plugin configuration whose file
// backends point at pool directories inside the test's scratch directory,
// and returns its path.
func (e *env) config(shipped, pool string) string {
	e.t.Helper()
	data, err := os.ReadFile(deployPath(shipped))
	if err != nil {
		e.t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		e.t.Fatalf("%s: %v", shipped, err)
	}
	list, _ := cfg["backends"].([]any)
	if len(list) == 0 {
		e.t.Fatalf("%s: no backends", shipped)
	}
	for _, b := range list {
		m := b.(map[string]any)
		if m["type"] == "file" {
			m["dir"] = pool
			// The scratch pool stands in for the shared mount, which the
			// shipped shared: true would rightly refuse as a plain directory.
			delete(m, "shared")
		}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	path := filepath.Join(e.dir, strings.TrimSuffix(filepath.Base(shipped), ".yaml")+"-"+filepath.Base(pool)+".yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// backendName returns the name of the first backend of a shipped config.
func backendName(t *testing.T, shipped string) string {
	t.Helper()
	data, err := os.ReadFile(deployPath(shipped))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Backends []struct {
			Name string `yaml:"name"`
		} `yaml:"backends"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil || len(cfg.Backends) == 0 {
		t.Fatalf("%s: %v", shipped, err)
	}
	return cfg.Backends[0].Name
}

// launch describes one plugin container as Mesos starts it.
type launch struct {
	name    string // for logs
	command mesos.CommandInfo
	config  string // replaces the --config path of the command
	agentID string // MESOS_AGENT_ID; empty: not set (no node service)
	// namespace runs the plugin in a mount namespace of its own
	// (unshare -m --propagation private), like a plugin on another agent.
	namespace bool
}

// plugin is one running plugin process and the clients of its socket.
type plugin struct {
	t        *testing.T
	name     string
	endpoint string // the CSI_ENDPOINT value
	sock     string
	sockDir  string
	pid      int
	ns       bool
	cmd      *exec.Cmd
	log      *logFile
	done     chan struct{}
	waitErr  error
	conn     *grpc.ClientConn
	id       csi.IdentityClient
	ctl      csi.ControllerClient
	node     csi.NodeClient
	stopped  bool
}

// start launches the plugin from a Mesos CommandInfo: the command value is
// run by a shell (shell: true), with CSI_ENDPOINT set to a socket in a fresh
// /tmp/mesos-csi-XXXXXX directory and MESOS_AGENT_ID for a node service.
// Only the binary path and the --config path are replaced. It waits for the
// socket as long as Mesos does.
func (e *env) start(l launch) *plugin {
	t := e.t
	t.Helper()
	if !l.command.IsShell() {
		t.Fatalf("%s: command is not a shell command; the launcher replays shell: true only", l.name)
	}
	bin, flags, err := mesos.ParseCommand(l.command.Value)
	if err != nil {
		t.Fatalf("%s: %v", l.name, err)
	}
	value := l.command.Value
	wrapped := binary
	if l.namespace {
		wrapped = "unshare -m --propagation private " + binary
	}
	value = strings.Replace(value, bin, wrapped, 1)
	if cfg := flags["config"]; cfg != "" && l.config != "" {
		value = strings.Replace(value, cfg, l.config, 1)
	} else if l.config != "" {
		t.Fatalf("%s: the command has no --config to replace: %s", l.name, l.command.Value)
	}

	sockDir, err := os.MkdirTemp("/tmp", "mesos-csi-")
	if err != nil {
		t.Fatal(err)
	}
	p := &plugin{
		t: t, name: l.name, sockDir: sockDir, sock: filepath.Join(sockDir, "endpoint.sock"),
		ns: l.namespace, done: make(chan struct{}),
	}
	// The plugin writes its log straight into a file (no pipe), so a line
	// it logs before answering a call is readable once the answer arrives.
	lf, err := os.CreateTemp(e.dir, l.name+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	p.log = &logFile{path: lf.Name()}
	p.endpoint = "unix://" + p.sock
	envv := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CSI_ENDPOINT=") && !strings.HasPrefix(kv, "MESOS_AGENT_ID=") {
			envv = append(envv, kv)
		}
	}
	envv = append(envv, "CSI_ENDPOINT="+p.endpoint)
	if l.agentID != "" {
		envv = append(envv, "MESOS_AGENT_ID="+l.agentID)
	}
	p.cmd = exec.Command("/bin/sh", "-c", value)
	p.cmd.Env = envv
	p.cmd.Stdout = lf
	p.cmd.Stderr = lf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	began := time.Now()
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(sockDir)
		t.Fatalf("%s: start %q: %v", l.name, value, err)
	}
	// The shell execs the plugin (and unshare execs it in turn), so this
	// pid is the plugin's.
	p.pid = p.cmd.Process.Pid
	go func() { p.waitErr = p.cmd.Wait(); close(p.done) }()
	e.track(p)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of %s (pid %d):\n%s", p.name, p.pid, p.log.String())
		}
	})

	for {
		if _, err := os.Stat(p.sock); err == nil {
			break
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before its socket appeared (%v); command %q", l.name, p.waitErr, value)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(began) > mesosSocketDeadline {
			t.Fatalf("%s: socket %s did not appear within %v", l.name, p.sock, mesosSocketDeadline)
		}
	}
	appeared := time.Since(began)
	// The socket file exists from bind(2); connections are accepted from
	// listen(2). Mesos connects as soon as it sees the file; a refused
	// first connection is logged, and the plugin is then waited for through
	// gRPC's own readiness (a Probe that waits for the channel to be ready),
	// so that the tests do not flake on that window.
	if c, err := net.Dial("unix", p.sock); err != nil {
		t.Logf("%s: socket %s appeared but the first connection failed: %v", l.name, p.sock, err)
	} else {
		c.Close()
	}
	t.Logf("%s: pid %d, socket after %v, command %q", l.name, p.pid, appeared.Round(time.Millisecond), value)
	// Mesos hands CSI_ENDPOINT to gRPC unchanged.
	p.conn, err = grpc.NewClient(p.endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	p.id = csi.NewIdentityClient(p.conn)
	p.ctl = csi.NewControllerClient(p.conn)
	p.node = csi.NewNodeClient(p.conn)
	ready, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.id.Probe(ready, &csi.ProbeRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("%s: no answer on %s: %v", l.name, p.sock, err)
	}
	return p
}

// nodePlugin starts the managed node plugin of the shipped isolator config.
func (e *env) nodePlugin(name, agentID, config string, namespace bool) *plugin {
	return e.start(launch{
		name: name, command: *pluginContainer(e.t, managedPluginFile, mesos.NodeService).Command,
		config: config, agentID: agentID, namespace: namespace,
	})
}

// controllerPlugin starts a controller-only plugin on the same config, as an
// operator runs it for csictl: the managed command with --mode=controller.
func (e *env) controllerPlugin(name, config string) *plugin {
	cmd := *pluginContainer(e.t, managedPluginFile, mesos.NodeService).Command
	cmd.Value = strings.Replace(cmd.Value, "--mode=node", "--mode=controller", 1)
	if !strings.Contains(cmd.Value, "--mode=controller") {
		e.t.Fatalf("cannot turn %q into a controller command", cmd.Value)
	}
	return e.start(launch{name: name, command: cmd, config: config})
}

// slrpPlugin starts the plugin container of the shipped SLRP config (both
// services, mode all).
func (e *env) slrpPlugin(name, agentID, config string) *plugin {
	return e.start(launch{
		name: name, command: *pluginContainer(e.t, slrpFile, mesos.NodeService).Command,
		config: config, agentID: agentID,
	})
}

// stop ends the plugin the way the agent does, with SIGTERM, and checks
// that it exits 0 and removes its socket.
func (p *plugin) stop() {
	p.t.Helper()
	if p.stopped {
		return
	}
	p.stopped = true
	p.conn.Close()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Errorf("%s: SIGTERM: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(45 * time.Second):
		p.t.Errorf("%s: still running 45 s after SIGTERM", p.name)
		p.kill()
		return
	}
	if p.waitErr != nil {
		p.t.Errorf("%s: exit after SIGTERM: %v (want exit status 0)", p.name, p.waitErr)
	}
	if _, err := os.Lstat(p.sock); !errors.Is(err, os.ErrNotExist) {
		p.t.Errorf("%s: socket %s still there after exit (%v)", p.name, p.sock, err)
	}
	p.checkLog()
	os.RemoveAll(p.sockDir)
}

// kill9 kills the plugin with SIGKILL, as a crashing agent host would, and
// waits for it.
func (p *plugin) kill9() {
	p.stopped = true
	p.conn.Close()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.checkLog()
}

func (p *plugin) kill() {
	if p.conn != nil {
		p.conn.Close()
	}
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	os.RemoveAll(p.sockDir)
}

// callLine is one "call" line of the plugin's JSON log.
type callLine struct {
	Msg    string `json:"msg"`
	Method string `json:"method"`
	Volume string `json:"volume"`
	Name   string `json:"name"`
	Code   string `json:"code"`
	Error  string `json:"error"`
}

// calls returns the calls the plugin has logged so far, with the code the
// plugin itself answered (which a client whose deadline passed first never
// sees).
func (p *plugin) calls() []callLine {
	var out []callLine
	sc := bufio.NewScanner(strings.NewReader(p.log.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var c callLine
		if json.Unmarshal(sc.Bytes(), &c) == nil && c.Msg == "call" {
			out = append(out, c)
		}
	}
	return out
}

// checkLog fails the test if the plugin ever answered ABORTED: Mesos
// treats it as final.
func (p *plugin) checkLog() {
	p.t.Helper()
	for _, c := range p.calls() {
		if c.Code == codes.Aborted.String() {
			p.t.Errorf("%s answered %s with ABORTED (%s); Mesos never retries ABORTED", p.name, c.Method, c.Error)
		}
	}
}

// call runs f with the Mesos deadline and fails the test on ABORTED.
func call[R any](t *testing.T, f func(ctx context.Context) (R, error)) (R, error) {
	t.Helper()
	return callWithin(t, mesosCallDeadline, f)
}

func callWithin[R any](t *testing.T, d time.Duration, f func(ctx context.Context) (R, error)) (R, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r, err := f(ctx)
	if status.Code(err) == codes.Aborted {
		t.Errorf("call answered ABORTED, which Mesos treats as final: %v", err)
	}
	return r, err
}

// must is call for calls that must succeed.
func must[R any](t *testing.T, what string, f func(ctx context.Context) (R, error)) R {
	t.Helper()
	r, err := call(t, f)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return r
}

// wantCode checks the code of a call that must fail.
func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: code %v (%v), want %v", what, got, err, want)
	}
}

// logFile is a plugin's output.
type logFile struct{ path string }

func (l *logFile) String() string {
	data, _ := os.ReadFile(l.path)
	return string(data)
}

// mesosPaths are the volume/csi isolator's paths for a volume:
// <root>/<url-encoded volume id>/{staging,target}.
type mesosPaths struct{ staging, target string }

func volumePaths(root, volID string) mesosPaths {
	d := filepath.Join(root, url.PathEscape(volID))
	return mesosPaths{staging: filepath.Join(d, "staging"), target: filepath.Join(d, "target")}
}

// mesosMkdirs does what the agent does before stage and publish: it creates
// the staging directory and the parent of the target.
func mesosMkdirs(t *testing.T, p mesosPaths) {
	t.Helper()
	if err := os.MkdirAll(p.staging, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(p.target), 0o750); err != nil {
		t.Fatal(err)
	}
}

// mountEntry is one line of mountinfo.
type mountEntry struct {
	Root, Point, Options, FSType, Source string
}

func (m mountEntry) readOnly() bool {
	for _, o := range strings.Split(m.Options, ",") {
		if o == "ro" {
			return true
		}
	}
	return false
}

// parseMountinfo reads a mount table with the project's one reader of it,
// github.com/moby/sys/mountinfo, which unescapes paths.
func parseMountinfo(t testing.TB, data string) []mountEntry {
	t.Helper()
	infos, err := mountinfo.GetMountsFromReader(strings.NewReader(data), nil)
	if err != nil {
		t.Fatalf("parse mountinfo: %v", err)
	}
	return fromInfos(infos)
}

func fromInfos(infos []*mountinfo.Info) []mountEntry {
	out := make([]mountEntry, 0, len(infos))
	for _, i := range infos {
		out = append(out, mountEntry{Root: i.Root, Point: i.Mountpoint, Options: i.Options, FSType: i.FSType, Source: i.Source})
	}
	return out
}

// mounts returns the mount table the plugin sees: its own mount namespace's
// (read through nsenter) when it runs in one, else this process's.
func (p *plugin) mounts() []mountEntry {
	p.t.Helper()
	if !p.ns {
		infos, err := mountinfo.GetMounts(nil)
		if err != nil {
			p.t.Fatal(err)
		}
		return fromInfos(infos)
	}
	out, err := p.nsenter(nil, "cat", "/proc/self/mountinfo")
	if err != nil {
		p.t.Fatalf("%s: read mountinfo: %v", p.name, err)
	}
	return parseMountinfo(p.t, out)
}

// mountsAt returns the mounts stacked at path.
func (p *plugin) mountsAt(path string) []mountEntry {
	var out []mountEntry
	for _, m := range p.mounts() {
		if m.Point == path {
			out = append(out, m)
		}
	}
	return out
}

// mountsUnder returns the mounts at or below dir.
func (p *plugin) mountsUnder(dir string) []mountEntry {
	var out []mountEntry
	for _, m := range p.mounts() {
		if m.Point == dir || strings.HasPrefix(m.Point, dir+"/") {
			out = append(out, m)
		}
	}
	return out
}

// nsenter runs a command in the plugin's mount namespace.
func (p *plugin) nsenter(stdin []byte, args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"-t", fmt.Sprint(p.pid), "-m", "--"}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("nsenter %v: %v: %s", args, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// assertClean checks that nothing the test made is left: no mount below
// dir in this namespace or in the given plugins' namespaces, and no loop
// device backed by a file below dir.
func (e *env) assertClean(ps ...*plugin) {
	e.t.Helper()
	harness.AssertNoLeaks(e.t, harness.LeakCheck{Dir: e.dir})
	for _, p := range ps {
		if p.stopped {
			continue
		}
		if ms := p.mountsUnder(e.dir); len(ms) > 0 {
			e.t.Errorf("mounts left in %s's namespace: %v", p.name, ms)
		}
	}
}

// poolMeta is what the tests read of a file-pool volume's meta.json.
type poolMeta struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	CapacityBytes int64  `json:"capacityBytes"`
	Formatted     string `json:"formatted"`
	Attachments   []struct {
		Node     string `json:"node"`
		ReadOnly bool   `json:"readOnly"`
		Mode     string `json:"mode"`
		ByNode   bool   `json:"byNode"`
	} `json:"attachments"`
}

func nativeID(t *testing.T, volID string) string {
	t.Helper()
	_, native, ok := strings.Cut(volID, "/")
	if !ok {
		t.Fatalf("volume id %q is not <backend>/<native id>", volID)
	}
	return native
}

// metaPath and imagePath are where the file pool keeps a volume.
func metaPath(t *testing.T, pool, volID string) string {
	t.Helper()
	m, _ := poolPaths(t, pool, volID)
	return m
}

func imagePath(t *testing.T, pool, volID string) string {
	t.Helper()
	_, img := poolPaths(t, pool, volID)
	return img
}

func poolPaths(t *testing.T, pool, volID string) (meta, image string) {
	t.Helper()
	meta, image = file.PoolPaths(pool, nativeID(t, volID))
	if meta == "" {
		t.Fatalf("volume id %q is not one of the file pool's", volID)
	}
	return meta, image
}

func readMeta(t *testing.T, pool, volID string) poolMeta {
	t.Helper()
	data, err := os.ReadFile(metaPath(t, pool, volID))
	if err != nil {
		t.Fatalf("meta.json of %s: %v", volID, err)
	}
	var m poolMeta
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// volumeLoops lists the loop devices of a volume's image.
func volumeLoops(t *testing.T, pool, volID string) []loop.Info {
	t.Helper()
	ls, err := loop.Find(imagePath(t, pool, volID))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return ls
}

// uuid4 returns a random RFC 4122 UUID, like the operation UUIDs the SLRP
// names volumes with.
func uuid4() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randomData(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// capability converts a profile's capability into the CSI message Mesos
// builds from it.
func capability(c *mesos.VolumeCapability) *csi.VolumeCapability {
	out := &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_Mode(csi.VolumeCapability_AccessMode_Mode_value[c.AccessMode.Mode])},
	}
	if c.Block != nil {
		out.AccessType = &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}
	} else {
		out.AccessType = &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: c.Mount.FSType, MountFlags: c.Mount.MountFlags}}
	}
	return out
}

func mountCap(fs string, mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

const (
	snw  = csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	mnro = csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
	mib  = int64(1) << 20
)
