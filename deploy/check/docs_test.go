package check

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

func readDoc(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "docs", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// TestDocsNameShippedFiles: every deploy/<dir>/ path the guide names
// exists, and every shipped file is named.
func TestDocsNameShippedFiles(t *testing.T) {
	for doc, dir := range map[string]string{"kubernetes.md": "kubernetes", "nomad.md": "nomad"} {
		text := readDoc(t, doc)
		// Paths of other repositories are written ./deploy/...; skip them.
		re := regexp.MustCompile("(?:^|[^./A-Za-z0-9_-])(deploy/" + dir + "/[A-Za-z0-9_.-]+)")
		mentioned := map[string]bool{}
		for _, m := range re.FindAllStringSubmatch(text, -1) {
			p := strings.TrimRight(m[1], ".")
			mentioned[p] = true
			if _, err := os.Stat(filepath.Join(harness.RepoRoot(t), p)); err != nil {
				t.Errorf("docs/%s names %s, which does not exist", doc, p)
			}
		}
		files, _ := filepath.Glob(filepath.Join(harness.RepoRoot(t), "deploy", dir, "*"))
		if len(files) == 0 {
			t.Errorf("deploy/%s is empty", dir)
		}
		for _, f := range files {
			rel := "deploy/" + dir + "/" + filepath.Base(f)
			if !mentioned[rel] {
				t.Errorf("%s is shipped but docs/%s does not name it", rel, doc)
			}
		}
	}
}

// TestDocsListImages: the guide states every image the manifests use, so
// the pinned versions and the text cannot drift apart.
func TestDocsListImages(t *testing.T) {
	objs := parseK8s(t, readDir(t, k8sDir(t), ".yaml"))
	k8s := readDoc(t, "kubernetes.md")
	for _, img := range Images(objs) {
		if strings.HasPrefix(img, "docker.io/library/") {
			continue // the example's application image
		}
		if !strings.Contains(k8s, img) {
			t.Errorf("docs/kubernetes.md does not mention %s", img)
		}
	}
	nomad := readDoc(t, "nomad.md")
	parsed, err := parseNomad(t, readDir(t, nomadDir(t), ".hcl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range PluginTasks(parsed) {
		if img := taskConfig(pt.Task).String("image"); !strings.Contains(nomad, img) {
			t.Errorf("docs/nomad.md does not mention %s", img)
		}
	}
}

// TestDocsFacts pins what the guides must tell an operator.
func TestDocsFacts(t *testing.T) {
	common := []string{
		"csi-libstorage force-detach", "--yes-the-node-is-dead", "FAILED_PRECONDITION", "Fence",
		"/var/lib/csi-libstorage/pool", "shared", "same path", "go test ./deploy/check/", "not pulled",
		"no container runtime", "loads no",
	}
	for doc, extra := range map[string][]string{
		"kubernetes.md": {"6 minutes", "out-of-service", "attachRequired: true", "kubectl apply -k deploy/kubernetes/", "Bidirectional", "--feature-gates=Topology=true", "external-snapshotter"},
		"nomad.md":      {"privileged = true", "raw_exec", "allow_privileged", "nomad volume create", "nomad alloc exec", "${node.unique.name}"},
	} {
		text := readDoc(t, doc)
		for _, want := range append(common, extra...) {
			if !strings.Contains(text, want) {
				t.Errorf("docs/%s does not mention %q", doc, want)
			}
		}
	}
}
