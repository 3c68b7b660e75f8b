// Package wiring assembles a csi-libstorage process: backends from the
// configuration, the services the mode asks for, and the gRPC server. The
// binary and the in-process tests start the plugin the same way.
package wiring

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/user"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/backends/ebs"
	"github.com/csi-libstorage/csi-libstorage/backends/file"
	"github.com/csi-libstorage/csi-libstorage/backends/libstorage"
	"github.com/csi-libstorage/csi-libstorage/backends/nfs"
	"github.com/csi-libstorage/csi-libstorage/backends/scaleio"
	"github.com/csi-libstorage/csi-libstorage/backends/xtremio"
	"github.com/csi-libstorage/csi-libstorage/controller"
	"github.com/csi-libstorage/csi-libstorage/identity"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/metrics"
	"github.com/csi-libstorage/csi-libstorage/internal/server"
	"github.com/csi-libstorage/csi-libstorage/node"
)

// Modes a process can run in.
const (
	ModeAll        = "all"
	ModeController = "controller"
	ModeNode       = "node"
)

// Options describe one plugin process.
type Options struct {
	Endpoint      string
	NodeID        string
	Mode          string
	Config        *config.Config
	ShutdownGrace time.Duration
	Logger        *zap.Logger
	// MetricsAddress, if set, serves Prometheus metrics at /metrics.
	MetricsAddress string
	// Factories replace the built-in constructors of the types they name;
	// tests use them to hand a backend what configuration cannot carry
	// (a test server's device identity reader).
	Factories map[string]Factory
}

// Factory builds a backend instance from its configuration entry.
type Factory func(e config.Entry, o BackendOptions) (backends.Backend, error)

// BackendOptions are what every backend gets besides its own entry.
type BackendOptions struct {
	NodeID string
	Logger *zap.Logger
	// Events receives takeovers and fences (logged, and counted when
	// metrics are on).
	Events backends.Events
}

// Factories maps backend types to their constructors.
func Factories() map[string]Factory {
	return map[string]Factory{
		file.Type: func(e config.Entry, o BackendOptions) (backends.Backend, error) {
			var c file.Config
			if err := e.Decode(&c); err != nil {
				return nil, err
			}
			c.Name = e.Name
			return file.New(c, file.Options{NodeID: o.NodeID, Logger: o.Logger, Events: o.Events})
		},
		ebs.Type: func(e config.Entry, o BackendOptions) (backends.Backend, error) {
			var c ebs.Config
			if err := e.Decode(&c); err != nil {
				return nil, err
			}
			c.Name = e.Name
			return ebs.New(c, ebs.Options{NodeID: o.NodeID, Logger: o.Logger, Events: o.Events})
		},
		libstorage.Type: func(e config.Entry, o BackendOptions) (backends.Backend, error) {
			var c libstorage.Config
			if err := e.Decode(&c); err != nil {
				return nil, err
			}
			c.Name = e.Name
			return libstorage.New(c, libstorage.Options{NodeID: o.NodeID, Logger: o.Logger})
		},
		nfs.Type: func(e config.Entry, o BackendOptions) (backends.Backend, error) {
			var c nfs.Config
			if err := e.Decode(&c); err != nil {
				return nil, err
			}
			c.Name = e.Name
			return nfs.Build(c, nfs.Options{NodeID: o.NodeID, Logger: o.Logger})
		},
		scaleio.Type: func(e config.Entry, o BackendOptions) (backends.Backend, error) {
			var c scaleio.Config
			if err := e.Decode(&c); err != nil {
				return nil, err
			}
			c.Name = e.Name
			return scaleio.New(c, scaleio.Options{NodeID: o.NodeID, Logger: o.Logger, Events: o.Events})
		},
		xtremio.Type: func(e config.Entry, o BackendOptions) (backends.Backend, error) {
			var c xtremio.Config
			if err := e.Decode(&c); err != nil {
				return nil, err
			}
			c.Name = e.Name
			return xtremio.New(c, xtremio.Options{NodeID: o.NodeID, Logger: o.Logger})
		},
	}
}

// Backends builds the backend instances a configuration names, with
// overrides taking the place of built-in constructors.
func Backends(cfg *config.Config, o BackendOptions, overrides map[string]Factory) (*backends.Set, error) {
	facts := Factories()
	for k, f := range overrides {
		facts[k] = f
	}
	var list []backends.Backend
	for _, e := range cfg.Backends {
		f, ok := facts[e.Type]
		if !ok {
			return nil, fmt.Errorf("backend %q: unknown type %q", e.Name, e.Type)
		}
		b, err := f(e, o)
		if err != nil {
			return nil, err
		}
		list = append(list, b)
	}
	return backends.NewSet(list...)
}

// Plugin is an assembled, listening plugin.
type Plugin struct {
	srv        *server.Server
	metrics    *http.Server
	metricsLis net.Listener
	log        *zap.Logger
	Set        *backends.Set
	Node       *node.Service
	// Metrics is the plugin's own registry; nil without MetricsAddress.
	Metrics *metrics.Metrics
}

// New builds the backends and services and opens the endpoint.
func New(ctx context.Context, opt Options) (_ *Plugin, err error) {
	log := opt.Logger
	if log == nil {
		log = zap.NewNop()
	}
	switch opt.Mode {
	case ModeAll, ModeController, ModeNode:
	default:
		return nil, fmt.Errorf("mode %q: want controller, node or all", opt.Mode)
	}
	if opt.NodeID == "" && opt.Mode != ModeController {
		return nil, fmt.Errorf("a node id is needed: pass --node-id, or set MESOS_AGENT_ID")
	}
	p := &Plugin{log: log}
	if opt.MetricsAddress != "" {
		p.Metrics = metrics.New()
	}
	set, err := Backends(opt.Config, BackendOptions{NodeID: opt.NodeID, Logger: log,
		Events: backends.LogEvents(log, p.Metrics.Events())}, opt.Factories)
	if err != nil {
		return nil, err
	}
	p.Set = set
	gid, err := lookupGroup(opt.Config.SocketGroup)
	if err != nil {
		return nil, err
	}
	if p.Metrics != nil {
		// Volumes are counted where the controller runs: one List per
		// backend per scrape interval for the cluster, not one per node.
		// The counts ask the backends directly; the services see every
		// backend through the timing decorator.
		if opt.Mode != ModeNode {
			p.Metrics.WatchVolumes(set, metrics.VolumeOptions{})
		}
		if set, err = p.Metrics.Set(set); err != nil {
			return nil, err
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", p.Metrics.Handler())
		if p.metricsLis, err = net.Listen("tcp", opt.MetricsAddress); err != nil {
			return nil, fmt.Errorf("metrics address: %w", err)
		}
		defer func() {
			if err != nil {
				p.metricsLis.Close()
			}
		}()
		p.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}
	so := server.Options{
		Endpoint:      opt.Endpoint,
		SocketGID:     gid,
		ShutdownGrace: opt.ShutdownGrace,
		Logger:        log,
		Identity:      identity.New(set, opt.Mode != ModeNode, log),
		Metrics:       p.Metrics,
	}
	if opt.Mode != ModeNode {
		so.Controller = controller.New(set, controller.Options{AllowOverwrite: opt.Config.AllowOverwrite, Logger: log})
	}
	if opt.Mode != ModeController {
		p.Node = node.New(set, node.Options{
			NodeID:         opt.NodeID,
			MaxVolumes:     opt.Config.MaxVolumesPerNode,
			AllowOverwrite: opt.Config.AllowOverwrite,
			AllowedRoots:   opt.Config.AllowedRoots,
			Logger:         log,
			Formats:        p.Metrics.Formats(),
		})
		if err := p.Node.Start(ctx); err != nil {
			return nil, err
		}
		so.Node = p.Node
	}
	if p.srv, err = server.Listen(so); err != nil {
		return nil, err
	}
	return p, nil
}

// Serve answers calls until ctx is done.
func (p *Plugin) Serve(ctx context.Context) error {
	if p.metrics != nil {
		go func() {
			if err := p.metrics.Serve(p.metricsLis); err != nil && err != http.ErrServerClosed {
				p.log.Error("metrics server", zap.Error(err))
			}
		}()
		defer p.metrics.Close()
	}
	return p.srv.Serve(ctx)
}

// MetricsAddr returns the address metrics are served on, if any.
func (p *Plugin) MetricsAddr() string {
	if p.metricsLis == nil {
		return ""
	}
	return p.metricsLis.Addr().String()
}

func lookupGroup(g string) (int, error) {
	if g == "" {
		return -1, nil
	}
	if n, err := strconv.Atoi(g); err == nil {
		return n, nil
	}
	gr, err := user.LookupGroup(g)
	if err != nil {
		return 0, fmt.Errorf("socketGroup %q: %w", g, err)
	}
	return strconv.Atoi(gr.Gid)
}
