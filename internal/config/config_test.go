package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type fileCfg struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	Dir  string `yaml:"dir"`
}

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadYAMLAndJSON(t *testing.T) {
	for _, body := range []string{
		"backends:\n  - name: local\n    type: file\n    dir: /var/lib/pool\nallowOverwrite: true\n",
		`{"backends":[{"name":"local","type":"file","dir":"/var/lib/pool"}],"allowOverwrite":true}`,
	} {
		c, err := Load(write(t, body))
		if err != nil {
			t.Fatalf("Load(%q): %v", body, err)
		}
		if len(c.Backends) != 1 || c.Backends[0].Name != "local" || c.Backends[0].Type != "file" || !c.AllowOverwrite {
			t.Fatalf("Load(%q) = %+v", body, c)
		}
		var fc fileCfg
		if err := c.Backends[0].Decode(&fc); err != nil || fc.Dir != "/var/lib/pool" {
			t.Fatalf("Decode = %+v, %v", fc, err)
		}
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []struct{ body, want string }{
		{"backends: []\n", "no backends"},
		{"backendz: []\n", "backendz"},
		{"backends:\n  - type: file\n", "name and a type"},
		{"backends:\n  - {name: a, type: file}\n  - {name: a, type: file}\n", "used twice"},
		{"backends:\n  - {name: a, type: file}\nmaxVolumesPerNode: -1\n", "negative"},
		{"backends:\n  - {name: a, type: file}\nfilesystems: [ext4, \"x/y\"]\n", "not a filesystem type"},
	}
	for _, tt := range tests {
		_, err := Load(write(t, tt.body))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%q) err = %v, want it to mention %q", tt.body, err, tt.want)
		}
	}
}

func TestBackendUnknownKey(t *testing.T) {
	c, err := Load(write(t, "backends:\n  - {name: a, type: file, dri: /x}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var fc fileCfg
	if err := c.Backends[0].Decode(&fc); err == nil || !strings.Contains(err.Error(), "dri") {
		t.Fatalf("Decode with a misspelt key: %v", err)
	}
}

func TestDefault(t *testing.T) {
	c := Default("/tmp/pool")
	var fc fileCfg
	if err := c.Backends[0].Decode(&fc); err != nil || fc.Dir != "/tmp/pool" || fc.Type != "file" {
		t.Fatalf("Default decodes to %+v, %v", fc, err)
	}
}
