package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// client is what a command's action gets: the CSI service clients, the
// global options and where to write its result.
type client struct {
	ctx     context.Context
	g       *globals
	out     io.Writer
	secrets []string // values to scrub from anything printed

	id   csi.IdentityClient
	ctrl csi.ControllerClient
	node csi.NodeClient
}

func newClient(ctx context.Context, g *globals, conn grpc.ClientConnInterface, out io.Writer) *client {
	return &client{
		ctx:  ctx,
		g:    g,
		out:  out,
		id:   csi.NewIdentityClient(conn),
		ctrl: csi.NewControllerClient(conn),
		node: csi.NewNodeClient(conn),
	}
}

// rpcError is a failed RPC; it prints as "<RPC>: <code name>: <message>".
type rpcError struct {
	method string
	err    error
}

func (e *rpcError) Error() string {
	st := status.Convert(e.err)
	return fmt.Sprintf("%s: %s: %s", e.method, st.Code(), st.Message())
}

func (e *rpcError) Unwrap() error { return e.err }

// isUnimplemented reports whether err is an RPC answered with Unimplemented,
// which is how a plugin says it does not serve a service in its mode.
func isUnimplemented(err error) bool {
	r, ok := err.(*rpcError)
	return ok && status.Code(r.err) == codes.Unimplemented
}

// invoke makes one RPC under its own --timeout deadline.
func invoke[Req, Resp any](c *client, method string, f func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.g.timeout)
	defer cancel()
	resp, err := f(ctx, req)
	if err != nil {
		var zero Resp
		return zero, &rpcError{method: method, err: err}
	}
	return resp, nil
}

// redact scrubs secret values from s.
func (c *client) redact(s string) string {
	for _, v := range c.secrets {
		s = strings.ReplaceAll(s, v, "<redacted>")
	}
	return s
}

// failure is a negative result that is not an RPC error (an unconfirmed
// validation, a plugin that is not ready); it exits 1.
type failure struct{ msg string }

func (f *failure) Error() string { return f.msg }
