package server

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"

	"github.com/csi-libstorage/csi-libstorage/internal/lock"
)

// volumeLock runs the calls that act on one volume one at a time (invariant
// 4); calls on different volumes run in parallel. A call whose volume is
// busy waits, and gives up at its deadline with DEADLINE_EXCEEDED (lock.Run),
// never ABORTED, which Mesos would take as final. Locking here, around the
// gRPC handlers, keeps the services plain code, and every process that
// serves them (the binary, csi-bench's in-process mode, the suites that
// start the plugin in process) goes through it.
func volumeLock(locks *lock.Keyed) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		key := lockKey(req)
		if key == "" {
			return h(ctx, req)
		}
		return lock.Run(ctx, locks, key, func() (any, error) { return h(ctx, req) })
	}
}

// lockKey names what a request must hold: its volume, or for CreateVolume
// the name (two creates of one name must not both make a volume), for
// CreateSnapshot the source volume (held while it is copied), and for
// DeleteSnapshot the snapshot. Controller and node calls share the key
// space, so in a process serving both a stage never overlaps a delete of
// the same volume.
//
// Calls that only read listings or capabilities (ListVolumes, GetCapacity,
// ValidateVolumeCapabilities, ListSnapshots, GetSnapshot, the alpha health
// calls, NodeGetInfo, the capability and identity calls) take no lock:
// Mesos calls ListVolumes and GetCapacity every reconciliation, and they
// must not wait behind a slow attach. A request with an empty id takes no
// lock either; the service refuses it with INVALID_ARGUMENT.
func lockKey(req any) string {
	var prefix, id string
	switch r := req.(type) {
	case *csi.CreateVolumeRequest:
		prefix, id = "name:", r.GetName()
	case *csi.CreateSnapshotRequest:
		prefix, id = "volume:", r.GetSourceVolumeId()
	case *csi.DeleteSnapshotRequest:
		prefix, id = "snapshot:", r.GetSnapshotId()
	case *csi.DeleteVolumeRequest,
		*csi.ControllerPublishVolumeRequest,
		*csi.ControllerUnpublishVolumeRequest,
		*csi.ControllerExpandVolumeRequest,
		*csi.ControllerModifyVolumeRequest,
		*csi.ControllerGetVolumeRequest,
		*csi.NodeStageVolumeRequest,
		*csi.NodeUnstageVolumeRequest,
		*csi.NodePublishVolumeRequest,
		*csi.NodeUnpublishVolumeRequest,
		*csi.NodeExpandVolumeRequest,
		*csi.NodeGetVolumeStatsRequest:
		prefix, id = "volume:", r.(interface{ GetVolumeId() string }).GetVolumeId()
	}
	if id == "" {
		return ""
	}
	return prefix + id
}
