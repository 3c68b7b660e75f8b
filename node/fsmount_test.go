package node

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/test/harness/ganesha"
)

func TestMountFailed(t *testing.T) {
	nfs := backends.Device{Path: "10.0.0.9:/srv/v", FSType: "nfs"}
	cases := []struct {
		dev  backends.Device
		err  error
		code codes.Code
		want string
	}{
		{nfs, unix.ENODEV, codes.FailedPrecondition, NoNFSClient},
		{backends.Device{Path: "s:/v", FSType: "nfs4"}, fmt.Errorf("mount: %w", unix.ENODEV), codes.FailedPrecondition, "modprobe nfs"},
		{nfs, unix.ETIMEDOUT, codes.Unavailable, "does not answer"},
		{nfs, unix.EACCES, codes.PermissionDenied, "export's clients"},
		{nfs, unix.EINVAL, codes.Internal, "10.0.0.9:/srv/v"},
		// A block device's ENODEV is not about NFS.
		{backends.Device{Path: "/dev/loop3"}, unix.ENODEV, codes.Internal, "/dev/loop3"},
	}
	for _, c := range cases {
		err := mountFailed(c.dev, "/staging", c.err)
		if status.Code(err) != c.code || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: %v, want %v with %q", c.dev.FSType, c.err, err, c.code, c.want)
		}
	}
}

// TestKernelWithoutNFSClient makes one real mount(2) of type nfs. On a
// kernel without an NFS client (this project's test machines) the
// refusal must become the message that names the missing client; the
// address is a closed local port, so a kernel that has a client fails on
// the connection instead and the test says so.
func TestKernelWithoutNFSClient(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mount(2) needs root; run as root, as CI does")
	}
	target := t.TempDir()
	err := NewLinuxMounter().Mount("127.0.0.1:/nowhere", target, "nfs", []string{"addr=127.0.0.1", "port=1", "mountport=1", "mountproto=tcp", "soft", "timeo=1", "retrans=0", "retry=0"})
	if err == nil {
		unix.Unmount(target, unix.MNT_DETACH)
		t.Fatal("an NFS mount of a closed port succeeded")
	}
	if !ganesha.KernelHasNFSClient() {
		got := mountFailed(backends.Device{Path: "127.0.0.1:/nowhere", FSType: "nfs"}, target, err)
		if status.Code(got) != codes.FailedPrecondition || !strings.Contains(got.Error(), NoNFSClient) {
			t.Fatalf("kernel refusal %v became %v", err, got)
		}
		t.Logf("kernel without NFS: %v", got)
		return
	}
	t.Logf("this kernel has an NFS client; the mount failed on the connection: %v", err)
}
