package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// endpoint is a parsed --endpoint: a network ("unix" or "tcp") and address.
type endpoint struct {
	network string
	address string
}

func (e endpoint) String() string { return e.network + "://" + e.address }

// parseEndpoint accepts unix:///abs/path, unix:/abs/path, /abs/path
// (a unix socket), tcp://host:port and host:port.
func parseEndpoint(s string) (endpoint, error) {
	bad := func(why string) (endpoint, error) {
		return endpoint{}, fmt.Errorf("invalid --endpoint %q: %s (want unix:///abs/path, unix:/abs/path, /abs/path, tcp://host:port or host:port)", s, why)
	}
	switch {
	case s == "":
		return bad("empty")
	case strings.HasPrefix(s, "unix:"):
		// unix:///abs -> /abs; unix://rel is rejected below.
		p := strings.TrimPrefix(strings.TrimPrefix(s, "unix:"), "//")
		if !filepath.IsAbs(p) {
			return bad("unix socket path must be absolute")
		}
		return endpoint{"unix", filepath.Clean(p)}, nil
	case strings.HasPrefix(s, "/"):
		return endpoint{"unix", filepath.Clean(s)}, nil
	case strings.HasPrefix(s, "tcp://"):
		return tcpEndpoint(strings.TrimPrefix(s, "tcp://"), bad)
	case strings.Contains(s, "://"):
		return bad("unsupported scheme")
	default:
		return tcpEndpoint(s, bad)
	}
}

// tcpEndpoint checks hp is host:port; an empty host means the local
// system, as for net.Dial.
func tcpEndpoint(hp string, bad func(string) (endpoint, error)) (endpoint, error) {
	if _, port, err := net.SplitHostPort(hp); err != nil || port == "" {
		return bad("not host:port")
	}
	return endpoint{"tcp", hp}, nil
}

// dial returns a client connection to ep. Nothing is sent until the first
// RPC, so a missing socket surfaces as that RPC's Unavailable error.
func dial(ep endpoint) (*grpc.ClientConn, error) {
	authority := "localhost"
	if ep.network == "tcp" {
		authority = ep.address
	}
	var d net.Dialer
	return grpc.NewClient("passthrough:///"+authority,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return d.DialContext(ctx, ep.network, ep.address)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
	)
}
