package check

import (
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
