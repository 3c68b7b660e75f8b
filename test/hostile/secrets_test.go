package hostile

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func randomSecret(prefix string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// entryText is everything a log entry would write: message, logger name,
// caller, stack and every field, the request body among them.
func entryText(e observer.LoggedEntry) map[string]string {
	out := map[string]string{
		"<message>": e.Message,
		"<logger>":  e.LoggerName,
		"<caller>":  e.Caller.String(),
		"<stack>":   e.Stack,
	}
	for k, v := range e.ContextMap() {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// call is one RPC of the secrets test, with the code it is expected to get
// (so a call meant to fail really fails where intended).
type call struct {
	name string
	code codes.Code
	do   func() (proto.Message, error)
}

// alsoOK lists other acceptable codes for some calls, where the answer
// depends on the host (growing mounted ext4 needs CAP_SYS_RESOURCE) or on
// whether an optional RPC is implemented yet.
var alsoOK = map[string][]codes.Code{
	"NodeExpandVolume": {codes.FailedPrecondition},
	"GetSnapshot":      {codes.Unimplemented},
}

// TestSecretsNeverLeak sends a distinctive secret in the secrets field of
// every RPC that has one, in calls that succeed and calls that fail, and
// checks that it reaches no log line (at debug level, message and every
// field), no returned error or response, and no metric.
//
// A secret value is also sent as a parameter value in one call. Parameters
// are not secret fields in CSI (a StorageClass's parameters are readable
// by whoever can read it), so the plugin may log and echo them; that call
// checks only that the copy in the secrets map is stripped, and uses a
// second secret so the first is never sent outside a secrets field.
func TestSecretsNeverLeak(t *testing.T) {
	w := newWorld(t)
	c := ctx(t)
	secret := randomSecret("S3CR3T-")
	sec := map[string]string{"password": secret, secret: secret, "token": "x-" + secret + "-y"}
	staging := filepath.Join(w.mnt, "staging")
	target := filepath.Join(w.mnt, "target")
	unknown := "local/0123456789abcdef0123456789abcdef"
	var volID, snapID, cloneID string

	calls := []call{
		// Successful lifecycle, secrets everywhere.
		{"CreateVolume", codes.OK, func() (proto.Message, error) {
			r, err := w.ctl.CreateVolume(c, &csi.CreateVolumeRequest{Name: "secret-vol", VolumeCapabilities: []*csi.VolumeCapability{mountCap()}, Secrets: sec})
			volID = r.GetVolume().GetVolumeId()
			return r, err
		}},
		{"ValidateVolumeCapabilities", codes.OK, func() (proto.Message, error) {
			return w.ctl.ValidateVolumeCapabilities(c, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: volID, VolumeCapabilities: []*csi.VolumeCapability{mountCap()}, Secrets: sec})
		}},
		{"ControllerPublishVolume", codes.OK, func() (proto.Message, error) {
			return w.ctl.ControllerPublishVolume(c, &csi.ControllerPublishVolumeRequest{VolumeId: volID, NodeId: "n1", VolumeCapability: mountCap(), Secrets: sec})
		}},
		{"NodeStageVolume", codes.OK, func() (proto.Message, error) {
			return w.node.NodeStageVolume(c, &csi.NodeStageVolumeRequest{VolumeId: volID, StagingTargetPath: staging, VolumeCapability: mountCap(), Secrets: sec})
		}},
		{"NodePublishVolume", codes.OK, func() (proto.Message, error) {
			return w.node.NodePublishVolume(c, &csi.NodePublishVolumeRequest{VolumeId: volID, StagingTargetPath: staging, TargetPath: target, VolumeCapability: mountCap(), Secrets: sec})
		}},
		{"ControllerExpandVolume", codes.OK, func() (proto.Message, error) {
			return w.ctl.ControllerExpandVolume(c, &csi.ControllerExpandVolumeRequest{VolumeId: volID, CapacityRange: &csi.CapacityRange{RequiredBytes: 32 << 20}, Secrets: sec})
		}},
		{"NodeExpandVolume", codes.OK, func() (proto.Message, error) {
			return w.node.NodeExpandVolume(c, &csi.NodeExpandVolumeRequest{VolumeId: volID, VolumePath: target, CapacityRange: &csi.CapacityRange{RequiredBytes: 32 << 20}, Secrets: sec})
		}},
		{"CreateSnapshot", codes.OK, func() (proto.Message, error) {
			r, err := w.ctl.CreateSnapshot(c, &csi.CreateSnapshotRequest{Name: "secret-snap", SourceVolumeId: volID, Secrets: sec})
			snapID = r.GetSnapshot().GetSnapshotId()
			return r, err
		}},
		{"ListSnapshots", codes.OK, func() (proto.Message, error) {
			return w.ctl.ListSnapshots(c, &csi.ListSnapshotsRequest{Secrets: sec})
		}},
		{"CreateVolume(from snapshot)", codes.OK, func() (proto.Message, error) {
			r, err := w.ctl.CreateVolume(c, &csi.CreateVolumeRequest{Name: "secret-clone", VolumeCapabilities: []*csi.VolumeCapability{mountCap()}, Secrets: sec,
				CapacityRange:       &csi.CapacityRange{RequiredBytes: 32 << 20},
				VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapID}}}})
			cloneID = r.GetVolume().GetVolumeId()
			return r, err
		}},
		{"DeleteSnapshot", codes.OK, func() (proto.Message, error) {
			return w.ctl.DeleteSnapshot(c, &csi.DeleteSnapshotRequest{SnapshotId: snapID, Secrets: sec})
		}},
		{"NodeUnpublishVolume", codes.OK, func() (proto.Message, error) {
			return w.node.NodeUnpublishVolume(c, &csi.NodeUnpublishVolumeRequest{VolumeId: volID, TargetPath: target})
		}},
		{"NodeUnstageVolume", codes.OK, func() (proto.Message, error) {
			return w.node.NodeUnstageVolume(c, &csi.NodeUnstageVolumeRequest{VolumeId: volID, StagingTargetPath: staging})
		}},
		{"ControllerUnpublishVolume", codes.OK, func() (proto.Message, error) {
			return w.ctl.ControllerUnpublishVolume(c, &csi.ControllerUnpublishVolumeRequest{VolumeId: volID, NodeId: "n1", Secrets: sec})
		}},
		{"DeleteVolume", codes.OK, func() (proto.Message, error) {
			return w.ctl.DeleteVolume(c, &csi.DeleteVolumeRequest{VolumeId: volID, Secrets: sec})
		}},
		{"DeleteVolume(clone)", codes.OK, func() (proto.Message, error) {
			return w.ctl.DeleteVolume(c, &csi.DeleteVolumeRequest{VolumeId: cloneID, Secrets: sec})
		}},

		// Calls that fail, each where the secret sits next to the fault.
		{"CreateVolume(bad parameter)", codes.InvalidArgument, func() (proto.Message, error) {
			return w.ctl.CreateVolume(c, &csi.CreateVolumeRequest{Name: "secret-bad", VolumeCapabilities: []*csi.VolumeCapability{mountCap()}, Parameters: map[string]string{"nosuch": "v"}, Secrets: sec})
		}},
		{"CreateVolume(bad mode)", codes.InvalidArgument, func() (proto.Message, error) {
			return w.ctl.CreateVolume(c, &csi.CreateVolumeRequest{Name: "secret-bad", VolumeCapabilities: []*csi.VolumeCapability{modeCap(99)}, Secrets: sec})
		}},
		{"CreateVolume(bad name)", codes.InvalidArgument, func() (proto.Message, error) {
			return w.ctl.CreateVolume(c, &csi.CreateVolumeRequest{Name: "bad\x00name", VolumeCapabilities: []*csi.VolumeCapability{mountCap()}, Secrets: sec})
		}},
		{"CreateVolume(too big)", codes.ResourceExhausted, func() (proto.Message, error) {
			return w.ctl.CreateVolume(c, &csi.CreateVolumeRequest{Name: "secret-huge", CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 62}, VolumeCapabilities: []*csi.VolumeCapability{mountCap()}, Secrets: sec})
		}},
		{"DeleteVolume(malformed)", codes.InvalidArgument, func() (proto.Message, error) {
			return w.ctl.DeleteVolume(c, &csi.DeleteVolumeRequest{VolumeId: "local/\x00", Secrets: sec})
		}},
		{"ControllerPublishVolume(unknown volume)", codes.NotFound, func() (proto.Message, error) {
			return w.ctl.ControllerPublishVolume(c, &csi.ControllerPublishVolumeRequest{VolumeId: unknown, NodeId: "n1", VolumeCapability: mountCap(), Secrets: sec})
		}},
		{"ControllerUnpublishVolume(malformed)", codes.InvalidArgument, func() (proto.Message, error) {
			return w.ctl.ControllerUnpublishVolume(c, &csi.ControllerUnpublishVolumeRequest{VolumeId: "local/\n", NodeId: "n1", Secrets: sec})
		}},
		{"ValidateVolumeCapabilities(unknown volume)", codes.NotFound, func() (proto.Message, error) {
			return w.ctl.ValidateVolumeCapabilities(c, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: unknown, VolumeCapabilities: []*csi.VolumeCapability{mountCap()}, Secrets: sec})
		}},
		{"NodeStageVolume(unknown volume)", codes.NotFound, func() (proto.Message, error) {
			return w.node.NodeStageVolume(c, &csi.NodeStageVolumeRequest{VolumeId: unknown, StagingTargetPath: staging, VolumeCapability: mountCap(), Secrets: sec})
		}},
		{"NodeStageVolume(bad path)", codes.InvalidArgument, func() (proto.Message, error) {
			return w.node.NodeStageVolume(c, &csi.NodeStageVolumeRequest{VolumeId: unknown, StagingTargetPath: "rel/path", VolumeCapability: mountCap(), Secrets: sec})
		}},
		{"NodePublishVolume(unknown volume)", codes.NotFound, func() (proto.Message, error) {
			return w.node.NodePublishVolume(c, &csi.NodePublishVolumeRequest{VolumeId: unknown, StagingTargetPath: staging, TargetPath: target, VolumeCapability: mountCap(), Secrets: sec})
		}},
		{"CreateSnapshot(unknown source)", codes.NotFound, func() (proto.Message, error) {
			return w.ctl.CreateSnapshot(c, &csi.CreateSnapshotRequest{Name: "secret-snap-bad", SourceVolumeId: "/etc/passwd", Secrets: sec})
		}},
		{"DeleteSnapshot(malformed)", codes.InvalidArgument, func() (proto.Message, error) {
			return w.ctl.DeleteSnapshot(c, &csi.DeleteSnapshotRequest{SnapshotId: "local/\x00", Secrets: sec})
		}},
		{"ListSnapshots(bad token)", codes.Aborted, func() (proto.Message, error) {
			return w.ctl.ListSnapshots(c, &csi.ListSnapshotsRequest{StartingToken: "garbage!", Secrets: sec})
		}},
		{"ControllerExpandVolume(unknown volume)", codes.NotFound, func() (proto.Message, error) {
			return w.ctl.ControllerExpandVolume(c, &csi.ControllerExpandVolumeRequest{VolumeId: unknown, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}, Secrets: sec})
		}},
		{"NodeExpandVolume(unknown volume)", codes.NotFound, func() (proto.Message, error) {
			return w.node.NodeExpandVolume(c, &csi.NodeExpandVolumeRequest{VolumeId: unknown, VolumePath: target, Secrets: sec})
		}},
		{"ControllerModifyVolume", codes.InvalidArgument, func() (proto.Message, error) {
			return w.ctl.ControllerModifyVolume(c, &csi.ControllerModifyVolumeRequest{VolumeId: unknown, Secrets: sec, MutableParameters: map[string]string{"a": "b"}})
		}},
		{"GetSnapshot", codes.NotFound, func() (proto.Message, error) {
			return w.ctl.GetSnapshot(c, &csi.GetSnapshotRequest{SnapshotId: unknown, Secrets: sec})
		}},
	}

	var errs []error
	var resps []proto.Message
	for _, cl := range calls {
		resp, err := cl.do()
		if got := status.Code(err); got != cl.code && !slices.Contains(alsoOK[cl.name], got) {
			t.Errorf("%s: %v, want %v (the call must fail, or succeed, where intended)", cl.name, err, cl.code)
		}
		if err != nil {
			errs = append(errs, err)
		} else {
			resps = append(resps, resp)
		}
	}

	// The parameter-value case, with its own secret.
	secret2 := randomSecret("PARAMSECRET-")
	_, perr := w.ctl.CreateVolume(c, &csi.CreateVolumeRequest{Name: "secret-param", VolumeCapabilities: []*csi.VolumeCapability{mountCap()},
		Parameters: map[string]string{"fsType": secret2}, Secrets: map[string]string{"password": secret2}})
	checkStatus(t, perr, codes.InvalidArgument, "fsType")

	metrics := w.metrics()
	entries := w.logs.All()

	t.Run("logs", func(t *testing.T) {
		stripped := map[string]int{}
		for _, e := range entries {
			for k, v := range entryText(e) {
				if strings.Contains(v, secret) {
					t.Errorf("log line %q (level %v), field %s, holds the secret: %s", e.Message, e.Level, k, trunc(v))
				}
			}
			if e.Message == "request" {
				body := fmt.Sprint(e.ContextMap()["body"])
				if strings.Contains(body, "***stripped***") {
					stripped[fmt.Sprint(e.ContextMap()["method"])]++
				}
			}
		}
		// The debug request lines were written, with the secrets blanked:
		// the check above did look at request bodies.
		for _, m := range []string{"CreateVolume", "DeleteVolume", "ControllerPublishVolume", "ControllerUnpublishVolume", "ValidateVolumeCapabilities",
			"CreateSnapshot", "DeleteSnapshot", "ListSnapshots", "ControllerExpandVolume", "ControllerModifyVolume", "GetSnapshot"} {
			if stripped["/csi.v1.Controller/"+m] == 0 {
				t.Errorf("no debug request line with stripped secrets for %s", m)
			}
		}
		for _, m := range []string{"NodeStageVolume", "NodePublishVolume", "NodeExpandVolume"} {
			if stripped["/csi.v1.Node/"+m] == 0 {
				t.Errorf("no debug request line with stripped secrets for %s", m)
			}
		}
	})
	t.Run("errors", func(t *testing.T) {
		if len(errs) < 15 {
			t.Fatalf("only %d calls failed; the test meant more to", len(errs))
		}
		for _, err := range errs {
			st := status.Convert(err)
			if strings.Contains(st.Message(), secret) || strings.Contains(fmt.Sprint(st.Proto()), secret) {
				t.Errorf("error returned to the caller holds the secret: %v", err)
			}
		}
		for _, r := range resps {
			if strings.Contains(fmt.Sprint(r), secret) {
				t.Errorf("response holds the secret: %v", r)
			}
		}
	})
	t.Run("metrics", func(t *testing.T) {
		if !strings.Contains(metrics, "CreateVolume") {
			t.Fatalf("metrics do not count calls, so this check proves nothing:\n%s", trunc(metrics))
		}
		for _, s := range []string{secret, secret2} {
			if strings.Contains(metrics, s) {
				t.Errorf("metrics hold a secret")
			}
		}
	})
	t.Run("parameter-value", func(t *testing.T) {
		found := false
		for _, e := range entries {
			for k, v := range entryText(e) {
				if !strings.Contains(v, secret2) {
					continue
				}
				switch k {
				case "body":
					found = true
					var body struct {
						Secrets    any               `json:"secrets"`
						Parameters map[string]string `json:"parameters"`
					}
					if err := json.Unmarshal([]byte(v), &body); err != nil {
						t.Errorf("request body is not JSON: %v", err)
					}
					if body.Secrets != "***stripped***" || strings.Count(v, secret2) != 1 {
						t.Errorf("the secrets map was logged: %s", v)
					}
				case "error":
					// The offending parameter value is echoed; it is
					// not a secret field.
				default:
					t.Errorf("log line %q field %s holds the value sent in the secrets map: %s", e.Message, k, v)
				}
			}
		}
		if !found {
			t.Errorf("no debug request line for the parameter-value call")
		}
		if n := strings.Count(status.Convert(perr).Message(), secret2); n > 1 {
			t.Errorf("the error repeats the value %d times; the secrets map's copy leaked: %v", n, perr)
		}
	})
}
