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
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/csi-libstorage/csi-libstorage/identity"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
)

// DefaultEndpoint is used when neither --endpoint nor $CSI_ENDPOINT is set.
const DefaultEndpoint = "unix:///run/csi-libstorage/csi.sock"

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
	endpoint := fs.String("endpoint", envOr("CSI_ENDPOINT", DefaultEndpoint), "CSI endpoint, unix:///path/csi.sock or tcp://host:port (default $CSI_ENDPOINT)")
	nodeID := fs.String("node-id", "", "this node's id (default $MESOS_AGENT_ID, else the hostname)")
	mode := fs.String("mode", wiring.ModeAll, "services to serve: controller, node or all")
	cfgPath := fs.String("config", "", "configuration file (YAML or JSON); without it, one file backend named local in --pool")
	pool := fs.String("pool", "/var/lib/csi-libstorage/pool", "pool directory of the default file backend, used only without --config")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "json", "json or console")
	metricsAddr := fs.String("metrics-address", "", "serve Prometheus metrics at http://ADDRESS/metrics (e.g. 127.0.0.1:9808); off when empty")
	grace := fs.Duration("shutdown-grace", 30*time.Second, "how long calls in flight may run after SIGTERM")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version {
		fmt.Println(identity.PluginName, identity.VendorVersion())
		return nil
	}
	log, err := newLogger(*level, *format)
	if err != nil {
		return err
	}
	defer log.Sync()

	if *nodeID == "" {
		*nodeID = os.Getenv("MESOS_AGENT_ID")
	}
	if *nodeID == "" {
		if *nodeID, err = os.Hostname(); err != nil {
			return fmt.Errorf("no --node-id and no hostname: %w", err)
		}
	}
	cfg := config.Default(*pool)
	if *cfgPath != "" {
		if cfg, err = config.Load(*cfgPath); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Info("starting", zap.String("plugin", identity.PluginName), zap.String("version", identity.VendorVersion()),
		zap.String("mode", *mode), zap.String("node", *nodeID), zap.String("endpoint", *endpoint))
	p, err := wiring.New(ctx, wiring.Options{
		Endpoint:       *endpoint,
		NodeID:         *nodeID,
		Mode:           *mode,
		Config:         cfg,
		ShutdownGrace:  *grace,
		Logger:         log,
		MetricsAddress: *metricsAddr,
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

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
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
