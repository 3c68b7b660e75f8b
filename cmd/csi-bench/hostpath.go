package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The hostpath baseline: the file work that kubernetes-csi's hostpath driver
// (v1.18, mount access) does per CreateVolume and DeleteVolume, served over
// a CSI unix socket by a process of its own (this binary, re-executed), so
// that the plugin and the baseline are driven by the same clients over the
// same gRPC path in the same run. The module proxy refuses the driver
// itself. Per call hostpath takes one global mutex, looks the name or id up
// in its in-memory list, makes (or removes) the volume's directory under its
// data root, and rewrites one JSON file of every volume with os.WriteFile:
// truncate and write, no fsync, no rename (pkg/state/state.go dump). A crash
// during that rewrite leaves a torn state file; none of it is durable when
// the reply goes out. The baseline does exactly that and nothing else (no
// logging, no capacity tracking, no request validation beyond the name), so
// it is, if anything, faster than the driver.
const serveHostpathArg = "serve-hostpath-baseline"

type hpVolume struct {
	VolName       string
	VolID         string
	VolSize       int64
	VolPath       string
	VolAccessType int
	Kind          string
	Attached      bool
}

type hostpathBaseline struct {
	csi.UnimplementedControllerServer
	csi.UnimplementedIdentityServer
	dataRoot, stateFile string

	mu      sync.Mutex
	volumes []hpVolume
}

// serveHostpath runs the baseline on sock with its data under dir until
// SIGTERM.
func serveHostpath(sock, dir string) error {
	hp := &hostpathBaseline{dataRoot: filepath.Join(dir, "data"), stateFile: filepath.Join(dir, "state.json")}
	if err := os.MkdirAll(hp.dataRoot, 0o750); err != nil {
		return err
	}
	os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	csi.RegisterIdentityServer(srv, hp)
	csi.RegisterControllerServer(srv, hp)
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		srv.GracefulStop()
	}()
	return srv.Serve(l)
}

func (hp *hostpathBaseline) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: "hostpath.baseline.csi-bench", VendorVersion: "v1.18-file-work"}, nil
}

func (hp *hostpathBaseline) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

func (hp *hostpathBaseline) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name missing")
	}
	hp.mu.Lock()
	defer hp.mu.Unlock()
	for _, v := range hp.volumes {
		if v.VolName == req.GetName() {
			return &csi.CreateVolumeResponse{Volume: &csi.Volume{VolumeId: v.VolID, CapacityBytes: v.VolSize}}, nil
		}
	}
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	path := filepath.Join(hp.dataRoot, id)
	if err := os.MkdirAll(path, 0o777); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	hp.volumes = append(hp.volumes, hpVolume{VolName: req.GetName(), VolID: id, VolSize: req.GetCapacityRange().GetRequiredBytes(), VolPath: path})
	if err := hp.dump(); err != nil {
		return nil, err
	}
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{VolumeId: id, CapacityBytes: req.GetCapacityRange().GetRequiredBytes()}}, nil
}

func (hp *hostpathBaseline) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	for i, v := range hp.volumes {
		if v.VolID == req.GetVolumeId() {
			if err := os.RemoveAll(v.VolPath); err != nil {
				return nil, status.Error(codes.Internal, err.Error())
			}
			hp.volumes = append(hp.volumes[:i], hp.volumes[i+1:]...)
			if err := hp.dump(); err != nil {
				return nil, err
			}
			break
		}
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// dump is hostpath's state write: the whole list, in place, not synced.
func (hp *hostpathBaseline) dump() error {
	data, err := json.Marshal(struct{ Volumes []hpVolume }{hp.volumes})
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	if err := os.WriteFile(hp.stateFile, data, 0o600); err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	return nil
}

// startHostpath runs the baseline as a process of its own, like the plugin.
func (h *harness) startHostpath(dir string) (*instance, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(h.root, filepath.Base(dir)+".sock")
	in := &instance{pool: dir, sock: sock, logPath: h.logPath("hostpath")}
	return h.launch(in, "hostpath baseline", self, serveHostpathArg, sock, dir)
}

// runHostpathIfAsked serves the baseline when this binary was started as
// one, and reports whether it was.
func runHostpathIfAsked() bool {
	if len(os.Args) != 4 || os.Args[1] != serveHostpathArg {
		return false
	}
	if err := serveHostpath(os.Args[2], os.Args[3]); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		fmt.Fprintln(os.Stderr, "hostpath baseline:", err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}
