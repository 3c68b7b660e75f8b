package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	libstoragesim "github.com/csi-libstorage/csi-libstorage/test/sim/libstorage"
)

// lsPost sends one request to the libStorage test server.
func lsPost(t *testing.T, base, path, instance, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+strings.TrimPrefix(base, "tcp://")+path, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	if instance != "" {
		req.Header.Set("Libstorage-Instanceid", instance)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("POST %s: %s", path, resp.Status)
	}
}

func TestMigrate(t *testing.T) {
	sim, err := libstoragesim.New(libstoragesim.Options{Services: []libstoragesim.Service{
		{Name: "cinder", Driver: "cinder", Type: libstoragesim.TypeBlock, SingleAttach: true, NextDevice: libstoragesim.NextDevice{Prefix: "vd", Pattern: "[a-z]"}},
		{Name: "vfs", Driver: "vfs", Type: libstoragesim.TypeObject, VFSRoot: t.TempDir(), NextDevice: libstoragesim.NextDevice{Ignore: true}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	host, err := sim.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	lsPost(t, host, "/volumes/cinder", "", `{"name":"pgdata","size":20}`)
	lsPost(t, host, "/volumes/cinder", "", `{"name":"scratch","size":1}`)
	lsPost(t, host, "/volumes/cinder/cinder-000?attach", "cinder=i-1", `{"nextDeviceName":"/dev/vdb"}`)
	lsPost(t, host, "/volumes/vfs", "", `{"name":"shared","size":1}`)
	lsPost(t, host, "/volumes/vfs/vfs-000?attach", "vfs=node-a", `{}`)
	lsPost(t, host, "/volumes/vfs/vfs-000?attach", "vfs=node-b", `{}`)

	app := filepath.Join(t.TempDir(), "app.json")
	if err := os.WriteFile(app, []byte(`{"id":"/pg","container":{"type":"MESOS","volumes":[{"containerPath":"/var/lib/pg","mode":"RW",
	  "external":{"provider":"dvdi","name":"pgdata","size":20,"options":{"dvdi/driver":"rexray","dvdi/newfstype":"xfs",
	  "dvdi/overwritefs":"true","dvdi/preempt":"true","dvdi/iops":"150","dvdi/bogus":"x"}}}]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ep := "unix:///nonexistent/csi.sock" // the plugin is not asked

	doc := okJSON(t, ep, "migrate", "--libstorage-host", host, "--service", "cinder", "--backend", "rexray", "--app", app)
	if got := get(t, doc, "type"); got != "block" {
		t.Errorf("type = %v", got)
	}
	vols := get(t, doc, "volumes").([]any)
	if len(vols) != 2 {
		t.Fatalf("volumes: %v", vols)
	}
	pg := vols[0]
	for _, c := range []struct {
		path []any
		want any
	}{
		{[]any{"name"}, "pgdata"},
		{[]any{"volume_id"}, "rexray/cinder-000"},
		{[]any{"marathon_volume", "containerPath"}, "/var/lib/pg"},
		{[]any{"marathon_volume", "mode"}, "RW"},
		{[]any{"marathon_volume", "external", "provider"}, "csi"},
		{[]any{"marathon_volume", "external", "name"}, "rexray/cinder-000"},
		{[]any{"marathon_volume", "external", "options", "pluginName"}, "csi.libstorage.io"},
		{[]any{"marathon_volume", "external", "options", "capability", "accessMode"}, "SINGLE_NODE_WRITER"},
		{[]any{"marathon_volume", "external", "options", "capability", "fsType"}, "xfs"},
		{[]any{"mesos_volume", "source", "type"}, "CSI_VOLUME"},
		{[]any{"mesos_volume", "source", "csi_volume", "static_provisioning", "volume_id"}, "rexray/cinder-000"},
		{[]any{"mesos_volume", "source", "csi_volume", "static_provisioning", "volume_capability", "mount", "fs_type"}, "xfs"},
		{[]any{"mesos_volume", "source", "csi_volume", "static_provisioning", "volume_capability", "access_mode", "mode"}, "SINGLE_NODE_WRITER"},
		{[]any{"marathon_volume", "external", "options", "capability", "fsType"}, "xfs"},
	} {
		if got := get(t, pg, c.path...); got != c.want {
			t.Errorf("%v = %v, want %v", c.path, got, c.want)
		}
	}
	warnings := ""
	for _, w := range get(t, pg, "warnings").([]any) {
		warnings += w.(string) + "\n"
	}
	for _, want := range []string{"dvdi/overwritefs=true: no CSI equivalent", "dvdi/preempt=true: no CSI equivalent", "dvdi/bogus=x: unknown option", "dvdi/iops=150: creation-time only", "still attached to i-1"} {
		if !strings.Contains(warnings, want) {
			t.Errorf("warnings lack %q:\n%s", want, warnings)
		}
	}
	if got := get(t, vols[1], "marathon_volume", "external", "options", "capability", "fsType"); got != "ext4" {
		t.Errorf("scratch fsType = %v, want REX-Ray's default ext4", got)
	}
	if w := get(t, vols[1], "warnings").([]any); len(w) != 0 {
		t.Errorf("scratch warnings: %v", w)
	}

	doc = okJSON(t, ep, "migrate", "--libstorage-host", host, "--service", "vfs", "--backend", "shared")
	shared := get(t, doc, "volumes", 0)
	if got := get(t, shared, "marathon_volume", "external", "options", "capability", "accessMode"); got != "MULTI_NODE_MULTI_WRITER" {
		t.Errorf("vfs volume attached to two nodes: access mode %v", got)
	}
	if _, has := get(t, shared, "marathon_volume", "external", "options", "capability").(map[string]any)["fsType"]; has {
		t.Error("a vfs volume got an fsType")
	}

	out := ok(t, ep, "migrate", "--libstorage-host", host, "--service", "cinder", "--backend", "rexray")
	for _, want := range []string{"pgdata → rexray/cinder-000", "Marathon app volume:", "Mesos volume (volume/csi, pre-provisioned):", "warning: still attached to i-1"} {
		if !strings.Contains(out, want) {
			t.Errorf("table output lacks %q:\n%s", want, out)
		}
	}
	if _, errOut, code := csictl(t, ep, "migrate", "--service", "cinder"); code != 2 || !strings.Contains(errOut, "--libstorage-host") {
		t.Errorf("missing flags: exit %d, %s", code, errOut)
	}
	if _, errOut, code := csictl(t, ep, "migrate", "--libstorage-host", host, "--service", "nope", "--backend", "x"); code != 1 || !strings.Contains(errOut, "nope") {
		t.Errorf("unknown service: exit %d, %s", code, errOut)
	}
}
