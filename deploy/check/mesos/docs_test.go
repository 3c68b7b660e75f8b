package mesos

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

var deployPathRE = regexp.MustCompile("deploy/mesos/[A-Za-z0-9_./-]*[A-Za-z0-9_/]")

// TestDocPathsExist: every deploy/mesos/ path in docs/mesos.md exists, and
// every shipped file is named in the guide.
func TestDocPathsExist(t *testing.T) {
	root := harness.RepoRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "mesos.md"))
	if err != nil {
		t.Fatal(err)
	}
	mentioned := map[string]bool{}
	for _, p := range deployPathRE.FindAllString(string(doc), -1) {
		mentioned[strings.TrimSuffix(p, "/")] = true
		if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(p))); err != nil {
			t.Errorf("docs/mesos.md names %s, which does not exist", p)
		}
	}
	if len(mentioned) < 10 {
		t.Errorf("docs/mesos.md names only %d deploy/mesos paths", len(mentioned))
	}
	err = filepath.WalkDir(filepath.Join(root, "deploy", "mesos"), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if !mentioned[filepath.ToSlash(rel)] {
			t.Errorf("%s is shipped but docs/mesos.md does not mention it", filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDocFacts pins statements the guide must get right.
func TestDocFacts(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "docs", "mesos.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	for _, want := range []string{
		PluginType, "--isolation=filesystem/linux", "volume/csi", "--csi_plugin_config_dir",
		"--resource_provider_config_dir", "RESOURCE_PROVIDER", "--disk_profile_adaptor=" + UriDiskProfileAdaptor,
		"--modules", "csi-libstorage force-detach", "--yes-the-node-is-dead", "60 s", "ABORTED", "1.11", "Fence",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("docs/mesos.md does not mention %q", want)
		}
	}
	// The reference's example uses --nodeid, which csi-libstorage does not have.
	if strings.Contains(s, "--nodeid") {
		t.Error("docs/mesos.md uses --nodeid; the flag is --node-id")
	}
}
