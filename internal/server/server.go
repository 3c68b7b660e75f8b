// Package server runs the CSI services on one gRPC endpoint: it owns the
// socket, the interceptors every call passes through (request id, one
// structured log line with secrets stripped, panic recovery, one call at a
// time per volume) and the graceful shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/csi-libstorage/csi-libstorage/internal/lock"
	"github.com/csi-libstorage/csi-libstorage/internal/metrics"
	"github.com/kubernetes-csi/csi-lib-utils/protosanitizer"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Options configure the server.
type Options struct {
	// Endpoint is unix:///path/to.sock (or unix:/path), or tcp://host:port.
	Endpoint string
	// SocketGroup, if set, owns the socket (numeric gid or group name is
	// resolved by the caller); -1 leaves it.
	SocketGID int
	// ShutdownGrace bounds how long in-flight calls may run after a stop.
	ShutdownGrace time.Duration
	Logger        *zap.Logger
	// Metrics, if set, counts and times every call by method and code.
	Metrics    *metrics.Metrics
	Identity   csi.IdentityServer
	Controller csi.ControllerServer // nil in node mode
	Node       csi.NodeServer       // nil in controller mode
	// Locks serialize the calls per volume; nil gives the server a set of
	// its own. Tests pass one to see what is held.
	Locks *lock.Keyed
}

// Server is a running CSI endpoint.
type Server struct {
	opt  Options
	grpc *grpc.Server
	lis  net.Listener
	path string // unix socket path, removed on stop
	seq  atomic.Uint64
}

// ParseEndpoint splits an endpoint into a network and an address.
func ParseEndpoint(ep string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(ep, "unix://"):
		addr = strings.TrimPrefix(ep, "unix://")
		network = "unix"
	case strings.HasPrefix(ep, "unix:"):
		addr = strings.TrimPrefix(ep, "unix:")
		network = "unix"
	case strings.HasPrefix(ep, "tcp://"):
		return "tcp", strings.TrimPrefix(ep, "tcp://"), nil
	case strings.HasPrefix(ep, "/"):
		addr, network = ep, "unix"
	default:
		return "", "", fmt.Errorf("endpoint %q: want unix:///path/to/csi.sock or tcp://host:port", ep)
	}
	if !filepath.IsAbs(addr) {
		return "", "", fmt.Errorf("endpoint %q: the socket path must be absolute", ep)
	}
	return network, filepath.Clean(addr), nil
}

// Listen opens the endpoint. A socket file left by a dead plugin is
// replaced; one that still answers is left alone and reported, so two
// plugins never fight over one endpoint.
func Listen(opt Options) (*Server, error) {
	if opt.Logger == nil {
		opt.Logger = zap.NewNop()
	}
	if opt.ShutdownGrace == 0 {
		opt.ShutdownGrace = 30 * time.Second
	}
	network, addr, err := ParseEndpoint(opt.Endpoint)
	if err != nil {
		return nil, err
	}
	s := &Server{opt: opt}
	if network == "unix" {
		if err := os.MkdirAll(filepath.Dir(addr), 0o750); err != nil {
			return nil, err
		}
		if _, err := os.Lstat(addr); err == nil {
			if c, err := net.DialTimeout("unix", addr, time.Second); err == nil {
				c.Close()
				return nil, fmt.Errorf("socket %s is in use by a running process; stop it first", addr)
			}
			opt.Logger.Info("replacing stale socket", zap.String("path", addr))
			if err := os.Remove(addr); err != nil {
				return nil, fmt.Errorf("remove stale socket: %w", err)
			}
		}
		s.path = addr
	}
	if s.path == "" {
		if s.lis, err = net.Listen(network, addr); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", opt.Endpoint, err)
		}
	} else if err := s.listenUnix(opt.SocketGID); err != nil {
		return nil, err
	}
	if opt.Locks == nil {
		opt.Locks = new(lock.Keyed)
	}
	// The volume lock is innermost, so the log line and the metrics of a
	// call include the time it waited for its volume.
	s.grpc = grpc.NewServer(grpc.ChainUnaryInterceptor(s.measure, s.logger, s.recoverer, volumeLock(opt.Locks)))
	csi.RegisterIdentityServer(s.grpc, opt.Identity)
	if opt.Controller != nil {
		csi.RegisterControllerServer(s.grpc, opt.Controller)
	}
	if opt.Node != nil {
		csi.RegisterNodeServer(s.grpc, opt.Node)
	}
	if opt.Metrics != nil {
		opt.Metrics.InitializeServer(s.grpc)
	}
	return s, nil
}

// listenUnix makes the socket under a temporary name, sets its mode and
// group, and only then renames it into place: a CO that connects as soon as
// the file appears (Mesos polls for it) never finds a socket that is not yet
// listening or not yet its to use.
func (s *Server) listenUnix(gid int) error {
	tmp := fmt.Sprintf("%s.%d.tmp", s.path, os.Getpid())
	os.Remove(tmp)
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.opt.Endpoint, err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // the socket is removed by path in Serve
	fail := func(err error) error {
		l.Close()
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o660); err != nil {
		return fail(err)
	}
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			return fail(fmt.Errorf("chown socket to group %d: %w", gid, err))
		}
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fail(err)
	}
	s.lis = l
	return nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// Serve answers calls until ctx is done, then stops accepting, lets calls in
// flight finish within the shutdown grace, and removes the socket.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(s.lis) }()
	s.opt.Logger.Info("serving", zap.String("endpoint", s.opt.Endpoint))
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		s.opt.Logger.Info("stopping: waiting for calls in flight", zap.Duration("grace", s.opt.ShutdownGrace))
		done := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(s.opt.ShutdownGrace):
			s.opt.Logger.Warn("calls still running at the end of the grace period; cancelling them")
			s.grpc.Stop()
			<-done
		}
		err = <-errc
	}
	if s.path != "" {
		os.Remove(s.path)
	}
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}

func (s *Server) recoverer(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.opt.Logger.Error("panic in call", zap.String("method", info.FullMethod), zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			err = status.Errorf(codes.Internal, "internal error in %s; see the plugin log", info.FullMethod)
		}
	}()
	return h(ctx, req)
}

type volumeIDer interface{ GetVolumeId() string }

// measure feeds the metrics registry, whose labels are the method and the
// code only.
func (s *Server) measure(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if s.opt.Metrics == nil {
		return h(ctx, req)
	}
	return s.opt.Metrics.UnaryServerInterceptor()(ctx, req, info, h)
}

// logger writes one line per call. The request is logged only at debug
// level and only after protosanitizer has blanked every secret field.
func (s *Server) logger(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	id := s.seq.Add(1)
	log := s.opt.Logger
	fields := []zap.Field{zap.Uint64("req", id), zap.String("method", info.FullMethod)}
	if v, ok := req.(volumeIDer); ok && v.GetVolumeId() != "" {
		fields = append(fields, zap.String("volume", v.GetVolumeId()))
	}
	if n, ok := req.(interface{ GetName() string }); ok && n.GetName() != "" {
		fields = append(fields, zap.String("name", n.GetName()))
	}
	if ce := log.Check(zap.DebugLevel, "request"); ce != nil {
		ce.Write(append(fields, zap.Stringer("body", protosanitizer.StripSecrets(req)))...)
	}
	resp, err := h(ctx, req)
	code := status.Code(err)
	fields = append(fields, zap.Duration("duration", time.Since(start)), zap.String("code", code.String()))
	switch code {
	case codes.OK:
		log.Info("call", fields...)
	case codes.Internal, codes.Unknown, codes.DataLoss:
		log.Error("call", append(fields, zap.String("error", status.Convert(err).Message()))...)
	default:
		log.Info("call", append(fields, zap.String("error", status.Convert(err).Message()))...)
	}
	return resp, err
}
