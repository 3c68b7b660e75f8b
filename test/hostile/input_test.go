package hostile

import (
	"encoding/base64"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// row is one hostile call: what it sends, the code it must get and the
// words its message must contain (the offending field, or for NOT_FOUND the
// offending id).
type row struct {
	name    string
	call    func() error
	code    codes.Code
	mention []string
}

// idCase is a hostile volume or snapshot id. malformed ids cannot be valid
// for any plugin and must be INVALID_ARGUMENT; the others are merely not
// this plugin's and must be NOT_FOUND (or OK for deletes and unpublishes,
// which are idempotent). tag is the part of the id a NOT_FOUND message
// must quote.
type idCase struct {
	name      string
	id        string
	malformed bool
	tag       string
}

var hostileIDs = []idCase{
	{"dotdot", "local/../../etc", false, "../../etc"},
	{"dotdot-passwd", "local/../../../../etc/passwd", false, "etc/passwd"},
	{"absolute", "/etc/passwd", false, "/etc/passwd"},
	{"dotdot-backend", "../local/0123456789abcdef0123456789abcdef", false, "../local"},
	{"backend-dotdot", "local/..", false, ".."},
	{"unknown-backend", "other/0123456789abcdef0123456789abcdef", false, "other/"},
	{"unknown-volume", "local/0123456789abcdef0123456789abcdef", false, "0123456789abcdef0123456789abcdef"},
	{"uppercase-hex", "local/0123456789ABCDEF0123456789ABCDEF", false, "0123456789ABCDEF"},
	{"nul", "local/\x00../../etc", true, ""},
	{"newline", "local/abc\n../../etc", true, ""},
	{"tab", "local/abc\t", true, ""},
	{"129-bytes", "local/" + strings.Repeat("a", 123), true, ""},
	{"10KB", "local/" + strings.Repeat("../", 3413), true, ""},
}

// hostilePaths are staging paths and targets that are not absolute clean
// paths, built below dir.
func hostilePaths(dir string) []struct{ name, path string } {
	return []struct{ name, path string }{
		{"relative", "relative/target"},
		{"dot-relative", "./target"},
		{"dotdot", dir + "/a/../../../etc"},
		{"dotdot-end", dir + "/.."},
		{"dot", dir + "/."},
		{"double-slash", dir + "//target"},
		{"trailing-slash", dir + "/target/"},
		{"nul", dir + "/tar\x00get"},
		{"newline", dir + "/tar\nget"},
		{"5000-bytes", "/" + strings.Repeat("a/", 2499) + "a"},
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestHostileInputs sends every hostile input through the real socket,
// then checks that the pool holds exactly what the successful rows
// created, and that nothing was created or mounted outside the scratch
// directory.
func TestHostileInputs(t *testing.T) {
	hostBefore := snapshotHost(t)
	mountsBefore := hostMounts(t, "")
	w := newWorld(t)
	c := ctx(t)
	base := w.create("hostile-base", mountCap())
	created := map[string]bool{base: true} // volume ids
	snaps := map[string]bool{}             // snapshot ids
	okCreate := func(name string, req *csi.CreateVolumeRequest) func() error {
		return func() error {
			req.Name = name
			if req.VolumeCapabilities == nil {
				req.VolumeCapabilities = []*csi.VolumeCapability{mountCap()}
			}
			r, err := w.ctl.CreateVolume(c, req)
			if err == nil {
				created[r.GetVolume().GetVolumeId()] = true
			}
			return err
		}
	}
	snapshot := func(name, source string) func() error {
		return func() error {
			r, err := w.ctl.CreateSnapshot(c, &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: source})
			if err == nil {
				snaps[r.GetSnapshot().GetSnapshotId()] = true
			}
			return err
		}
	}
	target := filepath.Join(w.mnt, "target")
	staging := filepath.Join(w.mnt, "staging")

	var rows []row
	add := func(name string, code codes.Code, call func() error, mention ...string) {
		rows = append(rows, row{name: name, call: call, code: code, mention: mention})
	}

	// Volume and snapshot ids, in every call that takes one.
	for _, ic := range hostileIDs {
		id := ic.id
		// notFound is the answer for an id that is not this plugin's;
		// idempotent calls answer OK instead.
		expect := func(field string, idempotent bool) (codes.Code, []string) {
			switch {
			case ic.malformed:
				return codes.InvalidArgument, []string{field}
			case idempotent:
				return codes.OK, nil
			default:
				return codes.NotFound, []string{ic.tag}
			}
		}
		p := "id/" + ic.name + "/"
		code, m := expect("volume_id", true)
		add(p+"DeleteVolume", code, func() error {
			_, err := w.ctl.DeleteVolume(c, &csi.DeleteVolumeRequest{VolumeId: id})
			return err
		}, m...)
		code, m = expect("volume_id", false)
		add(p+"ControllerPublishVolume", code, func() error {
			_, err := w.ctl.ControllerPublishVolume(c, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "n1", VolumeCapability: mountCap()})
			return err
		}, m...)
		code, m = expect("volume_id", true)
		add(p+"ControllerUnpublishVolume", code, func() error {
			_, err := w.ctl.ControllerUnpublishVolume(c, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: "n1"})
			return err
		}, m...)
		code, m = expect("volume_id", false)
		add(p+"ValidateVolumeCapabilities", code, func() error {
			_, err := w.ctl.ValidateVolumeCapabilities(c, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: id, VolumeCapabilities: []*csi.VolumeCapability{mountCap()}})
			return err
		}, m...)
		add(p+"ControllerGetVolume", code, func() error {
			_, err := w.ctl.ControllerGetVolume(c, &csi.ControllerGetVolumeRequest{VolumeId: id})
			return err
		}, m...)
		add(p+"ControllerExpandVolume", code, func() error {
			_, err := w.ctl.ControllerExpandVolume(c, &csi.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: 32 << 20}})
			return err
		}, m...)
		add(p+"NodeStageVolume", code, func() error {
			_, err := w.node.NodeStageVolume(c, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: mountCap()})
			return err
		}, m...)
		add(p+"NodePublishVolume", code, func() error {
			_, err := w.node.NodePublishVolume(c, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: target, VolumeCapability: mountCap()})
			return err
		}, m...)
		add(p+"NodeGetVolumeStats", code, func() error {
			_, err := w.node.NodeGetVolumeStats(c, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: w.mnt})
			return err
		}, m...)
		add(p+"NodeExpandVolume", code, func() error {
			_, err := w.node.NodeExpandVolume(c, &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: w.mnt})
			return err
		}, m...)
		code, m = expect("volume_id", true)
		add(p+"NodeUnpublishVolume", code, func() error {
			return w.unpublish(id, target)
		}, m...)
		add(p+"NodeUnstageVolume", code, func() error {
			_, err := w.node.NodeUnstageVolume(c, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
			return err
		}, m...)
		code, m = expect("source_volume_id", false)
		add(p+"CreateSnapshot.source_volume_id", code, snapshot("snap-of-"+ic.name, id), m...)
		code, m = expect("volume_content_source.volume.volume_id", false)
		add(p+"CreateVolume.source.volume", code, okCreate("clone-of-"+ic.name, &csi.CreateVolumeRequest{
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}},
		}), m...)
		code, m = expect("volume_content_source.snapshot.snapshot_id", false)
		add(p+"CreateVolume.source.snapshot", code, okCreate("restore-of-"+ic.name, &csi.CreateVolumeRequest{
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: id}}},
		}), m...)
		code, m = expect("snapshot_id", true)
		add(p+"DeleteSnapshot", code, func() error {
			_, err := w.ctl.DeleteSnapshot(c, &csi.DeleteSnapshotRequest{SnapshotId: id})
			return err
		}, m...)
	}
	// Empty ids.
	add("id/empty/DeleteVolume", codes.InvalidArgument, func() error {
		_, err := w.ctl.DeleteVolume(c, &csi.DeleteVolumeRequest{})
		return err
	}, "volume_id")
	add("id/empty/ControllerGetVolume", codes.InvalidArgument, func() error {
		_, err := w.ctl.ControllerGetVolume(c, &csi.ControllerGetVolumeRequest{})
		return err
	}, "volume_id")
	add("id/empty/NodeUnpublishVolume", codes.InvalidArgument, func() error { return w.unpublish("", target) }, "volume_id")
	add("id/empty/DeleteSnapshot", codes.InvalidArgument, func() error {
		_, err := w.ctl.DeleteSnapshot(c, &csi.DeleteSnapshotRequest{})
		return err
	}, "snapshot_id")
	add("id/empty/CreateSnapshot", codes.InvalidArgument, snapshot("snap-of-nothing", ""), "source_volume_id")

	// Invalid UTF-8 cannot be marshalled by a well-behaved client; sent
	// raw, it is refused by the protobuf layer before the plugin sees it.
	raw := func(name, method string, req, reply proto.Message) {
		add("utf8/"+name, codes.Internal, func() error { return w.invokeRaw(method, req, reply) }, "UTF-8")
	}
	raw("DeleteVolume.volume_id", "/csi.v1.Controller/DeleteVolume", &csi.DeleteVolumeRequest{VolumeId: "local/" + placeholder}, &csi.DeleteVolumeResponse{})
	raw("CreateVolume.name", "/csi.v1.Controller/CreateVolume", &csi.CreateVolumeRequest{Name: placeholder, VolumeCapabilities: []*csi.VolumeCapability{mountCap()}}, &csi.CreateVolumeResponse{})
	raw("CreateVolume.parameters", "/csi.v1.Controller/CreateVolume", &csi.CreateVolumeRequest{Name: "utf8-param", Parameters: map[string]string{"fsType": placeholder}, VolumeCapabilities: []*csi.VolumeCapability{mountCap()}}, &csi.CreateVolumeResponse{})
	raw("CreateSnapshot.name", "/csi.v1.Controller/CreateSnapshot", &csi.CreateSnapshotRequest{Name: placeholder, SourceVolumeId: base}, &csi.CreateSnapshotResponse{})
	raw("NodeStageVolume.staging_target_path", "/csi.v1.Node/NodeStageVolume", &csi.NodeStageVolumeRequest{VolumeId: base, StagingTargetPath: w.mnt + "/" + placeholder, VolumeCapability: mountCap()}, &csi.NodeStageVolumeResponse{})
	raw("NodePublishVolume.target_path", "/csi.v1.Node/NodePublishVolume", &csi.NodePublishVolumeRequest{VolumeId: base, StagingTargetPath: staging, TargetPath: w.mnt + "/" + placeholder, VolumeCapability: mountCap()}, &csi.NodePublishVolumeResponse{})
	raw("ListVolumes.starting_token", "/csi.v1.Controller/ListVolumes", &csi.ListVolumesRequest{StartingToken: placeholder}, &csi.ListVolumesResponse{})

	// Names: they are hashed into the pool, never used as paths, so a
	// name that looks like a path is a valid (if odd) name and creates a
	// volume; a name that is not valid text, or too long, is refused.
	add("name/dotdot", codes.OK, okCreate("../../etc/passwd", &csi.CreateVolumeRequest{}))
	add("name/absolute", codes.OK, okCreate("/etc/shadow", &csi.CreateVolumeRequest{}))
	add("name/128-bytes", codes.OK, okCreate(strings.Repeat("n", 128), &csi.CreateVolumeRequest{}))
	for _, n := range []struct{ name, value string }{
		{"empty", ""},
		{"nul", "vol\x00../../etc"},
		{"newline", "vol\nfake log line"},
		{"escape", "vol\x1b[31m"},
		{"129-bytes", strings.Repeat("n", 129)},
		{"10KB", strings.Repeat("../", 3414)},
	} {
		add("name/"+n.name+"/CreateVolume", codes.InvalidArgument, okCreate(n.value, &csi.CreateVolumeRequest{}), "name")
		add("name/"+n.name+"/CreateSnapshot", codes.InvalidArgument, snapshot(n.value, base), "name")
	}
	add("name/dotdot/CreateSnapshot", codes.OK, snapshot("../../snapshots/x", base))

	// Staging paths and targets.
	for _, hp := range hostilePaths(w.mnt) {
		p := hp.path
		add("path/"+hp.name+"/NodeStageVolume", codes.InvalidArgument, func() error {
			_, err := w.node.NodeStageVolume(c, &csi.NodeStageVolumeRequest{VolumeId: base, StagingTargetPath: p, VolumeCapability: mountCap()})
			return err
		}, "staging_target_path")
		add("path/"+hp.name+"/NodeUnstageVolume", codes.InvalidArgument, func() error {
			_, err := w.node.NodeUnstageVolume(c, &csi.NodeUnstageVolumeRequest{VolumeId: base, StagingTargetPath: p})
			return err
		}, "staging_target_path")
		add("path/"+hp.name+"/NodePublishVolume.target_path", codes.InvalidArgument, func() error {
			return w.publish(base, staging, p, mountCap())
		}, "target_path")
		add("path/"+hp.name+"/NodePublishVolume.staging_target_path", codes.InvalidArgument, func() error {
			return w.publish(base, p, target, mountCap())
		}, "staging_target_path")
		add("path/"+hp.name+"/NodeUnpublishVolume", codes.InvalidArgument, func() error {
			return w.unpublish(base, p)
		}, "target_path")
		add("path/"+hp.name+"/NodeExpandVolume", codes.NotFound, func() error {
			_, err := w.node.NodeExpandVolume(c, &csi.NodeExpandVolumeRequest{VolumeId: base, VolumePath: p})
			return err
		}, "volume_path")
	}

	// Capacities.
	capRow := func(name string, code codes.Code, req, limit int64, mention ...string) {
		add("capacity/"+name+"/CreateVolume", code, okCreate("cap-"+name, &csi.CreateVolumeRequest{CapacityRange: &csi.CapacityRange{RequiredBytes: req, LimitBytes: limit}}), mention...)
	}
	capRow("1<<62", codes.ResourceExhausted, 1<<62, 0, "capacity")
	capRow("1<<62-both", codes.ResourceExhausted, 1<<62, 1<<62, "capacity")
	capRow("MaxInt64", codes.OutOfRange, math.MaxInt64, 0, "9223372036854775807")
	capRow("MaxInt64-limit", codes.OutOfRange, math.MaxInt64, math.MaxInt64, "9223372036854775807")
	capRow("negative-required", codes.InvalidArgument, -1, 0, "capacity_range")
	capRow("MinInt64-required", codes.InvalidArgument, math.MinInt64, 0, "capacity_range")
	capRow("negative-limit", codes.InvalidArgument, 0, -1, "capacity_range")
	capRow("required-above-limit", codes.OutOfRange, 64<<20, 32<<20, "capacity_range")
	capRow("limit-1-byte", codes.OutOfRange, 0, 1, "limit")
	expand := func(name string, code codes.Code, req, limit int64, mention ...string) {
		add("capacity/"+name+"/ControllerExpandVolume", code, func() error {
			_, err := w.ctl.ControllerExpandVolume(c, &csi.ControllerExpandVolumeRequest{VolumeId: base, CapacityRange: &csi.CapacityRange{RequiredBytes: req, LimitBytes: limit}})
			return err
		}, mention...)
	}
	expand("1<<62", codes.ResourceExhausted, 1<<62, 0, "capacity")
	expand("MaxInt64", codes.OutOfRange, math.MaxInt64, 0, "9223372036854775807")
	expand("negative", codes.InvalidArgument, -1, 0, "capacity_range")
	expand("negative-limit", codes.InvalidArgument, 64<<20, -1, "capacity_range")
	expand("required-above-limit", codes.OutOfRange, 64<<20, 32<<20, "limit")
	expand("missing", codes.InvalidArgument, 0, 0, "capacity_range")

	// Access modes and types.
	for _, mc := range []struct {
		name string
		cap  *csi.VolumeCapability
		why  string
	}{
		{"mode-99", modeCap(99), "access mode"},
		{"mode--1", modeCap(-1), "access mode"},
		{"mode-unknown", modeCap(0), "access mode"},
		{"mode-1<<30", modeCap(1 << 30), "access mode"},
		{"no-access-mode", &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}}, "access mode"},
		{"no-access-type", &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}, "access type"},
		{"empty", &csi.VolumeCapability{}, "access mode"},
		{"flags-comma", mountCap("ro,exec"), "mount flag"},
		{"flags-bind", mountCap("bind"), "mount flag"},
		{"flags-rbind", mountCap("rbind"), "mount flag"},
		{"flags-remount", mountCap("remount"), "mount flag"},
		{"flags-loop", mountCap("loop=/dev/loop0"), "mount flag"},
		{"flags-dash-o", mountCap("-o"), "mount flag"},
		{"flags-dash-o-exec", mountCap("-oexec"), "mount flag"},
		{"flags-nul", mountCap("ro\x00exec"), "mount flag"},
		{"flags-newline", mountCap("nosuid\nexec"), "mount flag"},
		{"flags-empty", mountCap(""), "mount flag"},
		{"fstype-path", &csi.VolumeCapability{AccessMode: mountCap().AccessMode, AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "../../bin/sh"}}}, "fs_type"},
		{"fstype-options", &csi.VolumeCapability{AccessMode: mountCap().AccessMode, AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4 -o exec"}}}, "fs_type"},
	} {
		vc := mc.cap
		add("capability/"+mc.name+"/CreateVolume", codes.InvalidArgument, okCreate("cap-"+mc.name, &csi.CreateVolumeRequest{VolumeCapabilities: []*csi.VolumeCapability{vc}}), "volume_capabilities", mc.why)
		add("capability/"+mc.name+"/ControllerPublishVolume", codes.InvalidArgument, func() error {
			_, err := w.ctl.ControllerPublishVolume(c, &csi.ControllerPublishVolumeRequest{VolumeId: base, NodeId: "n1", VolumeCapability: vc})
			return err
		}, "volume_capability", mc.why)
		add("capability/"+mc.name+"/NodeStageVolume", codes.InvalidArgument, func() error {
			_, err := w.node.NodeStageVolume(c, &csi.NodeStageVolumeRequest{VolumeId: base, StagingTargetPath: staging, VolumeCapability: vc})
			return err
		}, "volume_capability", mc.why)
		add("capability/"+mc.name+"/NodePublishVolume", codes.InvalidArgument, func() error {
			return w.publish(base, staging, target, vc)
		}, "volume_capability", mc.why)
		add("capability/"+mc.name+"/GetCapacity", codes.InvalidArgument, func() error {
			_, err := w.ctl.GetCapacity(c, &csi.GetCapacityRequest{VolumeCapabilities: []*csi.VolumeCapability{vc}})
			return err
		}, "volume_capabilities", mc.why)
	}
	add("capability/none/CreateVolume", codes.InvalidArgument, func() error {
		_, err := w.ctl.CreateVolume(c, &csi.CreateVolumeRequest{Name: "no-caps"})
		return err
	}, "volume_capabilities")
	add("capability/nil/NodeStageVolume", codes.InvalidArgument, func() error {
		_, err := w.node.NodeStageVolume(c, &csi.NodeStageVolumeRequest{VolumeId: base, StagingTargetPath: staging})
		return err
	}, "volume_capability")

	// Parameters.
	for _, pc := range []struct {
		name    string
		params  map[string]string
		mention string
	}{
		{"unknown-key", map[string]string{"foo": "bar"}, `"foo"`},
		{"nul-key", map[string]string{"fs\x00Type": "ext4"}, "is not known"},
		{"nul-value", map[string]string{"fsType": "ext4\x00"}, "fsType"},
		{"nul-value-preallocate", map[string]string{"preallocate": "\x00"}, "preallocate"},
		{"2KB-value", map[string]string{"preallocate": strings.Repeat("t", 2048)}, "preallocate"},
		{"2KB-unknown", map[string]string{strings.Repeat("k", 2048): "v"}, "is not known"},
		{"backend-dotdot", map[string]string{"backend": "../x"}, "backend"},
		{"backend-path", map[string]string{"backend": "local/../../etc"}, "backend"},
		{"backend-empty", map[string]string{"backend": ""}, "backend"},
		{"fstype-path", map[string]string{"fsType": "../../bin/sh"}, "fsType"},
		{"newfstype-path", map[string]string{"newfstype": "/sbin/mkfs.ext4"}, "newfstype"},
		{"size-negative", map[string]string{"size": "-1"}, "size"},
		{"size-huge", map[string]string{"size": "9223372036854775807"}, "size"},
		{"overwritefs", map[string]string{"overwritefs": "true"}, "overwritefs"},
		{"preallocate-bad", map[string]string{"preallocate": "maybe"}, "preallocate"},
	} {
		pm := pc.params
		add("parameters/"+pc.name+"/CreateVolume", codes.InvalidArgument, okCreate("param-"+pc.name, &csi.CreateVolumeRequest{Parameters: pm}), pc.mention)
		if pc.name == "preallocate-bad" {
			continue // checked by the backend when creating, not by GetCapacity
		}
		add("parameters/"+pc.name+"/GetCapacity", codes.InvalidArgument, func() error {
			_, err := w.ctl.GetCapacity(c, &csi.GetCapacityRequest{Parameters: pm})
			return err
		}, pc.mention)
	}
	// Kubernetes' own keys are dropped, whatever they hold.
	add("parameters/k8s-prefix-dotdot/CreateVolume", codes.OK, okCreate("param-k8s", &csi.CreateVolumeRequest{Parameters: map[string]string{"csi.storage.k8s.io/../../etc": "../../x"}}))
	add("parameters/snapshot-unknown/CreateSnapshot", codes.InvalidArgument, func() error {
		_, err := w.ctl.CreateSnapshot(c, &csi.CreateSnapshotRequest{Name: "snap-param", SourceVolumeId: base, Parameters: map[string]string{"../x": "y"}})
		return err
	}, `"../x"`)

	// Node ids.
	for _, n := range []struct{ name, node string }{
		{"dotdot", "../../etc/passwd"},
		{"absolute", "/etc/passwd"},
		{"nul", "n1\x00"},
		{"10KB", strings.Repeat("n", 10240)},
	} {
		nid := n.node
		add("node_id/"+n.name+"/ControllerPublishVolume", codes.NotFound, func() error {
			_, err := w.ctl.ControllerPublishVolume(c, &csi.ControllerPublishVolumeRequest{VolumeId: base, NodeId: nid, VolumeCapability: mountCap()})
			return err
		}, "node")
		add("node_id/"+n.name+"/ControllerUnpublishVolume", codes.OK, func() error {
			_, err := w.ctl.ControllerUnpublishVolume(c, &csi.ControllerUnpublishVolumeRequest{VolumeId: base, NodeId: nid})
			return err
		})
	}
	add("node_id/empty/ControllerPublishVolume", codes.InvalidArgument, func() error {
		_, err := w.ctl.ControllerPublishVolume(c, &csi.ControllerPublishVolumeRequest{VolumeId: base, VolumeCapability: mountCap()})
		return err
	}, "node_id")

	// Page tokens: only a token this plugin handed out is valid.
	validID := base
	for _, tc := range []struct {
		name, token string
	}{
		{"garbage", "!!not a token!!"},
		{"random-text", "\u2603\u00e9\u4e16\u754c\U0001f600"},
		{"base64-garbage", b64("\x00\x01\x02garbage\xff")},
		{"base64-no-slash", b64("local")},
		{"base64-empty-native", b64("local/")},
		{"base64-foreign-backend", b64("other/0123456789abcdef0123456789abcdef")},
		{"base64-dotdot", b64("local/../../etc")},
		{"base64-absolute", b64("/etc/passwd")},
		// An id of the directory layout (38 bytes with its prefix) needs
		// padding; a flat one (54 bytes) would encode the same either way.
		{"base64-std-padded", base64.StdEncoding.EncodeToString([]byte("local/0123456789abcdef0123456789abcdef"))},
		{"10KB", strings.Repeat("A", 10240)},
	} {
		tok := tc.token
		add("token/"+tc.name+"/ListVolumes", codes.Aborted, func() error {
			_, err := w.ctl.ListVolumes(c, &csi.ListVolumesRequest{StartingToken: tok})
			return err
		}, "starting_token")
		add("token/"+tc.name+"/ListSnapshots", codes.Aborted, func() error {
			_, err := w.ctl.ListSnapshots(c, &csi.ListSnapshotsRequest{StartingToken: tok})
			return err
		}, "starting_token")
	}
	add("token/own/ListVolumes", codes.OK, func() error {
		_, err := w.ctl.ListVolumes(c, &csi.ListVolumesRequest{StartingToken: b64(validID)})
		return err
	})
	add("max_entries/negative/ListVolumes", codes.InvalidArgument, func() error {
		_, err := w.ctl.ListVolumes(c, &csi.ListVolumesRequest{MaxEntries: -1})
		return err
	}, "max_entries")
	add("max_entries/negative/ListSnapshots", codes.InvalidArgument, func() error {
		_, err := w.ctl.ListSnapshots(c, &csi.ListSnapshotsRequest{MaxEntries: -1})
		return err
	}, "max_entries")

	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			checkStatus(t, r.call(), r.code, r.mention...)
		})
	}

	t.Run("aftermath", func(t *testing.T) {
		checkPool(t, w, created, snaps)
		if left := dirEntries(t, w.mnt); len(left) > 0 {
			t.Errorf("failed node calls left %v in %s", left, w.mnt)
		}
		if left := dirEntries(t, w.outside); len(left) > 0 {
			t.Errorf("something was created outside: %v in %s", left, w.outside)
		}
		if ms := hostMounts(t, w.top); len(ms) != len(mountsBefore) {
			for m := range ms {
				if !mountsBefore[m] {
					t.Errorf("mount appeared at %s", m)
				}
			}
		}
		if l := harness.LoopsUnder(w.top); len(l) > 0 {
			t.Errorf("loop devices left: %v", l)
		}
		compareHost(t, hostBefore)
	})
}

// checkPool asserts that the pool holds exactly the given volumes and
// snapshots (by CSI id), their name reservations and this node's record,
// and nothing else.
func checkPool(t *testing.T, w *world, vols, snaps map[string]bool) {
	t.Helper()
	native := func(ids map[string]bool) []string {
		var out []string
		for id := range ids {
			out = append(out, strings.TrimPrefix(id, "local/"))
		}
		sort.Strings(out)
		return out
	}
	eq := func(what string, got, want []string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: pool holds %v, want %v", what, got, want)
		}
	}
	top := dirEntries(t, w.pool)
	for _, e := range top {
		switch e {
		case "vols", "volumes", "names", "nodes", "snapshots", "snapnames", "pool.lock", "leases":
		default:
			t.Errorf("unexpected entry %s in the pool", filepath.Join(w.pool, e))
		}
	}
	// Each volume is its metadata file, named by the key its id starts
	// with, and perhaps its image (made by its first stage).
	var flat []string
	for _, id := range native(vols) {
		if len(id) < 32 {
			t.Fatalf("volume id %q is too short for the file pool", id)
		}
		flat = append(flat, id[:32]+".json")
		if _, err := os.Stat(filepath.Join(w.pool, "vols", id+".img")); err == nil {
			flat = append(flat, id+".img")
		}
	}
	sort.Strings(flat)
	eq("vols/", dirEntries(t, filepath.Join(w.pool, "vols")), flat)
	eq("volumes/", dirEntries(t, filepath.Join(w.pool, "volumes")), nil)
	eq("snapshots/", dirEntries(t, filepath.Join(w.pool, "snapshots")), native(snaps))
	eq("nodes/", dirEntries(t, filepath.Join(w.pool, "nodes")), []string{"n1.json"})
	// The node's lease, and its reference if it judged another's: no
	// file named by a caller.
	for _, e := range dirEntries(t, filepath.Join(w.pool, "leases")) {
		if e != "n1.lease" && e != "n1.ref" {
			t.Errorf("unexpected lease file %s", filepath.Join(w.pool, "leases", e))
		}
	}
	// Every name reservation must hold the id of a volume that exists.
	for _, d := range []struct {
		dir string
		ids map[string]bool
	}{{"names", nil}, {"snapnames", snaps}} {
		names := dirEntries(t, filepath.Join(w.pool, d.dir))
		for _, n := range names {
			data, err := os.ReadFile(filepath.Join(w.pool, d.dir, n))
			if err != nil {
				t.Error(err)
				continue
			}
			if id := "local/" + strings.TrimSpace(string(data)); !d.ids[id] {
				t.Errorf("%s/%s reserves %q, which no successful call created (left by a failed call)", d.dir, n, strings.TrimSpace(string(data)))
			}
		}
		if len(names) < len(d.ids) {
			t.Errorf("%s/ holds %d reservations for %d objects", d.dir, len(names), len(d.ids))
		}
	}
}

// TestFailedCreateSnapshotLeavesNothing: a CreateSnapshot that fails
// because its source does not exist must give its name reservation back,
// as a failed CreateVolume does; otherwise every such call leaves a file in
// <pool>/snapnames, without bound.
func TestFailedCreateSnapshotLeavesNothing(t *testing.T) {
	w := newWorld(t)
	for i, src := range []string{"local/0123456789abcdef0123456789abcdef", "local/../../etc"} {
		_, err := w.ctl.CreateSnapshot(ctx(t), &csi.CreateSnapshotRequest{Name: "orphan-" + string(rune('a'+i)), SourceVolumeId: src})
		checkStatus(t, err, codes.NotFound, strings.TrimPrefix(src, "local/"))
	}
	if left := dirEntries(t, filepath.Join(w.pool, "snapnames")); len(left) > 0 {
		t.Errorf("failed CreateSnapshot calls left reservations in snapnames/: %v", left)
	}
	if left := dirEntries(t, filepath.Join(w.pool, "snapshots")); len(left) > 0 {
		t.Errorf("failed CreateSnapshot calls left %v in snapshots/", left)
	}
}
