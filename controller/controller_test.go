package controller

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/backends/file"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
	"github.com/csi-libstorage/csi-libstorage/internal/volid"
)

func newService(t testing.TB, opt Options) (*Service, *file.Backend) {
	t.Helper()
	pool, err := file.New(file.Config{Name: "local", Dir: filepath.Join(t.TempDir(), "pool"), DefaultSize: "16MiB"}, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2"} {
		if err := pool.RegisterNode(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	set, err := backends.NewSet(pool)
	if err != nil {
		t.Fatal(err)
	}
	return New(set, opt), pool
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode, fs string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs}},
	}
}

var snw = mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "")

func create(t *testing.T, s *Service, name string) string {
	t.Helper()
	r, err := s.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{snw}})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetVolume().GetVolumeId()
}

func TestCreateVolumeValidation(t *testing.T) {
	s, _ := newService(t, Options{})
	caps := []*csi.VolumeCapability{snw}
	tests := []struct {
		name string
		req  *csi.CreateVolumeRequest
		code codes.Code
		msg  string
	}{
		{"no name", &csi.CreateVolumeRequest{VolumeCapabilities: caps}, codes.InvalidArgument, "name is required"},
		{"NUL in name", &csi.CreateVolumeRequest{Name: "a\x00b", VolumeCapabilities: caps}, codes.InvalidArgument, "control"},
		{"long name", &csi.CreateVolumeRequest{Name: strings.Repeat("n", 129), VolumeCapabilities: caps}, codes.InvalidArgument, "129 bytes"},
		{"no capabilities", &csi.CreateVolumeRequest{Name: "a"}, codes.InvalidArgument, "volume_capabilities"},
		{"unknown parameter", &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: caps, Parameters: map[string]string{"sise": "1"}}, codes.InvalidArgument, `"sise"`},
		{"dvdi iops on the file backend", &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: caps, Parameters: map[string]string{"iops": "100"}}, codes.InvalidArgument, `"iops"`},
		{"overwritefs without the switch", &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: caps, Parameters: map[string]string{"overwritefs": "true"}}, codes.InvalidArgument, "allowOverwrite"},
		{"bad fsType", &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: caps, Parameters: map[string]string{"fsType": "ntfs"}}, codes.InvalidArgument, "ntfs"},
		{"fsType disagrees with capability", &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "xfs")}, Parameters: map[string]string{"fsType": "ext4"}}, codes.InvalidArgument, "differs"},
		{"unknown backend", &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: caps, Parameters: map[string]string{"backend": "ebs"}}, codes.InvalidArgument, "configured: local"},
		{"negative size", &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: caps, CapacityRange: &csi.CapacityRange{RequiredBytes: -1}}, codes.InvalidArgument, "negative"},
		{"required above limit", &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: caps, CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 30, LimitBytes: 1 << 30}}, codes.OutOfRange, "above limit"},
		{"huge", &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: caps, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 62}}, codes.ResourceExhausted, "available"},
		{"multi-writer mount", &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, "")}}, codes.InvalidArgument, "MULTI_NODE_MULTI_WRITER"},
		{"unknown access mode", &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: []*csi.VolumeCapability{mountCap(99, "")}}, codes.InvalidArgument, "access mode"},
		{"content source", &csi.CreateVolumeRequest{Name: "a", VolumeCapabilities: caps, VolumeContentSource: &csi.VolumeContentSource{}}, codes.InvalidArgument, "volume_content_source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CreateVolume(context.Background(), tt.req)
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tt.code, tt.msg)
			}
		})
	}
	vols, _ := s.ListVolumes(context.Background(), &csi.ListVolumesRequest{})
	if len(vols.GetEntries()) != 0 {
		t.Fatalf("rejected requests created %d volumes", len(vols.GetEntries()))
	}
}

func TestCreateVolumeParameters(t *testing.T) {
	s, pool := newService(t, Options{AllowOverwrite: true})
	r, err := s.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
		Name:               "dvdi",
		VolumeCapabilities: []*csi.VolumeCapability{snw},
		Parameters: map[string]string{
			"size": "1", "newfstype": "xfs", "overwritefs": "true", "preallocate": "false",
			"csi.storage.k8s.io/pvc/name": "ignored",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetVolume().GetCapacityBytes() != units.GiB {
		t.Fatalf("size=1 gave %d bytes, want 1 GiB", r.GetVolume().GetCapacityBytes())
	}
	if r.GetVolume().GetVolumeContext()["fsType"] != "xfs" {
		t.Fatalf("volume context %v, want fsType=xfs", r.GetVolume().GetVolumeContext())
	}
	v, _ := pool.Get(context.Background(), strings.TrimPrefix(r.GetVolume().GetVolumeId(), "local/"))
	if _, ok := v.Parameters["csi.storage.k8s.io/pvc/name"]; ok {
		t.Fatal("Kubernetes bookkeeping key stored with the volume")
	}
}

// Tokens stay correct when volumes are added or deleted between pages:
// every volume that exists for the whole walk is returned exactly once.
func TestListVolumesPaging(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, Options{})
	var stable []string
	for i := 0; i < 9; i++ {
		stable = append(stable, create(t, s, fmt.Sprintf("v%d", i)))
	}
	seen := map[string]int{}
	token := ""
	for page := 0; ; page++ {
		r, err := s.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: 3, StartingToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.GetEntries()) > 3 {
			t.Fatalf("page of %d entries with max 3", len(r.GetEntries()))
		}
		for _, e := range r.GetEntries() {
			seen[e.GetVolume().GetVolumeId()]++
		}
		if page == 0 {
			// Delete the volume the token names and add new ones.
			last := r.GetEntries()[len(r.GetEntries())-1].GetVolume().GetVolumeId()
			if _, err := s.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: last}); err != nil {
				t.Fatal(err)
			}
			for i, id := range stable {
				if id == last {
					stable = append(stable[:i], stable[i+1:]...)
					break
				}
			}
			create(t, s, "late-1")
			create(t, s, "late-2")
		}
		token = r.GetNextToken()
		if token == "" {
			break
		}
	}
	for _, id := range stable {
		if seen[id] != 1 {
			t.Errorf("volume %s listed %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("volume %s listed %d times", id, n)
		}
	}
	all, _ := s.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if len(all.GetEntries()) != len(stable)+2 || all.GetNextToken() != "" {
		t.Fatalf("unpaged list: %d entries, token %q", len(all.GetEntries()), all.GetNextToken())
	}
	for _, bad := range []string{"garbage!", "Zm9v", "%%%", encodeToken("other/0123"), encodeToken("local/../../etc")} {
		if _, err := s.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: bad}); status.Code(err) != codes.Aborted {
			t.Errorf("token %q: %v, want Aborted", bad, err)
		}
	}
}

func TestValidateEchoesExactly(t *testing.T) {
	s, _ := newService(t, Options{})
	id := create(t, s, "v")
	req := &csi.ValidateVolumeCapabilitiesRequest{
		VolumeId:           id,
		VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "ext4")},
		VolumeContext:      map[string]string{"a": "b"},
		Parameters:         map[string]string{"fsType": "ext4", "x": "y"},
	}
	r, err := s.ValidateVolumeCapabilities(context.Background(), req)
	if err != nil || r.GetConfirmed() == nil {
		t.Fatalf("validate = %v, %v", r, err)
	}
	c := r.GetConfirmed()
	if !proto.Equal(c.GetVolumeCapabilities()[0], req.VolumeCapabilities[0]) || c.GetVolumeContext()["a"] != "b" || c.GetParameters()["x"] != "y" || len(c.GetParameters()) != 2 {
		t.Fatalf("confirmed %v does not echo the request", c)
	}
	r, err = s.ValidateVolumeCapabilities(context.Background(), &csi.ValidateVolumeCapabilitiesRequest{
		VolumeId: id, VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY, "")},
	})
	if err != nil || r.GetConfirmed() != nil || r.GetMessage() == "" {
		t.Fatalf("a mode the volume was not created for was confirmed: %v, %v", r, err)
	}
}

func TestPublishRules(t *testing.T) {
	ctx := context.Background()
	s, _ := newService(t, Options{})
	id := create(t, s, "v")
	pub := func(node string, ro bool) error {
		_, err := s.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: node, VolumeCapability: snw, Readonly: ro})
		return err
	}
	steps := []struct {
		name string
		do   func() error
		code codes.Code
	}{
		{"publish n1", func() error { return pub("n1", false) }, codes.OK},
		{"again", func() error { return pub("n1", false) }, codes.OK},
		{"n1 read-only", func() error { return pub("n1", true) }, codes.AlreadyExists},
		{"second writer", func() error { return pub("n2", false) }, codes.FailedPrecondition},
		{"unknown node", func() error { return pub("n3", false) }, codes.NotFound},
		{"delete while published", func() error {
			_, err := s.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			return err
		}, codes.FailedPrecondition},
		{"unpublish everywhere", func() error {
			_, err := s.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id})
			return err
		}, codes.OK},
		{"n2 after unpublish", func() error { return pub("n2", false) }, codes.OK},
	}
	for _, st := range steps {
		if err := st.do(); status.Code(err) != st.code {
			t.Fatalf("%s: %v, want %v", st.name, err, st.code)
		}
	}
	g, err := s.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: id})
	if err != nil || len(g.GetStatus().GetPublishedNodeIds()) != 1 || g.GetStatus().GetPublishedNodeIds()[0] != "n2" {
		t.Fatalf("published nodes %v, %v; want [n2]", g.GetStatus().GetPublishedNodeIds(), err)
	}
}

func FuzzDecodeToken(f *testing.F) {
	s, _ := newService(f, Options{})
	f.Add(encodeToken("local/0123"))
	f.Add(encodeToken("other/0123"))
	f.Add(encodeToken("local/../../etc"))
	f.Add("garbage")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := s.decodeToken(tok)
		if err != nil {
			if status.Code(err) != codes.Aborted {
				t.Fatalf("bad token %q gave %v, want Aborted", tok, err)
			}
			return
		}
		if _, _, err := volid.Split(id); tok != "" && err != nil {
			t.Fatalf("token %q decoded to %q, not a volume id: %v", tok, id, err)
		}
	})
}

func TestZonesFromTopology(t *testing.T) {
	top := func(z string) *csi.Topology {
		return &csi.Topology{Segments: map[string]string{backends.TopologyZoneKey: z}}
	}
	got := zones(&csi.TopologyRequirement{
		Requisite: []*csi.Topology{top("a"), top("b"), top("c")},
		Preferred: []*csi.Topology{top("c"), top("a")},
	})
	if strings.Join(got, ",") != "c,a,b" {
		t.Fatalf("zones = %v, want preferred first without repeats: c,a,b", got)
	}
	if zones(nil) != nil {
		t.Fatal("zones without requirements")
	}
}

// Paging across backends whose names sort oddly as id prefixes ("a/…" sorts
// after "a-b/…" as a string) still returns every volume exactly once.
func TestListVolumesAcrossBackends(t *testing.T) {
	ctx := context.Background()
	var list []backends.Backend
	for _, name := range []string{"a-b", "a"} {
		b, err := file.New(file.Config{Name: name, Dir: filepath.Join(t.TempDir(), "pool"), DefaultSize: "16MiB"}, file.Options{})
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, b)
	}
	set, _ := backends.NewSet(list...)
	s := New(set, Options{})
	want := map[string]bool{}
	for i := 0; i < 7; i++ {
		for _, name := range []string{"a", "a-b"} {
			r, err := s.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: fmt.Sprintf("v%d", i), VolumeCapabilities: []*csi.VolumeCapability{snw}, Parameters: map[string]string{"backend": name}})
			if err != nil {
				t.Fatal(err)
			}
			want[r.GetVolume().GetVolumeId()] = true
		}
	}
	for _, size := range []int32{1, 3, 5, 14, 100} {
		seen := map[string]int{}
		token := ""
		for {
			r, err := s.ListVolumes(ctx, &csi.ListVolumesRequest{MaxEntries: size, StartingToken: token})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range r.GetEntries() {
				seen[e.GetVolume().GetVolumeId()]++
			}
			if token = r.GetNextToken(); token == "" {
				break
			}
		}
		if len(seen) != len(want) {
			t.Errorf("pages of %d: %d volumes, want %d", size, len(seen), len(want))
		}
		for id, n := range seen {
			if !want[id] || n != 1 {
				t.Errorf("pages of %d: %s listed %d times", size, id, n)
			}
		}
	}
}

// The filesystem a capability names at create time is kept with the volume
// and reported in its context, so a later stage without one makes it.
func TestCapabilityFSTypeIsKept(t *testing.T) {
	s, pool := newService(t, Options{})
	r, err := s.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
		Name:               "x",
		VolumeCapabilities: []*csi.VolumeCapability{mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, "xfs")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.GetVolume().GetVolumeContext()["fsType"]; got != "xfs" {
		t.Fatalf("volume context fsType %q, want xfs", got)
	}
	v, _ := pool.Get(context.Background(), strings.TrimPrefix(r.GetVolume().GetVolumeId(), "local/"))
	if v.Parameters["fsType"] != "xfs" {
		t.Fatalf("stored parameters %v", v.Parameters)
	}
}
