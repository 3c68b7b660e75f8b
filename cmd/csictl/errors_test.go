package main

import (
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

func TestUsageErrors(t *testing.T) {
	f := newFakePlugin()
	ep := startFake(t, f, true)

	tests := []struct {
		name    string
		args    []string
		wantErr string // prefix of the first stderr line
		usage   string // text of the usage that must follow
	}{
		{"bad flag", []string{"volume", "create", "v", "--bogus"},
			"error: volume create: flag provided but not defined: -bogus\n", "Usage: csictl [global flags] volume create NAME [flags]"},
		{"missing arg", []string{"volume", "get"}, "error: volume get: missing ID\n", "volume get ID"},
		{"extra arg", []string{"volume", "get", "a", "b"}, "error: volume get: unexpected argument \"b\"\n", "volume get ID"},
		{"bad size", []string{"volume", "create", "v", "--size", "10X"},
			"error: volume create: invalid value \"10X\" for flag -size: size \"10X\": unknown unit \"X\" (accepted forms", "--size SIZE"},
		{"bad mode", []string{"volume", "create", "v", "--mode", "WRITE_MANY"},
			"error: volume create: unknown access mode \"WRITE_MANY\"; valid modes: SINGLE_NODE_WRITER, SINGLE_NODE_READER_ONLY, MULTI_NODE_READER_ONLY, MULTI_NODE_SINGLE_WRITER, MULTI_NODE_MULTI_WRITER, SINGLE_NODE_SINGLE_WRITER, SINGLE_NODE_MULTI_WRITER\n", "--mode MODE"},
		{"fs and block", []string{"node", "stage", "v", "--staging", "/s", "--fs", "ext4", "--block"},
			"error: node stage: --fs and --block are mutually exclusive\n", "node stage ID"},
		{"mount flag on block", []string{"controller", "publish", "v", "--node", "n", "--block", "--mount-flag", "ro"},
			"error: controller publish: --mount-flag needs mount access, not --block\n", "controller publish ID"},
		{"missing node", []string{"controller", "publish", "v"}, "error: controller publish: --node is required\n", "--node NODE"},
		{"missing staging", []string{"node", "unstage", "v"}, "error: node unstage: --staging is required\n", "--staging PATH"},
		{"missing target", []string{"node", "publish", "v"}, "error: node publish: --target is required\n", "--target PATH"},
		{"missing path", []string{"stats", "v"}, "error: stats: --path is required\n", "--path PATH"},
		{"limit below size", []string{"volume", "create", "v", "--size", "2GiB", "--limit", "1GiB"},
			"error: volume create: --limit 1GiB is below --size 2GiB\n", "volume create NAME"},
		{"bad param", []string{"capacity", "--param", "novalue"},
			"error: capacity: invalid value \"novalue\" for flag -param: want KEY=VALUE\n", "--param KEY=VALUE"},
		{"duplicate param", []string{"volume", "create", "v", "--param", "a=1", "--param", "a=2"},
			"error: volume create: invalid value \"a=2\" for flag -param: duplicate key \"a\"\n", "volume create"},
		{"negative max", []string{"volume", "list", "--max", "-1"}, "error: volume list: --max must be between 0 and 2147483647\n", "--max N"},
		{"global flag after command", []string{"volume", "list", "-o", "json"},
			"error: volume list: flag provided but not defined: -o (global flags go before the command)\n", "volume list"},
		{"unknown command", []string{"frobnicate"}, "error: unknown command \"frobnicate\"\n", "Commands:"},
		{"unknown subcommand", []string{"volume", "resize"}, "error: unknown command \"volume resize\"\n", "volume create NAME"},
		{"missing subcommand", []string{"node"}, "error: node: missing subcommand\n", "node stage ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := csictl(t, ep, tt.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if !strings.HasPrefix(errOut, tt.wantErr) {
				t.Errorf("stderr:\n%s\nwant prefix:\n%s", errOut, tt.wantErr)
			}
			if !strings.Contains(errOut, tt.usage) {
				t.Errorf("stderr lacks usage %q:\n%s", tt.usage, errOut)
			}
		})
	}
	// None of those reached the plugin.
	if len(f.last) != 0 {
		t.Errorf("usage errors made RPCs: %v", f.last)
	}
}

func TestGlobalFlagErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-o", "xml", "info"}, "error: -o must be table, json or yaml, not \"xml\"\n"},
		{[]string{"--timeout", "0s", "info"}, "error: --timeout must be positive\n"},
		{[]string{"--endpoint", "http://x:1", "info"}, "error: invalid --endpoint \"http://x:1\": unsupported scheme"},
		{[]string{"--endpoint", "unix://relative/sock", "probe"}, "error: invalid --endpoint \"unix://relative/sock\": unix socket path must be absolute"},
		{[]string{"--nope", "info"}, "error: flag provided but not defined: -nope\n"},
		{nil, "error: no command given\n"},
	}
	for _, tt := range tests {
		_, errOut, code := csictl(t, "", tt.args...)
		if code != 2 || !strings.HasPrefix(errOut, tt.wantErr) {
			t.Errorf("csictl %q: exit %d stderr %q, want 2 and prefix %q", tt.args, code, errOut, tt.wantErr)
		}
	}
}

// A secret given with a bad shape must not be quoted back, as the flag
// package would do for an ordinary value.
func TestBadSecretNotEchoed(t *testing.T) {
	_, errOut, code := csictl(t, "/nonexistent.sock", "volume", "delete", "v", "--secret", "hunter2-no-equals")
	if code != 2 || strings.Contains(errOut, "hunter2") {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
	wantContains(t, "bad secret", errOut, "invalid --secret: want KEY=VALUE (value not shown)")

	_, errOut, code = csictl(t, "/nonexistent.sock", "volume", "delete", "v", "--secret", "k=hunter2", "--secret", "k=hunter3")
	if code != 2 || strings.Contains(errOut, "hunter") {
		t.Errorf("duplicate secret: exit %d, stderr:\n%s", code, errOut)
	}
}

// A plugin that puts a secret in its error message gets it scrubbed.
func TestSecretRedactedFromRPCError(t *testing.T) {
	f := newFakePlugin()
	ep := startFake(t, f, true)
	out, errOut, code := csictl(t, ep, "volume", "delete", "id-x", "--secret", "token=wrong")
	if code != 1 || out != "" {
		t.Errorf("exit %d stdout %q", code, out)
	}
	if want := "error: DeleteVolume: PermissionDenied: token \"<redacted>\" rejected\n"; errOut != want {
		t.Errorf("stderr %q, want %q", errOut, want)
	}
	if dr := lastReq[*csi.DeleteVolumeRequest](t, f, "DeleteVolume"); dr.GetSecrets()["token"] != "wrong" {
		t.Errorf("secret not delivered: %v", dr.GetSecrets())
	}
}

func TestUnavailable(t *testing.T) {
	sock := t.TempDir() + "/absent.sock"
	out, errOut, code := csictl(t, "unix:"+sock, "probe")
	if code != 1 || out != "" {
		t.Errorf("exit %d stdout %q", code, out)
	}
	if !strings.HasPrefix(errOut, "error: Probe: Unavailable: ") || !strings.Contains(errOut, sock) {
		t.Errorf("stderr %q", errOut)
	}
}

func TestNegativeResults(t *testing.T) {
	f := newFakePlugin()
	ep := startFake(t, f, true)
	ok(t, ep, "volume", "create", "v1")

	// validate: confirmed exits 0, unconfirmed exits 1 after printing the response
	doc := okJSON(t, ep, "volume", "validate", "id-v1", "--fs", "ext4", "--param", "tier=gold", "--context", "name=v1")
	if get(t, doc, "confirmed", "volume_capabilities", 0, "mount", "fs_type") != "ext4" {
		t.Errorf("validate JSON: %v", doc)
	}
	vr := lastReq[*csi.ValidateVolumeCapabilitiesRequest](t, f, "ValidateVolumeCapabilities")
	if vr.GetParameters()["tier"] != "gold" || vr.GetVolumeContext()["name"] != "v1" {
		t.Errorf("ValidateVolumeCapabilities request: %v", vr)
	}
	out, errOut, code := csictl(t, ep, "volume", "validate", "id-v1", "--mode", "multi_node_multi_writer")
	if code != 1 || errOut != "error: ValidateVolumeCapabilities: not confirmed: multi-writer unsupported\n" {
		t.Errorf("unconfirmed: exit %d stderr %q", code, errOut)
	}
	wantContains(t, "unconfirmed table", out, "CONFIRMED", "false", "multi-writer unsupported")

	// probe
	out = ok(t, ep, "probe")
	wantContains(t, "probe", out, "READY", "true")
	f.mu.Lock()
	f.ready = false
	f.mu.Unlock()
	out, errOut, code = csictl(t, ep, "-o", "json", "probe")
	if code != 1 || errOut != "error: Probe: plugin is not ready\n" || !strings.Contains(out, `"ready": false`) {
		t.Errorf("not ready: exit %d stdout %q stderr %q", code, out, errOut)
	}
}
