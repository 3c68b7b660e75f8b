package server

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/csi-libstorage/csi-libstorage/internal/lock"
)

// TestLockKeys: every method of the three services is in the table, with
// the key its request takes ("" for none), so an RPC added to the spec or
// implemented later cannot go unlocked unnoticed. The request is passed
// through the method's own generated handler, so a table row whose request
// does not belong to its method fails too.
func TestLockKeys(t *testing.T) {
	const id, name, snap = "local/0123456789abcdef0123456789abcdef", "pvc-1", "local/snap-1"
	want := map[string]struct {
		req proto.Message
		key string
	}{
		csi.Identity_GetPluginInfo_FullMethodName:         {&csi.GetPluginInfoRequest{}, ""},
		csi.Identity_GetPluginCapabilities_FullMethodName: {&csi.GetPluginCapabilitiesRequest{}, ""},
		csi.Identity_Probe_FullMethodName:                 {&csi.ProbeRequest{}, ""},

		csi.Controller_CreateVolume_FullMethodName: {&csi.CreateVolumeRequest{Name: name,
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}}}, "name:" + name},
		csi.Controller_DeleteVolume_FullMethodName:               {&csi.DeleteVolumeRequest{VolumeId: id}, "volume:" + id},
		csi.Controller_ControllerPublishVolume_FullMethodName:    {&csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "n1"}, "volume:" + id},
		csi.Controller_ControllerUnpublishVolume_FullMethodName:  {&csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: "n1"}, "volume:" + id},
		csi.Controller_ValidateVolumeCapabilities_FullMethodName: {&csi.ValidateVolumeCapabilitiesRequest{VolumeId: id}, ""},
		csi.Controller_ListVolumes_FullMethodName:                {&csi.ListVolumesRequest{}, ""},
		csi.Controller_ControllerListVolumeHealth_FullMethodName: {&csi.ControllerListVolumeHealthRequest{}, ""},
		csi.Controller_ControllerGetVolumeHealth_FullMethodName:  {&csi.ControllerGetVolumeHealthRequest{VolumeId: id}, ""},
		csi.Controller_GetCapacity_FullMethodName:                {&csi.GetCapacityRequest{}, ""},
		csi.Controller_ControllerGetCapabilities_FullMethodName:  {&csi.ControllerGetCapabilitiesRequest{}, ""},
		csi.Controller_CreateSnapshot_FullMethodName:             {&csi.CreateSnapshotRequest{SourceVolumeId: id, Name: "s1"}, "volume:" + id},
		csi.Controller_DeleteSnapshot_FullMethodName:             {&csi.DeleteSnapshotRequest{SnapshotId: snap}, "snapshot:" + snap},
		csi.Controller_ListSnapshots_FullMethodName:              {&csi.ListSnapshotsRequest{SourceVolumeId: id}, ""},
		csi.Controller_GetSnapshot_FullMethodName:                {&csi.GetSnapshotRequest{SnapshotId: snap}, ""},
		csi.Controller_ControllerExpandVolume_FullMethodName:     {&csi.ControllerExpandVolumeRequest{VolumeId: id}, "volume:" + id},
		csi.Controller_ControllerGetVolume_FullMethodName:        {&csi.ControllerGetVolumeRequest{VolumeId: id}, "volume:" + id},
		csi.Controller_ControllerModifyVolume_FullMethodName:     {&csi.ControllerModifyVolumeRequest{VolumeId: id}, "volume:" + id},

		csi.Node_NodeStageVolume_FullMethodName:      {&csi.NodeStageVolumeRequest{VolumeId: id}, "volume:" + id},
		csi.Node_NodeUnstageVolume_FullMethodName:    {&csi.NodeUnstageVolumeRequest{VolumeId: id}, "volume:" + id},
		csi.Node_NodePublishVolume_FullMethodName:    {&csi.NodePublishVolumeRequest{VolumeId: id}, "volume:" + id},
		csi.Node_NodeUnpublishVolume_FullMethodName:  {&csi.NodeUnpublishVolumeRequest{VolumeId: id}, "volume:" + id},
		csi.Node_NodeGetVolumeStats_FullMethodName:   {&csi.NodeGetVolumeStatsRequest{VolumeId: id}, "volume:" + id},
		csi.Node_NodeExpandVolume_FullMethodName:     {&csi.NodeExpandVolumeRequest{VolumeId: id}, "volume:" + id},
		csi.Node_NodeGetCapabilities_FullMethodName:  {&csi.NodeGetCapabilitiesRequest{}, ""},
		csi.Node_NodeGetInfo_FullMethodName:          {&csi.NodeGetInfoRequest{}, ""},
		csi.Node_NodeGetVolumeHealth_FullMethodName:  {&csi.NodeGetVolumeHealthRequest{VolumeId: id}, ""},
		csi.Node_NodeGetStorageHealth_FullMethodName: {&csi.NodeGetStorageHealthRequest{}, ""},
	}
	seen := map[string]bool{}
	for _, sd := range []grpc.ServiceDesc{csi.Identity_ServiceDesc, csi.Controller_ServiceDesc, csi.Node_ServiceDesc} {
		for _, md := range sd.Methods {
			full := "/" + sd.ServiceName + "/" + md.MethodName
			seen[full] = true
			w, ok := want[full]
			if !ok {
				t.Errorf("%s is not in the table: decide whether it takes the volume lock", full)
				continue
			}
			dec := func(in any) error { proto.Merge(in.(proto.Message), w.req); return nil }
			var got string
			var typeOK bool
			capture := func(_ context.Context, req any, info *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
				typeOK = info.FullMethod == full && proto.Equal(req.(proto.Message), w.req)
				got = lockKey(req)
				return nil, nil
			}
			if _, err := md.Handler(nil, context.Background(), dec, capture); err != nil {
				t.Fatalf("%s: %v", full, err)
			}
			if !typeOK {
				t.Errorf("%s: the table's request %T is not this method's", full, w.req)
			}
			if got != w.key {
				t.Errorf("%s: key %q, want %q", full, got, w.key)
			}
		}
	}
	for full := range want {
		if !seen[full] {
			t.Errorf("%s is in the table but not in the CSI services", full)
		}
	}
	// An empty id takes no lock; the service refuses the request.
	if k := lockKey(&csi.NodeStageVolumeRequest{}); k != "" {
		t.Errorf("empty volume id locked %q", k)
	}
}

// holdingNode is a node service whose NodeStageVolume and NodeUnstageVolume
// report that they run and then wait until their volume is released.
type holdingNode struct {
	csi.UnimplementedNodeServer
	mu       sync.Mutex
	release  map[string]chan struct{}
	entered  chan string
	inside   map[string]int // calls inside the handler, by volume
	maxInVol atomic.Int32   // most calls of one volume ever inside at once
	calls    atomic.Int32
	open     bool // releaseAll was called
}

func newHoldingNode() *holdingNode {
	return &holdingNode{release: map[string]chan struct{}{}, entered: make(chan string, 64), inside: map[string]int{}}
}

// gate returns the channel that releases the calls of vol.
func (n *holdingNode) gate(vol string) chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.release[vol] == nil {
		n.release[vol] = make(chan struct{})
		if n.open {
			close(n.release[vol])
		}
	}
	return n.release[vol]
}

// releaseAll lets every call through, now and later.
func (n *holdingNode) releaseAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for vol, c := range n.release {
		select {
		case <-c:
		default:
			close(c)
		}
		delete(n.release, vol)
	}
	n.open = true
}

func (n *holdingNode) hold(vol string) {
	n.calls.Add(1)
	n.mu.Lock()
	n.inside[vol]++
	if c := int32(n.inside[vol]); c > n.maxInVol.Load() {
		n.maxInVol.Store(c)
	}
	n.mu.Unlock()
	n.entered <- vol
	<-n.gate(vol)
	n.mu.Lock()
	n.inside[vol]--
	n.mu.Unlock()
}

func (n *holdingNode) NodeStageVolume(_ context.Context, r *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	n.hold(r.GetVolumeId())
	return &csi.NodeStageVolumeResponse{}, nil
}

func (n *holdingNode) NodeUnstageVolume(_ context.Context, r *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	n.hold(r.GetVolumeId())
	return &csi.NodeUnstageVolumeResponse{}, nil
}

func startLocked(t *testing.T, n *holdingNode) (csi.NodeClient, *lock.Keyed) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "csi.sock")
	locks := new(lock.Keyed)
	s, err := Listen(Options{Endpoint: "unix://" + sock, SocketGID: -1, Logger: zap.NewNop(), Identity: &fakeIdentity{},
		Node: n, Locks: locks, ShutdownGrace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		n.releaseAll() // a failed test must not leave calls that block the stop
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return csi.NewNodeClient(dial(t, sock)), locks
}

func stage(ctx context.Context, c csi.NodeClient, vol string) error {
	_, err := c.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: vol})
	return err
}

// Calls on one volume run one at a time: while one holds the volume, a
// second gives up at its deadline with DEADLINE_EXCEEDED without ever
// running; many at once all complete, never two inside together.
func TestVolumeLockSerializes(t *testing.T) {
	n := newHoldingNode()
	c, locks := startLocked(t, n)

	first := make(chan error, 1)
	go func() { first <- stage(context.Background(), c, "local/a") }()
	<-n.entered

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "local/a"})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call on a busy volume: %v, want DeadlineExceeded (never Aborted: Mesos gives up on it)", err)
	}
	if got := n.calls.Load(); got != 1 {
		t.Fatalf("%d calls ran while the volume was held, want 1", got)
	}
	// The server's deadline can end a little after the client's (it counts
	// from when the request arrived): wait until its waiter has given up,
	// so it cannot take the lock once the holder lets go.
	for deadline := time.Now().Add(5 * time.Second); locks.Refs("volume:local/a") != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("the timed-out waiter still holds a reference: %d", locks.Refs("volume:local/a"))
		}
		runtime.Gosched()
	}

	const waiters = 8
	errs := make(chan error, waiters)
	for range waiters {
		go func() { errs <- stage(context.Background(), c, "local/a") }()
	}
	close(n.gate("local/a")) // every call of local/a now runs through
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range waiters {
		if err := <-errs; err != nil {
			t.Errorf("a waiting call failed: %v", err)
		}
	}
	if m := n.maxInVol.Load(); m != 1 {
		t.Errorf("%d calls of one volume ran at once, want 1", m)
	}
	if got := n.calls.Load(); got != 1+waiters {
		t.Errorf("%d calls ran, want %d", got, 1+waiters)
	}
	if locks.Len() != 0 {
		t.Errorf("%d locks left", locks.Len())
	}
}

// Calls on different volumes do not wait for each other: b runs to the
// end while a is held.
func TestVolumeLockDifferentVolumesInParallel(t *testing.T) {
	n := newHoldingNode()
	c, _ := startLocked(t, n)
	first := make(chan error, 1)
	go func() { first <- stage(context.Background(), c, "local/a") }()
	<-n.entered

	close(n.gate("local/b"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := stage(ctx, c, "local/b"); err != nil {
		t.Fatalf("a call on volume b waited for volume a: %v", err)
	}
	close(n.gate("local/a"))
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

// A waiter whose deadline passes leaves nothing behind: no goroutine still
// waiting for the lock, and no entry in the lock set beyond the holder's.
func TestVolumeLockTimedOutWaiterLeavesNothing(t *testing.T) {
	n := newHoldingNode()
	c, locks := startLocked(t, n)
	first := make(chan error, 1)
	go func() { first <- stage(context.Background(), c, "local/a") }()
	<-n.entered

	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err := stage(ctx, c, "local/a")
		cancel()
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("waiter %d: %v, want DeadlineExceeded", i, err)
		}
	}
	// The client's deadline can fire before the server's; give the server
	// side a bounded time to return from its wait.
	deadline := time.Now().Add(5 * time.Second)
	for waitingForLock() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines still wait for a volume lock after their deadline:\n%s", waitingForLock(), stacks())
		}
		runtime.Gosched()
	}
	if locks.Len() != 1 {
		t.Errorf("%d lock entries while one call holds one volume, want 1", locks.Len())
	}
	close(n.gate("local/a"))
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if locks.Len() != 0 {
		t.Errorf("%d locks left after every call returned", locks.Len())
	}
	if got := n.calls.Load(); got != 1 {
		t.Errorf("%d calls ran, want only the holder", got)
	}
}

func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// waitingForLock counts the goroutines blocked in lock.(*Keyed).Lock.
func waitingForLock() int {
	return strings.Count(stacks(), fmt.Sprintf("%s.(*Keyed).Lock(", "internal/lock"))
}
