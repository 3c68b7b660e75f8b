package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	"github.com/csi-libstorage/csi-libstorage/test/harness/inproc"
)

// doctorSetup is a node as doctor finds it: a configuration file, a PATH
// and a socket.
type doctorSetup struct {
	name        string
	filesystems []string
	missingTool string // left off PATH
	deadSocket  bool   // a socket file nobody listens on, in place of the plugin
	wantFailed  []string
}

// startPluginWith serves the real plugin (controller mode: no root needed
// for the plugin itself) with the configuration file cfg.
func startPluginWith(t *testing.T, cfgPath, sock string) {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	inproc.Start(t, wiring.Options{Endpoint: "unix://" + sock, Mode: wiring.ModeController, Config: cfg, Logger: zap.NewNop()})
}

// pathWithout returns a directory holding links to every tool doctor may
// look for except missing, to use as PATH.
func pathWithout(t *testing.T, missing string) string {
	dir := t.TempDir()
	for tool := range toolPackages {
		if tool == missing {
			continue
		}
		if p, err := exec.LookPath(tool); err == nil {
			if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// TestDoctor runs doctor against the real plugin on a healthy node and on
// a broken one (a filesystem the kernel lacks, a tool missing from PATH,
// a socket whose plugin died), and checks it names exactly the failures,
// each with a fix, in the table and as data.
func TestDoctor(t *testing.T) {
	harness.RequireRoot(t) // doctor's loop device check opens /dev/loop-control
	for _, tt := range []doctorSetup{
		{name: "healthy", filesystems: []string{"ext4"}},
		{name: "broken", filesystems: []string{"ext4", "nosuchfs"}, missingTool: "blkid", deadSocket: true,
			wantFailed: []string{"backend: local", "kernel: filesystem nosuchfs", "plugin: Probe", "plugin: socket", "tool: blkid", "tool: mkfs.nosuchfs"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			pool := filepath.Join(dir, "pool")
			cfgPath := filepath.Join(dir, "config.yaml")
			cfg := fmt.Sprintf("backends:\n- name: local\n  type: file\n  dir: %s\nfilesystems: [%s]\n", pool, strings.Join(tt.filesystems, ", "))
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(dir, "csi.sock")
			startPluginWith(t, cfgPath, sock) // makes the pool, even when its socket is then replaced
			if tt.deadSocket {
				dead := filepath.Join(dir, "dead.sock")
				l, err := net.Listen("unix", dead)
				if err != nil {
					t.Fatal(err)
				}
				l.(*net.UnixListener).SetUnlinkOnClose(false)
				l.Close()
				sock = dead
			}
			t.Setenv("PATH", pathWithout(t, tt.missingTool))

			out, errOut, code := csictl(t, "unix://"+sock, "-o", "json", "doctor", "--config", cfgPath)
			var rep doctorReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("doctor -o json: %v\n%s\n%s", err, out, errOut)
			}
			var failed, names []string
			for _, c := range rep.Checks {
				names = append(names, c.Name)
				if !c.OK {
					failed = append(failed, c.Name)
					if c.Fix == "" || c.Detail == "" {
						t.Errorf("failed check %q has no detail or no fix: %+v", c.Name, c)
					}
				}
			}
			sort.Strings(failed)
			if strings.Join(failed, "; ") != strings.Join(tt.wantFailed, "; ") {
				t.Errorf("failed checks %q, want %q\n%s", failed, tt.wantFailed, out)
			}
			for _, want := range []string{"kernel: loop devices", "kernel: mount namespaces", "tool: mkfs.ext4", "tool: resize2fs", "pool local: locks"} {
				if !strings.Contains(strings.Join(names, "\n")+"\n", want+"\n") {
					t.Errorf("no %q check in %q", want, names)
				}
			}
			wantCode := 0
			if len(tt.wantFailed) > 0 {
				wantCode = 1
			}
			if code != wantCode || rep.OK != (wantCode == 0) {
				t.Errorf("exit %d, ok %v; want exit %d\n%s", code, rep.OK, wantCode, errOut)
			}

			table, _, tcode := csictl(t, "unix://"+sock, "doctor", "--config", cfgPath)
			if tcode != code {
				t.Errorf("table exit %d, json exit %d", tcode, code)
			}
			for _, c := range rep.Checks {
				if !strings.Contains(table, c.Name) {
					t.Errorf("table lacks check %q:\n%s", c.Name, table)
				}
				if !c.OK && !strings.Contains(table, "fix: "+c.Fix) {
					t.Errorf("table lacks the fix for %q:\n%s", c.Name, table)
				}
			}
			if got := strings.Count(table, "FAIL"); got != len(tt.wantFailed) {
				t.Errorf("table shows %d FAIL, want %d:\n%s", got, len(tt.wantFailed), table)
			}
		})
	}
}

func TestOFDLockCheck(t *testing.T) {
	dir := t.TempDir()
	detail, err := checkOFDLocks(dir)
	if err != nil || !strings.Contains(detail, "enforced") {
		t.Fatalf("checkOFDLocks(%s) = %q, %v", dir, detail, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	left2, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left)+len(left2) != 0 {
		t.Fatalf("scratch files left: %v %v", left, left2)
	}
	if _, err := checkOFDLocks(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing directory passed")
	}
}
