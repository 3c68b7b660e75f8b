package wiring

import (
	"flag"
	"time"
)

// DefaultEndpoint is used when neither --endpoint nor $CSI_ENDPOINT is set.
const DefaultEndpoint = "unix:///run/csi-libstorage/csi.sock"

// DefaultPool is the pool directory of the default file backend.
const DefaultPool = "/var/lib/csi-libstorage/pool"

// Flags are the values of the plugin's command-line flags.
type Flags struct {
	Endpoint       string
	NodeID         string
	Mode           string
	Config         string
	Pool           string
	LogLevel       string
	LogFormat      string
	MetricsAddress string
	ShutdownGrace  time.Duration
	MemoryLimit    string
	Version        bool
}

// DefaultMemoryLimit is the plugin's default soft memory limit (Go's
// runtime/debug.SetMemoryLimit): a node daemon should give back what a
// burst (a ListVolumes of thousands of volumes) took instead of keeping it.
// A pool's live data takes about 1.5 KiB per volume, so up to some 10,000
// volumes per plugin the collector runs no more often than it would anyway.
const DefaultMemoryLimit = "28MiB"

// RegisterFlags defines the plugin's flags on fs and returns where their
// values land once fs is parsed. It is the one definition of the flag set:
// the binary parses its arguments with it, and the deploy validators read
// it to check the commands that Mesos, Kubernetes and Nomad files run.
// getenv supplies defaults taken from the environment ($CSI_ENDPOINT); nil
// means none.
func RegisterFlags(fs *flag.FlagSet, getenv func(string) string) *Flags {
	endpoint := DefaultEndpoint
	if getenv != nil {
		if v := getenv("CSI_ENDPOINT"); v != "" {
			endpoint = v
		}
	}
	f := &Flags{}
	fs.StringVar(&f.Endpoint, "endpoint", endpoint, "CSI endpoint, unix:///path/csi.sock or tcp://host:port (default $CSI_ENDPOINT)")
	fs.StringVar(&f.NodeID, "node-id", "", "this node's id (default $MESOS_AGENT_ID, else the hostname)")
	fs.StringVar(&f.Mode, "mode", ModeAll, "services to serve: controller, node or all")
	fs.StringVar(&f.Config, "config", "", "configuration file (YAML or JSON); without it, one file backend named local in --pool")
	fs.StringVar(&f.Pool, "pool", DefaultPool, "pool directory of the default file backend, used only without --config")
	fs.StringVar(&f.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.LogFormat, "log-format", "json", "json or console")
	fs.StringVar(&f.MetricsAddress, "metrics-address", "", "serve Prometheus metrics at http://ADDRESS/metrics (e.g. 127.0.0.1:9809); off when empty")
	fs.DurationVar(&f.ShutdownGrace, "shutdown-grace", 30*time.Second, "how long calls in flight may run after SIGTERM")
	fs.StringVar(&f.MemoryLimit, "memory-limit", DefaultMemoryLimit, "soft limit of the plugin's memory (Go's GOMEMLIMIT, which wins when set); 0 turns it off. Raise it for pools of more than about 10,000 volumes")
	fs.BoolVar(&f.Version, "version", false, "print the version and exit")
	return f
}
