package controller

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/csi-libstorage/csi-libstorage/backends/file"
	"github.com/csi-libstorage/csi-libstorage/internal/volid"
)

func TestControllerGetVolumeHealth(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		damage  func(t *testing.T, img string)
		status  csi.VolumeHealthErrorType
		reason  string
		message string
	}{
		{name: "healthy"},
		{
			name:   "image deleted",
			damage: func(t *testing.T, img string) { must(t, os.Remove(img)) },
			status: csi.VolumeHealthErrorType_DATA_LOSS, reason: "ImageMissing", message: "is missing from pool",
		},
		{
			name:   "image truncated",
			damage: func(t *testing.T, img string) { must(t, os.Truncate(img, 4096)) },
			status: csi.VolumeHealthErrorType_DATA_LOSS, reason: "ImageTruncated", message: "holds 4KiB but the volume is 16MiB",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, pool := newService(t, Options{})
			id := create(t, s, "v")
			_, native, _ := volid.Split(id)
			if tt.damage != nil {
				// The image is made when the volume is first used;
				// preallocating makes it now.
				if _, err := s.ControllerModifyVolume(ctx, &csi.ControllerModifyVolumeRequest{VolumeId: id, MutableParameters: map[string]string{file.ParamPreallocate: "true"}}); err != nil {
					t.Fatal(err)
				}
				img, err := pool.ImagePath(native)
				must(t, err)
				tt.damage(t, img)
			}
			r, err := s.ControllerGetVolumeHealth(ctx, &csi.ControllerGetVolumeHealthRequest{VolumeId: id})
			if err != nil {
				t.Fatal(err)
			}
			h := r.GetVolumeHealth()
			if h.GetVolumeId() != id {
				t.Fatalf("health of %q, want %q", h.GetVolumeId(), id)
			}
			if tt.reason == "" {
				if len(h.GetHealthStatuses()) != 0 {
					t.Fatalf("healthy volume reported %v", h.GetHealthStatuses())
				}
				return
			}
			if len(h.GetHealthStatuses()) != 1 {
				t.Fatalf("entries %v, want one %s", h.GetHealthStatuses(), tt.reason)
			}
			e := h.GetHealthStatuses()[0]
			if e.GetStatus() != tt.status || e.GetReason() != tt.reason || !strings.Contains(e.GetMessage(), tt.message) {
				t.Fatalf("entry %s %s %q, want %s %s containing %q", e.GetStatus(), e.GetReason(), e.GetMessage(), tt.status, tt.reason, tt.message)
			}
		})
	}
}

func TestControllerGetVolumeHealthRequests(t *testing.T) {
	s, _ := newService(t, Options{})
	for _, tt := range []struct {
		id   string
		code codes.Code
	}{
		{"", codes.InvalidArgument},
		{"local/" + strings.Repeat("0", 32), codes.NotFound},
		{"nosuch/x", codes.NotFound},
	} {
		_, err := s.ControllerGetVolumeHealth(context.Background(), &csi.ControllerGetVolumeHealthRequest{VolumeId: tt.id})
		if status.Code(err) != tt.code {
			t.Errorf("volume %q: %v, want %s", tt.id, err, tt.code)
		}
	}
}

func TestControllerGetVolumeStatus(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, Options{})
	id := create(t, s, "v")
	for _, n := range []string{"n1"} {
		if _, err := s.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: n, VolumeCapability: snw}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetVolume().GetVolumeId() != id || !slices.Equal(r.GetStatus().GetPublishedNodeIds(), []string{"n1"}) {
		t.Fatalf("ControllerGetVolume = %v", r)
	}
}

// Mesos (spec 1.1) reads the four capabilities it knows; the newer ones
// are added beside them, and unknown values are skipped by Mesos.
func TestControllerCapabilities(t *testing.T) {
	s, _ := newService(t, Options{})
	r, err := s.ControllerGetCapabilities(context.Background(), &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []csi.ControllerServiceCapability_RPC_Type
	for _, c := range r.GetCapabilities() {
		got = append(got, c.GetRpc().GetType())
	}
	for _, want := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		csi.ControllerServiceCapability_RPC_GET_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_VOLUME_HEALTH,
		csi.ControllerServiceCapability_RPC_MODIFY_VOLUME,
	} {
		if !slices.Contains(got, want) {
			t.Errorf("capabilities %v lack %s", got, want)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
