// Command csi-libstorage is the CSI plugin: it serves the Identity,
// Controller and Node services on one endpoint for Mesos, Kubernetes or
// Nomad.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/csi-libstorage/csi-libstorage/identity"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "csi-libstorage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "force-detach" {
		return forceDetach(args[1:])
	}
	fs := flag.NewFlagSet("csi-libstorage", flag.ContinueOnError)
	f := wiring.RegisterFlags(fs, os.Getenv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.Version {
		fmt.Println(identity.PluginName, identity.VendorVersion())
		return nil
	}
	log, err := newLogger(f.LogLevel, f.LogFormat)
	if err != nil {
		return err
	}
	defer log.Sync()
	limit, err := memoryLimit(f.MemoryLimit, os.Getenv)
	if err != nil {
		return err
	}

	if f.NodeID == "" {
		f.NodeID = os.Getenv("MESOS_AGENT_ID")
	}
	if f.NodeID == "" {
		if f.NodeID, err = os.Hostname(); err != nil {
			return fmt.Errorf("no --node-id and no hostname: %w", err)
		}
	}
	cfg := config.Default(f.Pool)
	if f.Config != "" {
		if cfg, err = config.Load(f.Config); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Info("starting", zap.String("plugin", identity.PluginName), zap.String("version", identity.VendorVersion()),
		zap.String("mode", f.Mode), zap.String("node", f.NodeID), zap.String("endpoint", f.Endpoint), zap.Int64("memoryLimitBytes", limit))
	p, err := wiring.New(ctx, wiring.Options{
		Endpoint:       f.Endpoint,
		NodeID:         f.NodeID,
		Mode:           f.Mode,
		Config:         cfg,
		ShutdownGrace:  f.ShutdownGrace,
		Logger:         log,
		MetricsAddress: f.MetricsAddress,
		Factories:      testFactories(),
	})
	if err != nil {
		return err
	}
	if err := p.Serve(ctx); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

func newLogger(level, format string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console":
		cfg = zap.NewDevelopmentConfig()
	default:
		return nil, fmt.Errorf("--log-format %q: want json or console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil // every call is logged; a dropped line hides an operation
	return cfg.Build()
}
