package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// TestREADMEWalkthrough runs the README's "Trying it by hand" commands,
// as written, against the plugin started the way `make run` starts it: the
// README's promise that a volume can be created, staged, published,
// written, unpublished, unstaged and deleted by hand is kept by this test.
func TestREADMEWalkthrough(t *testing.T) {
	harness.RequireRoot(t)
	root := repoRoot()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	script := section(t, string(readme), "## Trying it by hand")
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	// The flags make run passes; the test uses the same ones.
	runFlags := "--endpoint unix://$(VAR)/csi.sock --pool $(VAR)/pool \\\n\t\t--node-id $$(hostname) --log-format console"
	if !strings.Contains(string(makefile), runFlags) {
		t.Fatalf("make run no longer starts the plugin with %q; update this test with it", runFlags)
	}

	dir := harness.TempDir(t)
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	if err := os.Symlink(binary, filepath.Join(bin, "csi-libstorage")); err != nil {
		t.Fatal(err)
	}
	// go test puts its own toolchain first on $PATH.
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "csictl"), "github.com/csi-libstorage/csi-libstorage/cmd/csictl")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build csictl: %v\n%s", err, out)
	}
	host, _ := os.Hostname()
	varDir := filepath.Join(dir, "var")
	os.MkdirAll(varDir, 0o755)
	plugin := exec.Command(filepath.Join(bin, "csi-libstorage"), "--endpoint", "unix://"+varDir+"/csi.sock", "--pool", varDir+"/pool", "--node-id", host, "--log-format", "console")
	var logs bytes.Buffer
	plugin.Stdout, plugin.Stderr = &logs, &logs
	if err := plugin.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		plugin.Process.Signal(os.Interrupt)
		plugin.Wait()
	}()
	// The plugin is ready when it answers: a Probe that waits for the
	// channel to be ready, bounded by a deadline.
	conn, err := grpc.NewClient("unix://"+varDir+"/csi.sock", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ready, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := csi.NewIdentityClient(conn).Probe(ready, &csi.ProbeRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("make run's plugin did not serve (%v):\n%s", err, logs.String())
	}

	// The README's paths under /tmp/csi are moved into the test's directory
	// so that runs cannot collide; nothing else is changed.
	script = strings.ReplaceAll(script, "/tmp/csi/", dir+"/csi/")
	sh := exec.Command("bash", "-e", "-o", "pipefail", "-c", script)
	sh.Dir = dir
	out, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("README walkthrough failed: %v\n%s\nplugin log:\n%s", err, out, logs.String())
	}
	for _, want := range []string{"csi.libstorage.io", "hello", "deleted volume local/"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("walkthrough output lacks %q:\n%s", want, out)
		}
	}
	harness.AssertNoLeaks(t, harness.LeakCheck{Dir: dir})
}

// section returns the first sh code block after the heading.
func section(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, heading)
	if i < 0 {
		t.Fatalf("README has no %q", heading)
	}
	rest := doc[i:]
	start := strings.Index(rest, "```sh\n")
	if start < 0 {
		t.Fatalf("no sh block under %q", heading)
	}
	rest = rest[start+len("```sh\n"):]
	end := strings.Index(rest, "```")
	if end < 0 {
		t.Fatalf("unterminated sh block under %q", heading)
	}
	return rest[:end]
}
