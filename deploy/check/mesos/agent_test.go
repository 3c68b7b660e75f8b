package mesos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckPluginConfigDir: what the agent would choke on in
// --csi_plugin_config_dir is reported, what it skips is not.
func TestCheckPluginConfigDir(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string // name -> content; "" content with a "/" suffix makes a directory
		want  string            // "" = accepted
	}{
		{"one plugin", map[string]string{"csi.json": baseManaged}, ""},
		{"subdirectory skipped", map[string]string{"csi.json": baseManaged, "old/": ""}, ""},
		{"README", map[string]string{"csi.json": baseManaged, "README": "Put plugin files here.\n"}, "README: not a JSON CSIPluginInfo"},
		{"editor backup", map[string]string{"csi.json": baseManaged, "csi.json~": baseManaged[:40]}, "csi.json~: not a JSON CSIPluginInfo"},
		{"hidden swap file", map[string]string{"csi.json": baseManaged, ".csi.json.swp": "\x00\x01b0VIM"}, ".csi.json.swp: not a JSON CSIPluginInfo"},
		{"other JSON", map[string]string{"csi.json": baseManaged, "profiles.json": baseProfiles}, "profiles.json: not a JSON CSIPluginInfo"},
		{"empty directory", map[string]string{}, "No valid CSI plugin configurations found"},
		{"only directories", map[string]string{"old/": ""}, "No valid CSI plugin configurations found"},
		{"two files of one type", map[string]string{"a.json": baseManaged, "b.json": baseUnmanaged}, "both have type"},
		{"invalid plugin", map[string]string{"csi.json": mut(t, baseManaged, `"shell": true`, `"shell": false`)}, "shell must be true"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range c.files {
				if d, ok := strings.CutSuffix(name, "/"); ok {
					if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := CheckPluginConfigDir(dir)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case c.want != "" && err == nil:
				t.Fatalf("accepted; want an error containing %q", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
	if err := CheckPluginConfigDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing directory was accepted")
	}
}

func TestParseEnvFile(t *testing.T) {
	env, err := ParseEnvFile([]byte("# comment\n; comment\n\nMESOS_A=1\nMESOS_B=\"two words\"\n  MESOS_C = x \n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(env) != 3 || env["MESOS_A"] != "1" || env["MESOS_B"] != "two words" || env["MESOS_C"] != "x" {
		t.Fatalf("got %q", env)
	}
	for _, bad := range []string{"MESOS_A\n", "MESOS_A=1\nMESOS_A=2\n", "=x\n", "MESOS A=1\n"} {
		if _, err := ParseEnvFile([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCheckAgentEnv(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"exact", map[string]string{"MESOS_CSI_PLUGIN_CONFIG_DIR": "/etc/mesos/csi-plugins"}, ""},
		{"replaces work_dir", map[string]string{"MESOS_CSI_PLUGIN_CONFIG_DIR": "/d", "MESOS_WORK_DIR": "/var/lib/mesos"}, "replaces the agent's own --work_dir"},
		{"replaces isolation", map[string]string{"MESOS_CSI_PLUGIN_CONFIG_DIR": "/d", "MESOS_ISOLATION": "filesystem/linux,volume/csi"}, "--isolation"},
		{"replaces containerizers", map[string]string{"MESOS_CSI_PLUGIN_CONFIG_DIR": "/d", "MESOS_CONTAINERIZERS": "mesos"}, "--containerizers"},
		{"sets agent features", map[string]string{"MESOS_CSI_PLUGIN_CONFIG_DIR": "/d", "MESOS_AGENT_FEATURES": "file:///f"}, "--agent_features"},
		{"SLRP flag in the isolator file", map[string]string{"MESOS_CSI_PLUGIN_CONFIG_DIR": "/d", "MESOS_RESOURCE_PROVIDER_CONFIG_DIR": "/r"}, "does not belong"},
		{"missing", map[string]string{}, "MESOS_CSI_PLUGIN_CONFIG_DIR is not set"},
		{"empty", map[string]string{"MESOS_CSI_PLUGIN_CONFIG_DIR": ""}, "is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckAgentEnv(c.env, IsolatorEnv)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}
