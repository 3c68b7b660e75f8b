package metrics

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// fake is a backend whose List, Probe and Expand answer from fields; the
// other methods are never called here (the embedded nil interface would
// panic if they were).
type fake struct {
	backends.Backend
	name  string
	vols  []*backends.Volume
	err   error
	lists int
	probe func(context.Context) error
}

func (f *fake) Name() string { return f.name }
func (f *fake) List(context.Context) ([]*backends.Volume, error) {
	f.lists++
	return f.vols, f.err
}
func (f *fake) Probe(ctx context.Context) error {
	if f.probe != nil {
		return f.probe(ctx)
	}
	return f.err
}

type fakeExpander struct{ *fake }

// allAbilities has every optional interface (as nil embedded values: only
// their presence is looked at).
type allAbilities struct {
	*fake
	backends.ConditionReporter
	backends.Modifier
	backends.Expander
	backends.ForceDetacher
	backends.LeaseKeeper
	backends.NodeExpander
	backends.NodeRegistrar
	backends.NodeVolumeLimiter
	backends.NodeZoner
	backends.Pager
	backends.PublishDescriber
	backends.Reconciler
	backends.Snapshotter
}

func (fakeExpander) Expand(context.Context, string, int64, int64) (int64, error) { return 1, nil }

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func wantLines(t *testing.T, exp string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(exp, l+"\n") {
			t.Errorf("exposition lacks %s", l)
		}
	}
}

// stalledWriter is a scraper that stops reading: its first Write signals
// and then waits until released.
type stalledWriter struct {
	http.ResponseWriter
	once    sync.Once
	writing chan struct{}
	release chan struct{}
}

func (w *stalledWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.writing) })
	<-w.release
	return len(p), nil
}

// A scraper that stops reading must not hold up calls: the hand-written
// exposition this package replaced held its registry mutex while writing,
// so every RPC's completion waited for the slowest scraper.
func TestStalledScrapeDoesNotBlockCalls(t *testing.T) {
	m := New()
	b := m.Backend(&fake{name: "local"})
	unary := m.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/csi.v1.Identity/Probe"}
	b.Probe(context.Background())
	unary(context.Background(), nil, info, func(context.Context, any) (any, error) { return nil, nil })

	w := &stalledWriter{ResponseWriter: httptest.NewRecorder(), writing: make(chan struct{}), release: make(chan struct{})}
	scraped := make(chan struct{})
	go func() {
		m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		close(scraped)
	}()
	<-w.writing // the scrape is now stuck inside a write to its client

	calls := make(chan struct{})
	go func() {
		defer close(calls)
		for range 10 {
			b.Probe(context.Background())
			unary(context.Background(), nil, info, func(context.Context, any) (any, error) { return nil, status.Error(codes.Unavailable, "x") })
		}
	}()
	select {
	case <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("calls did not complete while a scrape was stalled")
	}
	close(w.release)
	<-scraped
	wantLines(t, scrape(t, m),
		`csi_libstorage_backend_call_duration_seconds_count{backend="local",operation="Probe"} 11`,
		`grpc_server_handled_total{grpc_code="Unavailable",grpc_method="Probe",grpc_service="csi.v1.Identity",grpc_type="unary"} 10`)
}

func TestBackendCallsTimedByBackendAndOperation(t *testing.T) {
	m := New()
	f := &fake{name: "pool-a"}
	b := m.Backend(fakeExpander{f})
	if b.Name() != "pool-a" {
		t.Fatalf("Name through the decorator = %q", b.Name())
	}
	b.Probe(context.Background())
	f.err = errors.New("volume vol-1234-secret at /var/lib/x is gone")
	if err := b.Probe(context.Background()); err != f.err {
		t.Fatalf("Probe through the decorator = %v, want the backend's error unchanged", err)
	}
	x, ok := backends.As[backends.Expander](b)
	if !ok {
		t.Fatal("the decorator hides Expander")
	}
	if n, err := x.Expand(context.Background(), "vol-1234-secret", 1, 0); n != 1 || err != nil {
		t.Fatalf("Expand through the decorator = %d, %v", n, err)
	}
	if _, ok := backends.As[backends.Snapshotter](b); ok {
		t.Fatal("the decorator claims Snapshotter, which the backend lacks")
	}
	exp := scrape(t, m)
	wantLines(t, exp,
		`csi_libstorage_backend_call_duration_seconds_count{backend="pool-a",operation="Probe"} 2`,
		`csi_libstorage_backend_call_duration_seconds_count{backend="pool-a",operation="Expand"} 1`,
		`csi_libstorage_backend_call_errors_total{backend="pool-a",operation="Probe"} 1`)
	for _, leak := range []string{"vol-1234", "/var/lib", "secret"} {
		if strings.Contains(exp, leak) {
			t.Errorf("exposition carries %q", leak)
		}
	}
}

// Through the decorator, backends.As finds exactly the optional interfaces
// the backend has: a lost one would silently switch a feature off, a gained
// one would advertise a feature the backend lacks. Every optional interface
// of package backends is checked, with and without the ability.
func TestDecoratorKeepsExactlyTheOptionalInterfaces(t *testing.T) {
	has := map[string]func(backends.Backend) bool{
		"ConditionReporter": func(b backends.Backend) bool { _, ok := backends.As[backends.ConditionReporter](b); return ok },
		"Modifier":          func(b backends.Backend) bool { _, ok := backends.As[backends.Modifier](b); return ok },
		"Expander":          func(b backends.Backend) bool { _, ok := backends.As[backends.Expander](b); return ok },
		"ForceDetacher":     func(b backends.Backend) bool { _, ok := backends.As[backends.ForceDetacher](b); return ok },
		"LeaseKeeper":       func(b backends.Backend) bool { _, ok := backends.As[backends.LeaseKeeper](b); return ok },
		"NodeExpander":      func(b backends.Backend) bool { _, ok := backends.As[backends.NodeExpander](b); return ok },
		"NodeRegistrar":     func(b backends.Backend) bool { _, ok := backends.As[backends.NodeRegistrar](b); return ok },
		"NodeVolumeLimiter": func(b backends.Backend) bool { _, ok := backends.As[backends.NodeVolumeLimiter](b); return ok },
		"NodeZoner":         func(b backends.Backend) bool { _, ok := backends.As[backends.NodeZoner](b); return ok },
		"Pager":             func(b backends.Backend) bool { _, ok := backends.As[backends.Pager](b); return ok },
		"PublishDescriber":  func(b backends.Backend) bool { _, ok := backends.As[backends.PublishDescriber](b); return ok },
		"Reconciler":        func(b backends.Backend) bool { _, ok := backends.As[backends.Reconciler](b); return ok },
		"Snapshotter":       func(b backends.Backend) bool { _, ok := backends.As[backends.Snapshotter](b); return ok },
	}
	m := New()
	bare := m.Backend(&fake{name: "bare"})
	for _, name := range optionalNames {
		check, ok := has[name]
		if !ok {
			t.Fatalf("optional interface %s unknown to this test: add it to the table", name)
		}
		if check(bare) {
			t.Errorf("a backend without %s has it through the decorator", name)
		}
	}
	if len(has) != len(optionalNames) {
		t.Fatalf("package backends declares %v; this test knows %d", optionalNames, len(has))
	}
	full := m.Backend(allAbilities{fake: &fake{name: "full"}})
	for _, name := range optionalNames {
		if !has[name](full) {
			t.Errorf("a backend with %s loses it through the decorator", name)
		}
	}
}

// The wrapper is generated from package backends' source; a new optional
// interface there needs "go generate ./internal/metrics".
func TestGeneratedWrapperIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the generator")
	}
	out := filepath.Join(t.TempDir(), "wrap_gen.go")
	cmd := exec.Command("go", "run", "gen_wrap.go", "-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen_wrap: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("wrap_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, have) {
		t.Fatal("wrap_gen.go is stale: run go generate ./internal/metrics")
	}
}

func TestVolumesByState(t *testing.T) {
	m := New()
	a := &fake{name: "a", vols: []*backends.Volume{
		{ID: "secret-id-1"},
		{ID: "2", Attachments: []backends.Attachment{{Node: "n1"}}},
		{ID: "3", Attachments: []backends.Attachment{{Node: "n1", Connected: true}, {Node: "n2", Connected: true}}},
	}}
	broken := &fake{name: "b", err: errors.New("storage down")}
	set, err := backends.NewSet(a, broken)
	if err != nil {
		t.Fatal(err)
	}
	m.WatchVolumes(set, VolumeOptions{MaxAge: time.Hour})
	exp := scrape(t, m)
	wantLines(t, exp,
		`csi_libstorage_volumes{backend="a",state="created"} 3`,
		`csi_libstorage_volumes{backend="a",state="attached"} 2`,
		`csi_libstorage_volumes{backend="a",state="staged"} 1`,
		`csi_libstorage_volume_count_errors_total{backend="b"} 1`)
	if strings.Contains(exp, `csi_libstorage_volumes{backend="b"`) || strings.Contains(exp, "secret-id") {
		t.Errorf("counts for a failed backend, or an id, in:\n%s", exp)
	}
	scrape(t, m)
	if a.lists != 1 {
		t.Errorf("two scrapes within MaxAge listed the backend %d times, want 1", a.lists)
	}
}

func TestFormats(t *testing.T) {
	var none *Metrics
	none.Formats().Performed("a") // a node without metrics counts nothing and does not fail
	m := New()
	f := m.Formats()
	f.Performed("a")
	f.Performed("a")
	f.Refused("a")
	wantLines(t, scrape(t, m),
		`csi_libstorage_formats_total{backend="a",result="performed"} 2`,
		`csi_libstorage_formats_total{backend="a",result="refused"} 1`)
}

func TestRuntimeAndProcessCollectors(t *testing.T) {
	exp := scrape(t, New())
	for _, name := range []string{"go_goroutines ", "process_open_fds "} {
		if !strings.Contains(exp, "\n"+name) {
			t.Errorf("exposition lacks %s", name)
		}
	}
}

// Two plugins in one process keep their own figures.
func TestRegistriesAreSeparate(t *testing.T) {
	one, two := New(), New()
	one.Formats().Refused("a")
	if strings.Contains(scrape(t, two), "csi_libstorage_formats_total{") {
		t.Fatal("a count made in one registry shows in another")
	}
}
