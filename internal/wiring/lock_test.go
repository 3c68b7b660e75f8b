package wiring

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/backends/file"
	"github.com/csi-libstorage/csi-libstorage/internal/config"
)

// blockingAttach holds Attach until released, to keep a volume busy.
type blockingAttach struct {
	backends.Backend
	entered chan struct{}
	release chan struct{}
}

func (b *blockingAttach) Attach(ctx context.Context, id string, r backends.AttachRequest) (map[string]string, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.Backend.Attach(ctx, id, r)
}

// The plugin as New assembles it (the binary, csi-bench's in-process mode
// and the suites that start it in process) runs one call per volume: a
// second call on a busy volume gives up at its deadline with
// DEADLINE_EXCEEDED, and another volume is not held up. No root is needed:
// the controller attaches nothing on the machine.
func TestAssembledPluginLocksPerVolume(t *testing.T) {
	dir := t.TempDir()
	bl := &blockingAttach{entered: make(chan struct{}, 1), release: make(chan struct{})}
	real := Factories()[file.Type]
	ctx, cancel := context.WithCancel(context.Background())
	p, err := New(ctx, Options{
		Endpoint: "unix://" + filepath.Join(dir, "csi.sock"), Mode: ModeController,
		Config: config.Default(filepath.Join(dir, "pool")), Logger: zap.NewNop(),
		Factories: map[string]Factory{file.Type: func(e config.Entry, o BackendOptions) (backends.Backend, error) {
			b, err := real(e, o)
			bl.Backend = b
			return bl, err
		}},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(bl.release) }) }
	t.Cleanup(func() { release(); cancel(); <-done }) // a failed test must not leave Attach blocking the stop
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "csi.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := csi.NewControllerClient(conn)
	mount := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	create := func(name string) string {
		r, err := c.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{mount},
			CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetVolume().GetVolumeId()
	}
	a, b := create("a"), create("b")

	published := make(chan error, 1)
	go func() {
		_, err := c.ControllerPublishVolume(context.Background(), &csi.ControllerPublishVolumeRequest{VolumeId: a, NodeId: "n1", VolumeCapability: mount})
		published <- err
	}()
	<-bl.entered
	wait, cancelWait := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelWait()
	_, err = c.ControllerUnpublishVolume(wait, &csi.ControllerUnpublishVolumeRequest{VolumeId: a, NodeId: "n1"})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call on a busy volume: %v, want DeadlineExceeded", err)
	}
	if _, err := c.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: b}); err != nil {
		t.Fatalf("another volume was held up: %v", err)
	}
	release()
	<-published // its result depends on the pool's node registry, not on the lock
}
