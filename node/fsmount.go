package node

import (
	"errors"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// NoNFSClient is what a node whose kernel cannot mount NFS is told. The
// kernel answers ENODEV for a filesystem type it does not know.
const NoNFSClient = "this node's kernel has no NFS client (modprobe nfs / install nfs-common)"

// mountFailed turns a failed mount at staging into a status an operator
// can act on. For a filesystem backend's remote source (NFS) the kernel's
// answer says whose problem it is: this node's kernel, the network, or
// the server's export list.
func mountFailed(dev backends.Device, staging string, err error) error {
	if strings.HasPrefix(dev.FSType, "nfs") {
		switch {
		case errors.Is(err, unix.ENODEV):
			return status.Errorf(codes.FailedPrecondition, "%s: mount %s at %s: %v", NoNFSClient, dev.Path, staging, err)
		case errors.Is(err, unix.ECONNREFUSED), errors.Is(err, unix.ETIMEDOUT), errors.Is(err, unix.EHOSTUNREACH), errors.Is(err, unix.ENETUNREACH):
			return status.Errorf(codes.Unavailable, "mount %s at %s: the NFS server does not answer this node: %v", dev.Path, staging, err)
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return status.Errorf(codes.PermissionDenied, "mount %s at %s: the NFS server refuses this node; add it to the export's clients: %v", dev.Path, staging, err)
		}
	}
	return status.Errorf(codes.Internal, "mount %s at %s: %v", dev.Path, staging, err)
}
