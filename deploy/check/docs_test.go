package check

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	storagev1 "k8s.io/api/storage/v1"

	"github.com/csi-libstorage/csi-libstorage/backends/ebs"
	"github.com/csi-libstorage/csi-libstorage/backends/file"
	"github.com/csi-libstorage/csi-libstorage/deploy/check/mesos"
	"github.com/csi-libstorage/csi-libstorage/internal/params"
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

// TestDocsFlagsExist: every flag a guide passes to csi-libstorage, or to
// csi-libstorage force-detach, is one the binary defines; and the README
// names every flag the binary has.
func TestDocsFlagsExist(t *testing.T) {
	plugin := mesos.PluginFlags()
	detach := forceDetachFlagNames(t)
	if len(detach) == 0 {
		t.Fatal("found no flags of csi-libstorage force-detach in cmd/csi-libstorage")
	}
	seen := 0
	for _, doc := range []string{"../README.md", "mesos.md", "kubernetes.md", "nomad.md", "backends/ebs.md", "install.md", "operations.md", "troubleshooting.md"} {
		for _, inv := range invocations(readDoc(t, doc)) {
			known, what := plugin, "csi-libstorage"
			if inv.Sub == "force-detach" {
				known, what = detach, "csi-libstorage force-detach"
			}
			for _, f := range inv.Flags {
				seen++
				if !slices.Contains(known, f) {
					t.Errorf("docs/%s runs %s --%s, which does not exist (it has --%s)", doc, what, f, strings.Join(known, ", --"))
				}
			}
		}
	}
	if seen < 10 {
		t.Errorf("found only %d flags in csi-libstorage command lines across the guides; the parser lost them", seen)
	}
	readme := readDoc(t, "../README.md")
	for _, f := range append(plugin, detach...) {
		if !strings.Contains(readme, "--"+f) {
			t.Errorf("README.md never names --%s", f)
		}
	}
}

// TestInvocations pins the command-line reader the flag check relies on.
func TestInvocations(t *testing.T) {
	doc := "Run `csi-libstorage [--endpoint E] [--mode all|node]` or\n" +
		"```sh\nexec /usr/local/bin/csi-libstorage --config=/c \\\n  --log-level debug # comment --not-a-flag\n" +
		"kubectl -n csi-libstorage exec x -c csi-libstorage -- \\\n  csi-libstorage force-detach --volume v --yes-the-node-is-dead\n" +
		"kubectl -n csi-libstorage get pods --watch\nCOPY --from=build /csi-libstorage /usr/local/bin/csi-libstorage\n```\n"
	got := invocations(doc)
	want := []invocation{
		{Flags: []string{"config", "log-level"}},
		{Sub: "force-detach", Flags: []string{"volume", "yes-the-node-is-dead"}},
		{Flags: []string{"endpoint", "mode"}}, // inline spans come after the blocks
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// TestDocsParameterTables: the parameter tables list exactly the keys the
// parser accepts: the README's the common keys and the file backend's, the
// EBS guide's the EBS backend's.
func TestDocsParameterTables(t *testing.T) {
	for _, c := range []struct {
		doc, heading string
		want         []string
	}{
		{"../README.md", "| Key | Values | Meaning |", append(slices.Clone(params.Common), file.ParamPreallocate)},
		{"backends/ebs.md", "| Key | Meaning |", ebs.ParameterKeys},
	} {
		got := tableKeys(t, readDoc(t, c.doc), c.heading)
		want := slices.Clone(c.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("docs/%s parameter table lists %v; the plugin accepts %v", c.doc, got, want)
		}
	}
	// The EBS guide names the common keys in prose.
	ebsDoc := readDoc(t, "backends/ebs.md")
	_, rest, ok := strings.Cut(ebsDoc, "Besides the common keys (")
	common, _, _ := strings.Cut(rest, ")")
	if got := codeSpans(common); !ok || !slices.Equal(sorted(got), sorted(params.Common)) {
		t.Errorf("docs/backends/ebs.md names the common keys %v; they are %v", got, params.Common)
	}
}

// TestDocsValuesMatchDeploy: what the guides state about the shipped
// manifests and jobs is what those files hold.
func TestDocsValuesMatchDeploy(t *testing.T) {
	objs := parseK8s(t, readDir(t, k8sDir(t), ".yaml"))
	k8s := readDoc(t, "kubernetes.md")
	drivers := ofKind[*storagev1.CSIDriver](objs)
	for _, d := range drivers {
		for key, v := range map[string]string{
			"attachRequired": show(d.Spec.AttachRequired),
			"podInfoOnMount": show(d.Spec.PodInfoOnMount),
			"fsGroupPolicy":  show(d.Spec.FSGroupPolicy),
		} {
			if !strings.Contains(k8s, "`"+key+": "+v+"`") {
				t.Errorf("docs/kubernetes.md does not state the CSIDriver's %s: %s", key, v)
			}
		}
	}
	if len(drivers) != 1 {
		t.Errorf("%d CSIDriver objects, want 1", len(drivers))
	}
	cfg, err := PluginConfig(objs)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range PoolDirs(cfg) {
		if !strings.Contains(k8s, "`"+dir+"`") {
			t.Errorf("docs/kubernetes.md does not name the pool directory %s of the shipped config", dir)
		}
	}

	nomad := readDoc(t, "nomad.md")
	parsed, err := parseNomad(t, readDir(t, nomadDir(t), ".hcl"))
	if err != nil {
		t.Fatal(err)
	}
	tasks := PluginTasks(parsed)
	if len(tasks) == 0 {
		t.Fatal("no plugin tasks in deploy/nomad")
	}
	for _, pt := range tasks {
		if v, ok := taskConfig(pt.Task).Bool("privileged"); ok && !strings.Contains(nomad, fmt.Sprintf("privileged = %t", v)) {
			t.Errorf("docs/nomad.md does not say privileged = %t, which the plugin task sets", v)
		}
		if id, ok := Flag(taskArgs(pt.Task), "node-id"); ok && !strings.Contains(nomad, "`"+id+"`") && !strings.Contains(nomad, "--node-id="+id) {
			t.Errorf("docs/nomad.md does not name the node id %s the plugin task uses", id)
		}
		_, pcfg, err := NomadPluginConfig(pt)
		if err != nil {
			t.Fatal(err)
		}
		for _, dir := range PoolDirs(pcfg) {
			if !strings.Contains(nomad, "`"+dir+"`") {
				t.Errorf("docs/nomad.md does not name the pool directory %s of the shipped job", dir)
			}
		}
	}
}

// TestDocsGoTestPathsExist: every `go test ./X` a guide tells the operator
// to run names a directory of this repository.
func TestDocsGoTestPathsExist(t *testing.T) {
	re := regexp.MustCompile(`go test (?:-[a-z]+ )*\./([A-Za-z0-9_/.-]*)`)
	n := 0
	for _, doc := range []string{"../README.md", "mesos.md", "kubernetes.md", "nomad.md", "RELIABILITY.md", "CONTRIBUTING.md", "troubleshooting.md"} {
		for _, m := range re.FindAllStringSubmatch(readDoc(t, doc), -1) {
			n++
			p := strings.TrimSuffix(strings.TrimSuffix(m[1], "..."), "/")
			if st, err := os.Stat(filepath.Join(harness.RepoRoot(t), p)); err != nil || !st.IsDir() {
				t.Errorf("docs/%s runs go test ./%s, which is not a package directory", doc, m[1])
			}
		}
	}
	if n < 5 {
		t.Errorf("found only %d go test commands in the guides", n)
	}
}
