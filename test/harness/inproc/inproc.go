// Package inproc starts the plugin inside a test's process, as the binary
// would. It is apart from package harness because it links the whole
// plugin, which the services' own tests (importing harness) cannot.
package inproc

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
)

// Start assembles and serves a plugin in-process as the binary does,
// and at cleanup stops it and fails the test if Serve returned an error.
func Start(t testing.TB, opt wiring.Options) *wiring.Plugin {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := wiring.New(ctx, opt)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return p
}

// Dial connects to a plugin's unix socket; the connection is closed at
// cleanup.
func Dial(t testing.TB, sock string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
