package controller

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends/file"
	"github.com/csi-libstorage/csi-libstorage/internal/volid"
)

// allocated reports whether every byte of the volume's image has a block;
// an image not made yet (made by the first use) has none.
func allocated(t *testing.T, pool *file.Backend, id string) bool {
	t.Helper()
	_, native, _ := volid.Split(id)
	img, err := pool.ImagePath(native)
	must(t, err)
	var st unix.Stat_t
	if err := unix.Stat(img, &st); errors.Is(err, unix.ENOENT) {
		return false
	}
	must(t, unix.Stat(img, &st))
	return st.Blocks*512 >= st.Size
}

func TestControllerModifyVolumeFilePool(t *testing.T) {
	ctx := context.Background()
	s, pool := newService(t, Options{})
	id := create(t, s, "v")
	if allocated(t, pool, id) {
		t.Fatal("a new volume's image is allocated; want sparse")
	}
	// The steps run in order on one volume.
	steps := []struct {
		name   string
		id     string
		params map[string]string
		code   codes.Code
		msg    string
		alloc  bool
	}{
		{"no parameters", id, nil, codes.InvalidArgument, "mutable_parameters are required", false},
		{"no volume id", "", map[string]string{"preallocate": "true"}, codes.InvalidArgument, "volume_id", false},
		{"unknown volume", "local/" + strings.Repeat("0", 32), map[string]string{"preallocate": "true"}, codes.NotFound, "not found", false},
		{"immutable parameter", id, map[string]string{"size": "1"}, codes.InvalidArgument, `mutable parameter "size" cannot be changed on backend local; its mutable parameters are: preallocate`, false},
		{"one bad key among good ones", id, map[string]string{"preallocate": "true", "fsType": "xfs"}, codes.InvalidArgument, `"fsType"`, false},
		{"bad value", id, map[string]string{"preallocate": "yes"}, codes.InvalidArgument, `preallocate="yes": want true or false`, false},
		{"sparse stays sparse", id, map[string]string{"preallocate": "false"}, codes.OK, "", false},
		{"preallocate", id, map[string]string{"preallocate": "true"}, codes.OK, "", true},
		{"preallocate again", id, map[string]string{"preallocate": "true"}, codes.OK, "", true},
		{"no way back", id, map[string]string{"preallocate": "false"}, codes.InvalidArgument, "is fully allocated", true},
	}
	for _, st := range steps {
		_, err := s.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: st.id, MutableParameters: st.params})
		if status.Code(err) != st.code || !strings.Contains(status.Convert(err).Message(), st.msg) {
			t.Fatalf("%s: %v, want %s containing %q", st.name, err, st.code, st.msg)
		}
		if got := allocated(t, pool, id); got != st.alloc {
			t.Fatalf("%s: allocated=%t, want %t", st.name, got, st.alloc)
		}
	}
}

func TestCreateVolumeMutableParameters(t *testing.T) {
	ctx := context.Background()
	s, pool := newService(t, Options{})
	r, err := s.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: []*csi.VolumeCapability{snw}, MutableParameters: map[string]string{"preallocate": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	if !allocated(t, pool, r.GetVolume().GetVolumeId()) {
		t.Fatal("created with preallocate=true as a mutable parameter, the image is sparse")
	}
	_, err = s.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "b", VolumeCapabilities: []*csi.VolumeCapability{snw}, MutableParameters: map[string]string{"XXX_FakeKey": "x"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"XXX_FakeKey"`) {
		t.Fatalf("unknown mutable parameter: %v", err)
	}
}
