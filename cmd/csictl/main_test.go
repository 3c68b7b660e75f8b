package main

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

const secret = "s3cr3t-value"

// csictl runs the CLI in-process against ep.
func csictl(t *testing.T, ep string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	if ep != "" {
		args = append([]string{"--endpoint", ep}, args...)
	}
	code = run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

// ok runs the CLI and fails the test unless it exits 0 with no stderr.
func ok(t *testing.T, ep string, args ...string) string {
	t.Helper()
	out, errOut, code := csictl(t, ep, args...)
	if code != 0 || errOut != "" {
		t.Fatalf("csictl %s: exit %d, stderr:\n%s", strings.Join(args, " "), code, errOut)
	}
	if strings.Contains(out, secret) {
		t.Fatalf("csictl %s printed the secret:\n%s", strings.Join(args, " "), out)
	}
	return out
}

// okJSON runs the CLI with -o json and decodes its single document.
func okJSON(t *testing.T, ep string, args ...string) map[string]any {
	t.Helper()
	out := ok(t, ep, append([]string{"-o", "json"}, args...)...)
	dec := json.NewDecoder(strings.NewReader(out))
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("more than one JSON document:\n%s", out)
	}
	return doc
}

// get walks doc along keys (object members or array indexes as ints).
func get(t *testing.T, doc any, path ...any) any {
	t.Helper()
	cur := doc
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, isMap := cur.(map[string]any)
			if !isMap {
				t.Fatalf("%v: not an object at %q in %v", path, k, doc)
			}
			cur = m[k]
		case int:
			a, isArr := cur.([]any)
			if !isArr || k >= len(a) {
				t.Fatalf("%v: no element %d in %v", path, k, doc)
			}
			cur = a[k]
		}
	}
	return cur
}

func wantContains(t *testing.T, what, got string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(got, s) {
			t.Errorf("%s: missing %q in:\n%s", what, s, got)
		}
	}
}

func TestLifecycle(t *testing.T) {
	f := newFakePlugin()
	ep := startFake(t, f, true)

	// create, table output
	out := ok(t, ep, "volume", "create", "vol-a", "--size", "1GiB", "--fs", "xfs",
		"--mount-flag", "noatime", "--mount-flag", "discard", "--mode", "MULTI_NODE_READER_ONLY",
		"--param", "tier=gold", "--param", "opts=a=b", "--secret", "token="+secret)
	wantContains(t, "create table", out, "VOLUME ID", "id-vol-a", "CAPACITY", "1GiB (1073741824 bytes)", "name=vol-a")
	cr := lastReq[*csi.CreateVolumeRequest](t, f, "CreateVolume")
	if cr.GetName() != "vol-a" || cr.GetCapacityRange().GetRequiredBytes() != 1073741824 || cr.GetCapacityRange().GetLimitBytes() != 0 {
		t.Errorf("CreateVolume name/capacity: %v", cr)
	}
	if len(cr.GetVolumeCapabilities()) != 1 {
		t.Fatalf("capabilities: %v", cr.GetVolumeCapabilities())
	}
	vc := cr.GetVolumeCapabilities()[0]
	if vc.GetMount().GetFsType() != "xfs" || !reflect.DeepEqual(vc.GetMount().GetMountFlags(), []string{"noatime", "discard"}) {
		t.Errorf("mount capability: %v", vc)
	}
	if vc.GetAccessMode().GetMode() != csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY {
		t.Errorf("mode: %v", vc.GetAccessMode())
	}
	if !reflect.DeepEqual(cr.GetParameters(), map[string]string{"tier": "gold", "opts": "a=b"}) {
		t.Errorf("parameters: %v", cr.GetParameters())
	}
	if cr.GetSecrets()["token"] != secret {
		t.Errorf("secret not delivered: %v", cr.GetSecrets())
	}

	// create, JSON output, block with a limit, default mode
	doc := okJSON(t, ep, "volume", "create", "vol-b", "--size", "512MiB", "--limit", "1G", "--block")
	if got := get(t, doc, "volume", "volume_id"); got != "id-vol-b" {
		t.Errorf("json volume_id = %v", got)
	}
	if got := get(t, doc, "volume", "capacity_bytes"); got != "536870912" {
		t.Errorf("json capacity_bytes = %v", got)
	}
	cr = lastReq[*csi.CreateVolumeRequest](t, f, "CreateVolume")
	vc = cr.GetVolumeCapabilities()[0]
	if vc.GetBlock() == nil || vc.GetMount() != nil {
		t.Errorf("want block access: %v", vc)
	}
	if vc.GetAccessMode().GetMode() != csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER {
		t.Errorf("default mode: %v", vc.GetAccessMode())
	}
	if cr.GetCapacityRange().GetLimitBytes() != 1000000000 || cr.GetCapacityRange().GetRequiredBytes() != 536870912 {
		t.Errorf("capacity range: %v", cr.GetCapacityRange())
	}
	if len(cr.GetSecrets()) != 0 {
		t.Errorf("unexpected secrets: %v", cr.GetSecrets())
	}

	// list: one page at a time
	out = ok(t, ep, "volume", "list", "--max", "1")
	wantContains(t, "list page 1", out, "id-vol-a", "NEXT TOKEN: 1")
	if strings.Contains(out, "id-vol-b") {
		t.Errorf("page 1 shows the second volume:\n%s", out)
	}
	if lr := lastReq[*csi.ListVolumesRequest](t, f, "ListVolumes"); lr.GetMaxEntries() != 1 || lr.GetStartingToken() != "" {
		t.Errorf("ListVolumes request: %v", lr)
	}
	doc = okJSON(t, ep, "volume", "list", "--max", "1", "--token", "1")
	if got := get(t, doc, "entries", 0, "volume", "volume_id"); got != "id-vol-b" {
		t.Errorf("page 2 = %v", got)
	}
	if n := len(get(t, doc, "entries").([]any)); n != 1 {
		t.Errorf("page 2 has %d entries", n)
	}
	if _, has := doc["next_token"]; has {
		t.Errorf("last page has next_token: %v", doc)
	}

	// list --all follows the tokens and prints one document
	before := f.callCount("ListVolumes")
	doc = okJSON(t, ep, "volume", "list", "--max", "1", "--all")
	if calls := f.callCount("ListVolumes") - before; calls != 2 {
		t.Errorf("--all made %d ListVolumes calls, want 2", calls)
	}
	var ids []string
	for _, e := range get(t, doc, "entries").([]any) {
		ids = append(ids, get(t, e, "volume", "volume_id").(string))
	}
	if !reflect.DeepEqual(ids, []string{"id-vol-a", "id-vol-b"}) {
		t.Errorf("--all ids = %v", ids)
	}
	out = ok(t, ep, "volume", "list", "--all", "--max", "1")
	wantContains(t, "list --all table", out, "VOLUME ID", "id-vol-a", "id-vol-b", "512MiB")
	if strings.Contains(out, "NEXT TOKEN") {
		t.Errorf("--all table shows a next token:\n%s", out)
	}

	// get
	out = ok(t, ep, "volume", "get", "id-vol-a")
	wantContains(t, "get table", out, "id-vol-a", "1GiB", "PUBLISHED NODES")

	// controller publish prints the publish context
	out = ok(t, ep, "controller", "publish", "id-vol-a", "--node", "node-1", "--readonly",
		"--fs", "xfs", "--mode", "MULTI_NODE_READER_ONLY", "--context", "name=vol-a", "--secret", "token="+secret)
	wantContains(t, "publish table", out, "devicePath", "/dev/fake/id-vol-a", "lun")
	pr := lastReq[*csi.ControllerPublishVolumeRequest](t, f, "ControllerPublishVolume")
	if pr.GetNodeId() != "node-1" || !pr.GetReadonly() || pr.GetVolumeContext()["name"] != "vol-a" ||
		pr.GetSecrets()["token"] != secret || pr.GetVolumeCapability().GetMount().GetFsType() != "xfs" {
		t.Errorf("ControllerPublishVolume request: %v", pr)
	}
	doc = okJSON(t, ep, "volume", "get", "id-vol-a")
	if got := get(t, doc, "status", "published_node_ids", 0); got != "node-1" {
		t.Errorf("published_node_ids[0] = %v", got)
	}
	doc = okJSON(t, ep, "controller", "publish", "id-vol-a", "--node", "node-2")
	if got := get(t, doc, "publish_context", "devicePath"); got != "/dev/fake/id-vol-a" {
		t.Errorf("json publish_context.devicePath = %v", got)
	}

	// node stage and publish
	ok(t, ep, "node", "stage", "id-vol-a", "--staging", "/stage/a", "--fs", "xfs", "--mount-flag", "noatime",
		"--publish-context", "devicePath=/dev/fake/id-vol-a", "--context", "name=vol-a", "--secret", "token="+secret)
	sr := lastReq[*csi.NodeStageVolumeRequest](t, f, "NodeStageVolume")
	if sr.GetStagingTargetPath() != "/stage/a" || sr.GetPublishContext()["devicePath"] != "/dev/fake/id-vol-a" ||
		sr.GetVolumeContext()["name"] != "vol-a" || sr.GetSecrets()["token"] != secret ||
		sr.GetVolumeCapability().GetMount().GetMountFlags()[0] != "noatime" {
		t.Errorf("NodeStageVolume request: %v", sr)
	}
	out = ok(t, ep, "node", "publish", "id-vol-a", "--target", "/tgt/a", "--staging", "/stage/a", "--readonly")
	wantContains(t, "node publish", out, "published volume id-vol-a at /tgt/a")
	npr := lastReq[*csi.NodePublishVolumeRequest](t, f, "NodePublishVolume")
	if npr.GetTargetPath() != "/tgt/a" || npr.GetStagingTargetPath() != "/stage/a" || !npr.GetReadonly() ||
		npr.GetVolumeCapability().GetMount() == nil {
		t.Errorf("NodePublishVolume request: %v", npr)
	}

	// stats
	out = ok(t, ep, "stats", "id-vol-a", "--path", "/tgt/a")
	wantContains(t, "stats table", out, "UNIT", "bytes", "1GiB", "256MiB", "768MiB", "inodes", "65536")
	doc = okJSON(t, ep, "stats", "id-vol-a", "--path", "/tgt/a")
	if got := get(t, doc, "usage", 0, "total"); got != "1073741824" {
		t.Errorf("json usage[0].total = %v", got)
	}
	if got := get(t, doc, "usage", 1, "unit"); got != "INODES" {
		t.Errorf("json usage[1].unit = %v", got)
	}

	// tear down
	ok(t, ep, "node", "unpublish", "id-vol-a", "--target", "/tgt/a")
	if ur := lastReq[*csi.NodeUnpublishVolumeRequest](t, f, "NodeUnpublishVolume"); ur.GetTargetPath() != "/tgt/a" {
		t.Errorf("NodeUnpublishVolume request: %v", ur)
	}
	ok(t, ep, "node", "unstage", "id-vol-a", "--staging", "/stage/a")
	if ur := lastReq[*csi.NodeUnstageVolumeRequest](t, f, "NodeUnstageVolume"); ur.GetStagingTargetPath() != "/stage/a" {
		t.Errorf("NodeUnstageVolume request: %v", ur)
	}
	ok(t, ep, "controller", "unpublish", "id-vol-a", "--node", "node-1")
	doc = okJSON(t, ep, "controller", "unpublish", "id-vol-a", "--node", "node-2")
	if len(doc) != 0 {
		t.Errorf("unpublish JSON = %v, want {}", doc)
	}
	if len(f.published["id-vol-a"]) != 0 || len(f.staged) != 0 || len(f.targets) != 0 {
		t.Errorf("plugin state after teardown: published %v staged %v targets %v", f.published, f.staged, f.targets)
	}

	out = ok(t, ep, "volume", "delete", "id-vol-a", "--secret", "token="+secret)
	wantContains(t, "delete", out, "deleted volume id-vol-a")
	if dr := lastReq[*csi.DeleteVolumeRequest](t, f, "DeleteVolume"); dr.GetSecrets()["token"] != secret {
		t.Errorf("DeleteVolume secrets: %v", dr.GetSecrets())
	}

	// the deleted volume is gone: NotFound, exit 1, documented format
	out, errOut, code := csictl(t, ep, "volume", "get", "id-vol-a")
	if code != 1 || out != "" {
		t.Errorf("get deleted: exit %d, stdout %q", code, out)
	}
	if want := "error: ControllerGetVolume: NotFound: volume id-vol-a not found\n"; errOut != want {
		t.Errorf("get deleted: stderr %q, want %q", errOut, want)
	}
}
