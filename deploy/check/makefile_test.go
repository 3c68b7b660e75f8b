package check_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// TestDocumentedMakeTargetsExist fails when a document tells the reader to
// run `make X` and the Makefile has no target X. The bench targets were
// once dropped from the Makefile while README and BENCHMARKS.md still
// named them; nothing noticed.
func TestDocumentedMakeTargetsExist(t *testing.T) {
	root := harness.RepoRoot(t)
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*)\s*:([^=]|$)`).FindAllStringSubmatch(string(mk), -1) {
		targets[m[1]] = true
	}
	if !targets["test"] || !targets["run"] {
		t.Fatalf("parsed targets %v: the Makefile parser is broken", targets)
	}
	docs := []string{"README.md", "BENCHMARKS.md"}
	more, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	backends, err := filepath.Glob(filepath.Join(root, "docs", "backends", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append(more, backends...) {
		rel, _ := filepath.Rel(root, p)
		docs = append(docs, rel)
	}
	// A command in a code span (`make bench`) or on a line of a fenced
	// block; wrapped prose that happens to start a line with "make" is
	// neither.
	span := regexp.MustCompile("`make ((?:[a-z][a-z0-9-]*\\s*)+)")
	line := regexp.MustCompile(`^\s*(?:\$ |sudo )?make ((?:[a-z][a-z0-9-]*\s*)+)`)
	found := 0
	for _, d := range docs {
		raw, err := os.ReadFile(filepath.Join(root, d))
		if err != nil {
			t.Fatal(err)
		}
		var cmds [][]string
		fenced := false
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "```") {
				fenced = !fenced
				continue
			}
			if fenced {
				if m := line.FindStringSubmatch(l); m != nil {
					cmds = append(cmds, m)
				}
				continue
			}
			cmds = append(cmds, span.FindAllStringSubmatch(l, -1)...)
		}
		for _, m := range cmds {
			for _, target := range strings.Fields(m[1]) {
				found++
				if !targets[target] {
					t.Errorf("%s says `make %s`, but the Makefile has no target %q", d, target, target)
				}
			}
		}
	}
	if found < 5 {
		t.Fatalf("found only %d make commands in the docs: the pattern is broken", found)
	}
}
