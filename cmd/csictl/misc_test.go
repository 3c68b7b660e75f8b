package main

import (
	"reflect"

	"gopkg.in/yaml.v3"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// TestSizeFlag proves csictl's size flags use the project's one parser
// (internal/units, whose table test covers every form): forms that the
// old csictl-only parser refused, such as Gi, now parse.
func TestSizeFlag(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		err  string
	}{
		{"1.5GiB", 3 << 29, ""},
		{"512Mi", 512 << 20, ""},
		{"10G", 10e9, ""},
		{"4096", 4096, ""},
		{"1g", 0, "accepted forms"},
	} {
		var f sizeFlag
		err := f.Set(tt.in)
		switch {
		case tt.err == "" && (err != nil || f.bytes != tt.want):
			t.Errorf("--size %s = %d, %v; want %d", tt.in, f.bytes, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("--size %s: %v; want an error containing %q", tt.in, err, tt.err)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in, network, addr string
		bad               bool
	}{
		{in: "unix:///run/csi/csi.sock", network: "unix", addr: "/run/csi/csi.sock"},
		{in: "unix:/run/csi/csi.sock", network: "unix", addr: "/run/csi/csi.sock"},
		{in: "/run/csi/csi.sock", network: "unix", addr: "/run/csi/csi.sock"},
		{in: "/run/csi//x/../csi.sock", network: "unix", addr: "/run/csi/csi.sock"},
		{in: "tcp://10.0.0.1:9000", network: "tcp", addr: "10.0.0.1:9000"},
		{in: "tcp://[::1]:9000", network: "tcp", addr: "[::1]:9000"},
		{in: "localhost:9000", network: "tcp", addr: "localhost:9000"},
		{in: ":9000", network: "tcp", addr: ":9000"},
		{in: "", bad: true},
		{in: "unix://run/csi.sock", bad: true},
		{in: "unix:relative.sock", bad: true},
		{in: "relative.sock", bad: true},
		{in: "tcp://nohost", bad: true},
		{in: "tcp://host:", bad: true},
		{in: "http://host:80", bad: true},
	}
	for _, tt := range tests {
		ep, err := parseEndpoint(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("parseEndpoint(%q) = %v, want error", tt.in, ep)
			}
			continue
		}
		if err != nil || ep.network != tt.network || ep.address != tt.addr {
			t.Errorf("parseEndpoint(%q) = %v, %v; want %s %s", tt.in, ep, err, tt.network, tt.addr)
		}
	}
}

func TestEndpointForms(t *testing.T) {
	f := newFakePlugin()
	ep := startFake(t, f, true)
	path := strings.TrimPrefix(ep, "unix://")
	for _, form := range []string{ep, "unix:" + path, path} {
		out := ok(t, form, "probe")
		wantContains(t, form, out, "READY")
	}
	// $CSI_ENDPOINT is the default when --endpoint is not given.
	t.Setenv("CSI_ENDPOINT", path)
	out := ok(t, "", "node", "info")
	wantContains(t, "CSI_ENDPOINT", out, "node-1")
}

func TestInfo(t *testing.T) {
	f := newFakePlugin()
	ep := startFake(t, f, true)
	out := ok(t, ep, "info")
	wantContains(t, "info table", out,
		"NAME", "fake.csi.example.com", "0.0.1", "mode=test",
		"CONTROLLER_SERVICE, VOLUME_EXPANSION=ONLINE",
		"CREATE_DELETE_VOLUME, PUBLISH_UNPUBLISH_VOLUME, LIST_VOLUMES",
		"STAGE_UNSTAGE_VOLUME, GET_VOLUME_STATS", "NODE ID", "node-1", "16", "zone=a")

	doc := okJSON(t, ep, "info")
	if get(t, doc, "plugin_info", "name") != "fake.csi.example.com" ||
		get(t, doc, "controller_capabilities", "capabilities", 0, "rpc", "type") != "CREATE_DELETE_VOLUME" ||
		get(t, doc, "node_info", "max_volumes_per_node") != "16" {
		t.Errorf("info JSON: %v", doc)
	}
}

// A node-only plugin answers Controller calls with Unimplemented; info
// still succeeds and says so.
func TestInfoNodeOnly(t *testing.T) {
	ep := startFake(t, newFakePlugin(), false)
	out := ok(t, ep, "info")
	wantContains(t, "node-only info", out, "(controller service not served)", "STAGE_UNSTAGE_VOLUME", "node-1")

	doc := okJSON(t, ep, "info")
	if v, present := doc["controller_capabilities"]; !present || v != nil {
		t.Errorf("controller_capabilities = %v (present %v), want null", v, present)
	}
	if get(t, doc, "node_info", "node_id") != "node-1" {
		t.Errorf("node_info: %v", doc)
	}

	// Other commands report the Unimplemented error as it is.
	_, errOut, code := csictl(t, ep, "volume", "list")
	if code != 1 || !strings.HasPrefix(errOut, "error: ListVolumes: Unimplemented: ") {
		t.Errorf("list on node-only plugin: exit %d stderr %q", code, errOut)
	}
}

func TestCapacity(t *testing.T) {
	f := newFakePlugin()
	ep := startFake(t, f, true)
	out := ok(t, ep, "capacity", "--param", "tier=gold")
	wantContains(t, "capacity table", out, "AVAILABLE", "10GiB", "MAXIMUM VOLUME SIZE", "4GiB")
	req := lastReq[*csi.GetCapacityRequest](t, f, "GetCapacity")
	if len(req.GetVolumeCapabilities()) != 0 || req.GetParameters()["tier"] != "gold" {
		t.Errorf("GetCapacity without capability flags: %v", req)
	}

	doc := okJSON(t, ep, "capacity", "--block", "--mode", "SINGLE_NODE_READER_ONLY")
	if get(t, doc, "available_capacity") != "10737418240" {
		t.Errorf("capacity JSON: %v", doc)
	}
	req = lastReq[*csi.GetCapacityRequest](t, f, "GetCapacity")
	if len(req.GetVolumeCapabilities()) != 1 || req.GetVolumeCapabilities()[0].GetBlock() == nil ||
		req.GetVolumeCapabilities()[0].GetAccessMode().GetMode() != csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY {
		t.Errorf("GetCapacity capability: %v", req.GetVolumeCapabilities())
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"help"}, []string{"Usage: csictl [global flags] COMMAND", "--endpoint ADDRESS", "-o FORMAT", "--timeout DURATION",
			"volume create NAME", "controller publish ID", "node unstage ID", "stats ID", "capacity",
			"1Gi = 1GiB = 1073741824 bytes but\n1G = 1GB = 1000000000", "MULTI_NODE_READER_ONLY"}},
		{[]string{"--help"}, []string{"Commands:"}},
		{[]string{"volume", "create", "--help"}, []string{"volume create NAME [flags]", "--size SIZE", "--limit SIZE",
			"--fs TYPE", "--block", "--mount-flag FLAG", "--mode MODE", "--param KEY=VALUE", "--secret KEY=VALUE", "powers of 1024"}},
		{[]string{"help", "volume", "list"}, []string{"--max N", "--token TOKEN", "--all"}},
		{[]string{"node", "-h"}, []string{"node stage ID", "node publish ID", "node info"}},
		{[]string{"help", "controller"}, []string{"controller publish ID", "controller unpublish ID"}},
		{[]string{"node", "publish", "-h"}, []string{"--target PATH", "--staging PATH", "--readonly", "--publish-context KEY=VALUE", "--context KEY=VALUE"}},
		{[]string{"stats", "--help"}, []string{"--path PATH"}},
	}
	for _, tt := range tests {
		out, errOut, code := csictl(t, "", tt.args...)
		if code != 0 || errOut != "" {
			t.Errorf("csictl %q: exit %d stderr %q", tt.args, code, errOut)
		}
		wantContains(t, strings.Join(tt.args, " "), out, tt.want...)
	}
	_, errOut, code := csictl(t, "", "help", "nothing")
	if code != 2 || !strings.HasPrefix(errOut, "error: help: unknown command \"nothing\"") {
		t.Errorf("help nothing: exit %d stderr %q", code, errOut)
	}
}

func TestInterspersedArgs(t *testing.T) {
	f := newFakePlugin()
	ep := startFake(t, f, true)
	// Flags before the name, and a name after "--" that looks like a flag.
	ok(t, ep, "volume", "create", "--size", "1G", "--", "-odd")
	cr := lastReq[*csi.CreateVolumeRequest](t, f, "CreateVolume")
	if cr.GetName() != "-odd" || cr.GetCapacityRange().GetRequiredBytes() != 1e9 {
		t.Errorf("CreateVolume: %v", cr)
	}
}

// A flag's value may start with "-", and may even be "--": the value is
// the flag's, and flag parsing goes on after it. Before, a "--" given as
// a value ended flag parsing, so the flags after it became positional
// arguments.
func TestFlagValuesStartingWithDash(t *testing.T) {
	f := newFakePlugin()
	ep := startFake(t, f, true)
	tests := []struct {
		name       string
		args       []string
		volName    string
		params     map[string]string
		mountFlags []string
	}{
		{"value is --", []string{"volume", "create", "--mount-flag", "--", "v1", "--size", "1Gi"},
			"v1", nil, []string{"--"}},
		{"value starts with -", []string{"volume", "create", "--mount-flag", "-o", "v2", "--param", "k=-x", "--size", "1Gi"},
			"v2", map[string]string{"k": "-x"}, []string{"-o"}},
		{"--name=value form", []string{"volume", "create", "--mount-flag=--", "v3", "--size=1Gi"},
			"v3", nil, []string{"--"}},
		{"-- ends flags", []string{"volume", "create", "--size", "1Gi", "--mount-flag", "-x", "--", "--size"},
			"--size", nil, []string{"-x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok(t, ep, tt.args...)
			cr := lastReq[*csi.CreateVolumeRequest](t, f, "CreateVolume")
			if cr.GetName() != tt.volName || cr.GetCapacityRange().GetRequiredBytes() != 1<<30 {
				t.Errorf("name %q, capacity %v", cr.GetName(), cr.GetCapacityRange())
			}
			if got := cr.GetVolumeCapabilities()[0].GetMount().GetMountFlags(); strings.Join(got, " ") != strings.Join(tt.mountFlags, " ") {
				t.Errorf("mount flags %q, want %q", got, tt.mountFlags)
			}
			for k, v := range tt.params {
				if cr.GetParameters()[k] != v {
					t.Errorf("parameters %v, want %s=%s", cr.GetParameters(), k, v)
				}
			}
		})
	}
	// "--param --" is a bad KEY=VALUE: a usage error about that flag.
	_, errOut, code := csictl(t, ep, "volume", "create", "v", "--param", "--", "--size", "1Gi")
	if code != 2 || !strings.Contains(errOut, `invalid value "--" for flag -param: want KEY=VALUE`) {
		t.Errorf("--param --: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = csictl(t, ep, "volume", "create", "v", "--size")
	if code != 2 || !strings.Contains(errOut, "flag needs an argument: -size") {
		t.Errorf("a flag without its value: exit %d, stderr %q", code, errOut)
	}
}

func TestYAMLOutput(t *testing.T) {
	f := newFakePlugin()
	ep := startFake(t, f, true)
	out := ok(t, ep, "-o", "yaml", "volume", "create", "vol-y", "--size", "1GiB", "--param", "n=007")
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, out)
	}
	vol, _ := doc["volume"].(map[string]any)
	// 64-bit integers are strings in the JSON form, and stay strings.
	if vol["volume_id"] != "id-vol-y" || vol["capacity_bytes"] != "1073741824" {
		t.Errorf("volume %v\n%s", vol, out)
	}
	if strings.Contains(out, "{") || strings.Contains(out, `"volume_id"`) {
		t.Errorf("YAML is not in block style:\n%s", out)
	}
	js := okJSON(t, ep, "volume", "create", "vol-y", "--size", "1GiB", "--param", "n=007")
	if !reflect.DeepEqual(js, doc) {
		t.Errorf("yaml and json documents differ:\n%v\n%v", doc, js)
	}
	info := ok(t, ep, "-o", "yaml", "info")
	if err := yaml.Unmarshal([]byte(info), &doc); err != nil || doc["plugin_info"] == nil {
		t.Errorf("info as YAML: %v\n%s", err, info)
	}
}
