package server

import (
	"context"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/internal/metrics"
)

// fakeIdentity answers Probe slowly, to hold a call in flight, and panics
// on GetPluginInfo, to exercise recovery.
type fakeIdentity struct {
	csi.UnimplementedIdentityServer
	probeDelay time.Duration
}

func (f *fakeIdentity) Probe(ctx context.Context, _ *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	time.Sleep(f.probeDelay)
	return &csi.ProbeResponse{}, nil
}

func (f *fakeIdentity) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	panic("boom")
}

type fakeController struct {
	csi.UnimplementedControllerServer
}

func (fakeController) CreateVolume(context.Context, *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	return nil, status.Error(codes.InvalidArgument, "parameter \"x\" is not known")
}

func start(t *testing.T, sock string, id *fakeIdentity, log *zap.Logger, reg ...*metrics.Metrics) (*Server, context.CancelFunc, chan error) {
	t.Helper()
	o := Options{Endpoint: "unix://" + sock, SocketGID: -1, Logger: log, Identity: id, Controller: fakeController{}, ShutdownGrace: 5 * time.Second}
	if len(reg) > 0 {
		o.Metrics = reg[0]
	}
	s, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	return s, cancel, done
}

func dial(t *testing.T, sock string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSocketLifecycle(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "csi.sock")
	os.MkdirAll(filepath.Dir(sock), 0o755)
	// A stale socket file with nobody behind it is replaced.
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	_, cancel, done := start(t, sock, &fakeIdentity{probeDelay: 300 * time.Millisecond}, zap.NewNop())
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, %v; want 0660", fi.Mode().Perm(), err)
	}
	// A live socket is not taken over.
	if _, err := Listen(Options{Endpoint: "unix://" + sock, SocketGID: -1, Identity: &fakeIdentity{}}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second server on a live socket: %v", err)
	}
	// A call in flight at shutdown completes.
	c := csi.NewIdentityClient(dial(t, sock))
	res := make(chan error, 1)
	go func() {
		_, err := c.Probe(context.Background(), &csi.ProbeRequest{})
		res <- err
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-res; err != nil {
		t.Fatalf("call in flight at shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left after stop: %v", err)
	}
}

func TestInterceptors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "csi.sock")
	core, logs := observer.New(zap.DebugLevel)
	reg := metrics.New()
	_, cancel, done := start(t, sock, &fakeIdentity{}, zap.New(core), reg)
	defer func() { cancel(); <-done }()
	conn := dial(t, sock)

	_, err := csi.NewIdentityClient(conn).GetPluginInfo(context.Background(), &csi.GetPluginInfoRequest{})
	if status.Code(err) != codes.Internal {
		t.Fatalf("panicking handler: %v, want Internal", err)
	}
	const secret = "s3cr3t-p4ss"
	_, err = csi.NewControllerClient(conn).CreateVolume(context.Background(), &csi.CreateVolumeRequest{
		Name: "vol", Secrets: map[string]string{"password": secret}, Parameters: map[string]string{"x": "1"},
	})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("CreateVolume: %v", err)
	}
	var calls int
	for _, e := range logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += " " + k + "=" + strings.TrimSpace(strings.ReplaceAll(toString(v), "\n", " "))
		}
		if strings.Contains(line, secret) {
			t.Fatalf("secret in log line: %s", line)
		}
		if e.Message == "call" {
			calls++
			m := e.ContextMap()
			if m["method"] == "" || m["code"] == nil || m["duration"] == nil {
				t.Errorf("call line lacks method, code or duration: %v", m)
			}
		}
	}
	if calls != 2 {
		t.Fatalf("%d call lines for 2 calls", calls)
	}
	_, err = csi.NewControllerClient(conn).CreateVolume(context.Background(), &csi.CreateVolumeRequest{
		Name: "vol2", Parameters: map[string]string{"backend": "attacker-chosen-" + secret},
	})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("CreateVolume vol2: %v", err)
	}
	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	exp := rec.Body.String()
	if strings.Contains(exp, secret) || strings.Contains(exp, "attacker") || strings.Contains(exp, "vol2") {
		t.Fatalf("metrics carry request content:\n%s", exp)
	}
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="InvalidArgument",grpc_method="CreateVolume",grpc_service="csi.v1.Controller",grpc_type="unary"} 2`,
		`grpc_server_handled_total{grpc_code="Internal",grpc_method="GetPluginInfo",grpc_service="csi.v1.Identity",grpc_type="unary"} 1`,
		`grpc_server_handling_seconds_count{grpc_method="CreateVolume",grpc_service="csi.v1.Controller",grpc_type="unary"} 2`,
		// Initialised before its first call, so dashboards show it at 0.
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Probe",grpc_service="csi.v1.Identity",grpc_type="unary"} 0`,
	} {
		if !strings.Contains(exp, want) {
			t.Errorf("metrics lack %s:\n%s", want, exp)
		}
	}
	if n := logs.FilterMessage("request").FilterField(zap.String("name", "vol")).Len(); n != 1 {
		t.Fatalf("%d debug request lines for CreateVolume, want 1", n)
	}
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	if s, ok := v.(interface{ String() string }); ok {
		return s.String()
	}
	return ""
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct{ in, network, addr string }{
		{"unix:///run/csi.sock", "unix", "/run/csi.sock"},
		{"unix:/run/csi.sock", "unix", "/run/csi.sock"},
		{"/run/csi.sock", "unix", "/run/csi.sock"},
		{"tcp://127.0.0.1:9000", "tcp", "127.0.0.1:9000"},
		{"unix://relative.sock", "", ""},
		{"http://x", "", ""},
	}
	for _, tt := range tests {
		n, a, err := ParseEndpoint(tt.in)
		if n != tt.network || a != tt.addr || (tt.network == "") != (err != nil) {
			t.Errorf("ParseEndpoint(%q) = %q, %q, %v", tt.in, n, a, err)
		}
	}
}

func TestSocketGroup(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "csi.sock")
	const gid = 4242
	s, err := Listen(Options{Endpoint: "unix://" + sock, SocketGID: gid, Identity: &fakeIdentity{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.lis.Close()
	var st syscall.Stat_t
	if err := syscall.Stat(sock, &st); err != nil {
		t.Fatal(err)
	}
	if st.Gid != gid || st.Mode&0o777 != 0o660 {
		t.Fatalf("socket gid %d mode %o, want gid %d mode 660", st.Gid, st.Mode&0o777, gid)
	}
}
