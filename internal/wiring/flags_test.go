package wiring

import (
	"flag"
	"testing"
	"time"
)

func TestRegisterFlags(t *testing.T) {
	cases := []struct {
		name   string
		env    map[string]string
		args   []string
		want   Flags
		getenv bool
	}{
		{"defaults", nil, nil, Flags{Endpoint: DefaultEndpoint, Mode: ModeAll, Pool: DefaultPool, LogLevel: "info", LogFormat: "json", ShutdownGrace: 30 * time.Second, MemoryLimit: DefaultMemoryLimit}, false},
		{"endpoint from $CSI_ENDPOINT", map[string]string{"CSI_ENDPOINT": "unix:///tmp/m/endpoint.sock"}, nil,
			Flags{Endpoint: "unix:///tmp/m/endpoint.sock", Mode: ModeAll, Pool: DefaultPool, LogLevel: "info", LogFormat: "json", ShutdownGrace: 30 * time.Second, MemoryLimit: DefaultMemoryLimit}, true},
		{"flag beats $CSI_ENDPOINT", map[string]string{"CSI_ENDPOINT": "unix:///env.sock"},
			[]string{"--endpoint=unix:///flag.sock", "--node-id", "n1", "--mode=node", "--config=/c.yaml", "--pool=/p", "--log-level=debug", "--log-format=console", "--metrics-address=127.0.0.1:9808", "--shutdown-grace=5s", "--memory-limit=64MiB", "--version"},
			Flags{Endpoint: "unix:///flag.sock", NodeID: "n1", Mode: ModeNode, Config: "/c.yaml", Pool: "/p", LogLevel: "debug", LogFormat: "console", MetricsAddress: "127.0.0.1:9808", ShutdownGrace: 5 * time.Second, MemoryLimit: "64MiB", Version: true}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			var getenv func(string) string
			if c.getenv {
				getenv = func(k string) string { return c.env[k] }
			}
			f := RegisterFlags(fs, getenv)
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			if *f != c.want {
				t.Fatalf("got %+v, want %+v", *f, c.want)
			}
		})
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(testWriter{t})
	RegisterFlags(fs, nil)
	if err := fs.Parse([]string{"--nodeid=x"}); err == nil {
		t.Fatal("--nodeid accepted; the flag is --node-id")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
