package check

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

func k8sDir(t *testing.T) string   { return filepath.Join(harness.RepoRoot(t), "deploy", "kubernetes") }
func nomadDir(t *testing.T) string { return filepath.Join(harness.RepoRoot(t), "deploy", "nomad") }

// readDir returns the files of dir whose names end in ext, by base name.
func readDir(t *testing.T, dir, ext string) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = string(raw)
	}
	if len(out) == 0 {
		t.Fatalf("no *%s files in %s", ext, dir)
	}
	return out
}

// parseK8s parses the given file contents (name -> text) in name order.
func parseK8s(t *testing.T, files map[string]string) []Object {
	t.Helper()
	objs, err := parseAll(files)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func parseAll(files map[string]string) ([]Object, error) {
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []Object
	for _, n := range names {
		objs, err := ParseYAML(n, []byte(files[n]))
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	ApplyImages(out)
	return out, nil
}

// mutate returns a copy of files with the first occurrence of old in file
// replaced by new; it fails the test if old is not there, so a mutation
// never passes by changing nothing.
func mutate(t *testing.T, files map[string]string, file, old, new string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range files {
		out[k] = v
	}
	if !strings.Contains(out[file], old) {
		t.Fatalf("%s does not contain %q; the mutation is stale", file, old)
	}
	out[file] = strings.Replace(out[file], old, new, 1)
	return out
}

func report(t *testing.T, errs []error) {
	t.Helper()
	for _, err := range errs {
		t.Error(err)
	}
}

func joinErrs(errs []error) string {
	var sb strings.Builder
	for _, e := range errs {
		sb.WriteString(e.Error())
		sb.WriteByte('\n')
	}
	return sb.String()
}

// TestKustomizationSetsPluginImage: the plugin containers name one image
// placeholder, kustomization.yaml's images: entry sets it, and what it sets
// passes CheckImage; so an operator changes the image in one place.
func TestKustomizationSetsPluginImage(t *testing.T) {
	files := readDir(t, k8sDir(t), ".yaml")
	check := func(files map[string]string) []string {
		var raw []Object
		for _, n := range []string{"controller.yaml", "node.yaml", "kustomization.yaml"} {
			objs, err := ParseYAML(n, []byte(files[n]))
			if err != nil {
				t.Fatal(err)
			}
			raw = append(raw, objs...)
		}
		var placeholders []string
		for _, w := range Workloads(raw) {
			if c := Container(w.Spec, PluginContainer); c != nil {
				placeholders = append(placeholders, c.Image)
			}
		}
		ApplyImages(raw)
		var problems []string
		for i, w := range Workloads(raw) {
			c := Container(w.Spec, PluginContainer)
			if c == nil {
				continue
			}
			if c.Image == placeholders[i] {
				problems = append(problems, fmt.Sprintf("%s: image %s is not set by kustomization.yaml", w, placeholders[i]))
			} else if err := CheckImage(c.Image); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", w, err))
			}
		}
		if len(placeholders) != 2 || placeholders[0] != placeholders[1] {
			problems = append(problems, fmt.Sprintf("plugin images %v: want one placeholder in both workloads", placeholders))
		}
		return problems
	}
	if p := check(files); len(p) > 0 {
		t.Errorf("shipped manifests: %v", p)
	}
	for _, m := range []struct{ file, old, new string }{
		{"kustomization.yaml", "newTag: v0.1.0", "newTag: latest"},
		{"node.yaml", "image: csi-libstorage ", "image: csi-libstorag "},
		{"kustomization.yaml", "  - name: csi-libstorage\n", "  - name: other\n"},
	} {
		if p := check(mutate(t, files, m.file, m.old, m.new)); len(p) == 0 {
			t.Errorf("%s with %q: no problem found", m.file, m.new)
		}
	}
}
