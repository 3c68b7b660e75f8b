package main

import (
	"context"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// fakePlugin is an in-memory CSI plugin for driving the CLI in tests. It
// keeps the last request of each RPC and counts calls.
type fakePlugin struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer

	mu        sync.Mutex
	ready     bool
	vols      map[string]*csi.Volume
	order     []string            // volume IDs in creation order
	published map[string][]string // volume ID -> node IDs
	staged    map[string]string   // volume ID -> staging path
	targets   map[string]string   // volume ID -> target path
	last      map[string]proto.Message
	calls     map[string]int
}

func newFakePlugin() *fakePlugin {
	return &fakePlugin{
		ready:     true,
		vols:      map[string]*csi.Volume{},
		published: map[string][]string{},
		staged:    map[string]string{},
		targets:   map[string]string{},
		last:      map[string]proto.Message{},
		calls:     map[string]int{},
	}
}

// startFake serves f on a unix socket in a temporary directory and
// returns the endpoint. Without controller the Controller service is not
// registered, as for a plugin in node-only mode.
func startFake(t *testing.T, f *fakePlugin, controller bool) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "csi.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	csi.RegisterIdentityServer(srv, f)
	if controller {
		csi.RegisterControllerServer(srv, f)
	}
	csi.RegisterNodeServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return "unix://" + sock
}

func (f *fakePlugin) record(method string, req proto.Message) {
	f.last[method] = proto.Clone(req)
	f.calls[method]++
}

// lastReq returns the last request f received for method.
func lastReq[T proto.Message](t *testing.T, f *fakePlugin, method string) T {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.last[method]
	if !ok {
		t.Fatalf("plugin received no %s", method)
	}
	return m.(T)
}

func (f *fakePlugin) callCount(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func notFound(id string) error { return status.Errorf(codes.NotFound, "volume %s not found", id) }

// Identity

func (f *fakePlugin) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: "fake.csi.example.com", VendorVersion: "0.0.1",
		Manifest: map[string]string{"mode": "test"}}, nil
}

func (f *fakePlugin) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{
		{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: csi.PluginCapability_Service_CONTROLLER_SERVICE}}},
		{Type: &csi.PluginCapability_VolumeExpansion_{VolumeExpansion: &csi.PluginCapability_VolumeExpansion{Type: csi.PluginCapability_VolumeExpansion_ONLINE}}},
	}}, nil
}

func (f *fakePlugin) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(f.ready)}, nil
}

// Controller

func (f *fakePlugin) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{
			Rpc: &csi.ControllerServiceCapability_RPC{Type: t}}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (f *fakePlugin) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("CreateVolume", req)
	id := "id-" + req.GetName()
	if v, ok := f.vols[id]; ok {
		return &csi.CreateVolumeResponse{Volume: v}, nil
	}
	v := &csi.Volume{VolumeId: id, CapacityBytes: req.GetCapacityRange().GetRequiredBytes(),
		VolumeContext: map[string]string{"name": req.GetName()}}
	f.vols[id] = v
	f.order = append(f.order, id)
	return &csi.CreateVolumeResponse{Volume: v}, nil
}

func (f *fakePlugin) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("DeleteVolume", req)
	if s := req.GetSecrets()["token"]; s == "wrong" {
		// A careless plugin echoing the secret; the CLI must scrub it.
		return nil, status.Errorf(codes.PermissionDenied, "token %q rejected", s)
	}
	delete(f.vols, req.GetVolumeId())
	for i, id := range f.order {
		if id == req.GetVolumeId() {
			f.order = append(f.order[:i], f.order[i+1:]...)
			break
		}
	}
	return &csi.DeleteVolumeResponse{}, nil
}

func (f *fakePlugin) ControllerPublishVolume(_ context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ControllerPublishVolume", req)
	id := req.GetVolumeId()
	if f.vols[id] == nil {
		return nil, notFound(id)
	}
	f.published[id] = append(f.published[id], req.GetNodeId())
	return &csi.ControllerPublishVolumeResponse{PublishContext: map[string]string{
		"devicePath": "/dev/fake/" + id, "lun": "3"}}, nil
}

func (f *fakePlugin) ControllerUnpublishVolume(_ context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ControllerUnpublishVolume", req)
	var keep []string
	for _, n := range f.published[req.GetVolumeId()] {
		if n != req.GetNodeId() {
			keep = append(keep, n)
		}
	}
	f.published[req.GetVolumeId()] = keep
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}

func (f *fakePlugin) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ValidateVolumeCapabilities", req)
	if f.vols[req.GetVolumeId()] == nil {
		return nil, notFound(req.GetVolumeId())
	}
	for _, c := range req.GetVolumeCapabilities() {
		if c.GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: "multi-writer unsupported"}, nil
		}
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeCapabilities: req.GetVolumeCapabilities()}}, nil
}

// ListVolumes pages through volumes in creation order; the token is the
// index of the next entry.
func (f *fakePlugin) ListVolumes(_ context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ListVolumes", req)
	start := 0
	if tok := req.GetStartingToken(); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n > len(f.order) {
			return nil, status.Errorf(codes.Aborted, "bad token %q", tok)
		}
		start = n
	}
	end := len(f.order)
	if m := int(req.GetMaxEntries()); m > 0 && start+m < end {
		end = start + m
	}
	resp := &csi.ListVolumesResponse{}
	for _, id := range f.order[start:end] {
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{
			Volume: f.vols[id],
			Status: &csi.ListVolumesResponse_VolumeStatus{PublishedNodeIds: f.published[id]},
		})
	}
	if end < len(f.order) {
		resp.NextToken = strconv.Itoa(end)
	}
	return resp, nil
}

func (f *fakePlugin) ControllerGetVolume(_ context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ControllerGetVolume", req)
	v := f.vols[req.GetVolumeId()]
	if v == nil {
		return nil, notFound(req.GetVolumeId())
	}
	nodes := append([]string(nil), f.published[v.GetVolumeId()]...)
	sort.Strings(nodes)
	return &csi.ControllerGetVolumeResponse{Volume: v,
		Status: &csi.ControllerGetVolumeResponse_VolumeStatus{PublishedNodeIds: nodes}}, nil
}

func (f *fakePlugin) GetCapacity(_ context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("GetCapacity", req)
	return &csi.GetCapacityResponse{AvailableCapacity: 10 << 30, MaximumVolumeSize: wrapperspb.Int64(4 << 30)}, nil
}

// Node

func (f *fakePlugin) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{Capabilities: []*csi.NodeServiceCapability{
		{Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME}}},
		{Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: csi.NodeServiceCapability_RPC_GET_VOLUME_STATS}}},
	}}, nil
}

func (f *fakePlugin) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: "node-1", MaxVolumesPerNode: 16,
		AccessibleTopology: &csi.Topology{Segments: map[string]string{"zone": "a"}}}, nil
}

func (f *fakePlugin) NodeStageVolume(_ context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("NodeStageVolume", req)
	f.staged[req.GetVolumeId()] = req.GetStagingTargetPath()
	return &csi.NodeStageVolumeResponse{}, nil
}

func (f *fakePlugin) NodeUnstageVolume(_ context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("NodeUnstageVolume", req)
	delete(f.staged, req.GetVolumeId())
	return &csi.NodeUnstageVolumeResponse{}, nil
}

func (f *fakePlugin) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("NodePublishVolume", req)
	f.targets[req.GetVolumeId()] = req.GetTargetPath()
	return &csi.NodePublishVolumeResponse{}, nil
}

func (f *fakePlugin) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("NodeUnpublishVolume", req)
	delete(f.targets, req.GetVolumeId())
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

func (f *fakePlugin) NodeGetVolumeStats(_ context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("NodeGetVolumeStats", req)
	v := f.vols[req.GetVolumeId()]
	if v == nil || f.targets[req.GetVolumeId()] != req.GetVolumePath() {
		return nil, status.Errorf(codes.NotFound, "volume %s not published at %s", req.GetVolumeId(), req.GetVolumePath())
	}
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
		{Unit: csi.VolumeUsage_BYTES, Total: v.GetCapacityBytes(), Used: 256 << 20, Available: v.GetCapacityBytes() - 256<<20},
		{Unit: csi.VolumeUsage_INODES, Total: 65536, Used: 11, Available: 65525},
	}}, nil
}
