package sanity

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
)

// Serve starts the plugin the way the binary does (wiring.New), serving on
// a unix socket in dir, and returns the socket's path and a stop function
// that ends serving and fails the test if serving failed. o.Endpoint is
// set here.
func Serve(t *testing.T, dir string, o wiring.Options) (sock string, stop func()) {
	t.Helper()
	sock = filepath.Join(dir, "csi.sock")
	o.Endpoint = "unix://" + sock
	ctx, cancel := context.WithCancel(context.Background())
	p, err := wiring.New(ctx, o)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx) }()
	return sock, func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
}
