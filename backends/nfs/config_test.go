package nfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/internal/config"
)

// decode reads one backend entry the way the plugin does: from a file,
// strictly.
func decode(t *testing.T, body string) (Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("backends:\n  - name: shared\n    type: nfs\n"+body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		return Config{}, err
	}
	var c Config
	err = cfg.Backends[0].Decode(&c)
	c.Name = "shared"
	return c, err
}

func TestConfig(t *testing.T) {
	cases := []struct {
		name, yaml, err string
		mode            uint32
		check           func(t *testing.T, c Config)
	}{
		{name: "the issue's example", yaml: `    server: 10.0.0.9
    export: /srv/nfs/volumes
    subDir: csi
    port: 0
    mountPort: 0
    mountOptions: [nfsvers=4.1, hard]
    onDelete: delete
    uid: 0
    gid: 0
    mode: "0770"
`, mode: 0o770},
		{name: "defaults", yaml: "    server: nfs.example\n    export: /x\n", mode: DefaultMode, check: func(t *testing.T, c Config) {
			if c.OnDelete != OnDeleteDelete {
				t.Errorf("onDelete defaults to %q", c.OnDelete)
			}
		}},
		{name: "unknown key", yaml: "    server: a\n    export: /x\n    onDelet: archive\n", err: "field onDelet not found"},
		{name: "no server", yaml: "    export: /x\n", err: "server is required"},
		{name: "server with path", yaml: "    server: a:/x\n    export: /x\n", err: "bare host name"},
		{name: "relative export", yaml: "    server: a\n    export: x\n", err: "absolute, clean"},
		{name: "unclean export", yaml: "    server: a\n    export: /x/../y\n", err: "absolute, clean"},
		{name: "subDir climbs", yaml: "    server: a\n    export: /x\n    subDir: ../y\n", err: "clean relative path"},
		{name: "absolute subDir", yaml: "    server: a\n    export: /x\n    subDir: /y\n", err: "clean relative path"},
		{name: "bad port", yaml: "    server: a\n    export: /x\n    port: 70000\n", err: "not a TCP port"},
		{name: "bad onDelete", yaml: "    server: a\n    export: /x\n    onDelete: shred\n", err: "use delete, archive or retain"},
		{name: "bad mode", yaml: "    server: a\n    export: /x\n    mode: \"rwx\"\n", err: "octal mode"},
		{name: "two options in one", yaml: "    server: a\n    export: /x\n    mountOptions: [\"hard,intr\"]\n", err: "one option"},
		{name: "addr is the plugin's", yaml: "    server: a\n    export: /x\n    mountOptions: [addr=1.2.3.4]\n", err: "set by the plugin"},
		{name: "negative uid", yaml: "    server: a\n    export: /x\n    uid: -1\n", err: "cannot unmarshal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := decode(t, c.yaml)
			var mode uint32
			if err == nil {
				mode, err = cfg.check()
			}
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if mode != c.mode {
				t.Errorf("mode %o, want %o", mode, c.mode)
			}
			if c.check != nil {
				c.check(t, cfg)
			}
		})
	}
}
