package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
)

// nodeID is the node the benchmark's plugin serves.
const nodeID = "bench-node"

// instance is one running plugin: the built binary in its own process, or,
// for profiling, the same assembly run in this process.
type instance struct {
	pool, sock string
	started    time.Time
	cmd        *exec.Cmd  // process mode
	exited     chan error // process mode: Wait's result
	cancel     func()     // in-process mode
	done       chan error // in-process mode: Serve's result
	conn       *grpc.ClientConn
	id         csi.IdentityClient
	ctrl       csi.ControllerClient
	node       csi.NodeClient
	logPath    string
}

// start launches a plugin on pool, serving sock, and waits until it
// answers Probe.
func (h *harness) start(pool string) (*instance, error) {
	sock := filepath.Join(h.root, filepath.Base(pool)+".sock")
	in := &instance{pool: pool, sock: sock, logPath: h.logPath("plugin")}
	in.started = time.Now()
	if h.inProcess {
		log, err := warnLogger(in.logPath)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		p, err := wiring.New(ctx, wiring.Options{
			Endpoint: "unix://" + sock, NodeID: nodeID, Mode: wiring.ModeAll,
			Config: config.Default(pool), Logger: log, ShutdownGrace: 30 * time.Second,
		})
		if err != nil {
			cancel()
			return nil, err
		}
		in.cancel, in.done = cancel, make(chan error, 1)
		go func() { in.done <- p.Serve(ctx) }()
		if err := in.waitReady(60 * time.Second); err != nil {
			h.stop(in)
			return nil, fmt.Errorf("plugin did not become ready: %w (log %s: %s)", err, in.logPath, tail(in.logPath))
		}
		return in, nil
	}
	return h.launch(in, "plugin", h.pluginBin, "--endpoint", "unix://"+sock, "--pool", pool,
		"--node-id", nodeID, "--mode", "all", "--log-level", "warn", "--log-format", "json")
}

// logPath returns a new log file name in the work directory.
func (h *harness) logPath(what string) string {
	h.logSeq++
	return filepath.Join(h.root, fmt.Sprintf("%s-%d.log", what, h.logSeq))
}

// launch runs name with args as the process behind in, its output in
// in.logPath, and waits until it answers Probe on in.sock.
func (h *harness) launch(in *instance, what, name string, args ...string) (*instance, error) {
	logf, err := os.Create(in.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	in.cmd = exec.Command(name, args...)
	in.cmd.Stdout, in.cmd.Stderr = logf, logf
	// If this harness dies, the process is told to stop too.
	in.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	in.started = time.Now()
	if err := in.cmd.Start(); err != nil {
		return nil, err
	}
	h.pids[in.cmd.Process.Pid] = true
	in.exited = make(chan error, 1)
	go func() { in.exited <- in.cmd.Wait() }()
	if err := in.waitReady(60 * time.Second); err != nil {
		h.stop(in)
		return nil, fmt.Errorf("%s did not become ready: %w (log %s: %s)", what, err, in.logPath, tail(in.logPath))
	}
	return in, nil
}

// waitReady polls the socket every millisecond, then calls Probe until it
// answers ready.
func (in *instance) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if in.exited != nil {
			select {
			case err := <-in.exited:
				in.exited <- err
				return fmt.Errorf("plugin exited: %v", err)
			default:
			}
		}
		c, err := net.DialTimeout("unix", in.sock, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	conn, err := grpc.NewClient("unix://"+in.sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		return err
	}
	in.conn = conn
	in.id, in.ctrl, in.node = csi.NewIdentityClient(conn), csi.NewControllerClient(conn), csi.NewNodeClient(conn)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := in.id.Probe(ctx, &csi.ProbeRequest{}, grpc.WaitForReady(true))
		cancel()
		if err == nil && (r.GetReady() == nil || r.GetReady().GetValue()) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("probe: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// pid is the plugin's process id (this process when in-process).
func (in *instance) pid() int {
	if in.cmd != nil {
		return in.cmd.Process.Pid
	}
	return os.Getpid()
}

// stop sends SIGTERM (or cancels the in-process server) and waits for the
// exit; it returns how long the stop took.
func (h *harness) stop(in *instance) (time.Duration, error) {
	if in == nil {
		return 0, nil
	}
	if in.conn != nil {
		in.conn.Close()
	}
	t0 := time.Now()
	var err error
	if in.cmd != nil {
		in.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-in.exited:
		case <-time.After(60 * time.Second):
			in.cmd.Process.Kill()
			err = errors.Join(errors.New("plugin ignored SIGTERM for 60s; killed"), <-in.exited)
		}
		delete(h.pids, in.cmd.Process.Pid)
	} else {
		in.cancel()
		err = <-in.done
	}
	return time.Since(t0), err
}

func warnLogger(path string) (*zap.Logger, error) {
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(zapcore.WarnLevel)
	cfg.OutputPaths = []string{path}
	cfg.ErrorOutputPaths = []string{path}
	return cfg.Build()
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}

// procStatus reads fields such as VmRSS from /proc/<pid>/status, in KiB.
func procStatus(pid int, keys ...string) map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, want := range keys {
			if k == want {
				var n int64
				fmt.Sscanf(strings.TrimSpace(v), "%d", &n)
				out[k] = n
			}
		}
	}
	return out
}
