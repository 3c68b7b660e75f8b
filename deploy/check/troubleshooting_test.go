package check

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// verbRE matches the fmt verbs of a format string; the troubleshooting page
// writes each as "…".
var verbRE = regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z]`)

// sourceStrings returns every string constant (literals, and literals
// joined with +) of the non-test Go files under the repository, with fmt
// verbs written as "…". test/ holds rigs and simulators, whose messages
// an operator never sees.
func sourceStrings(t *testing.T) []string {
	t.Helper()
	root := harness.RepoRoot(t)
	var out []string
	fset := gotoken.NewFileSet()
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if e.IsDir() {
			if rel == "test" || rel == "bin" || rel == "var" || strings.HasPrefix(e.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if s, ok := constString(n); ok {
				out = append(out, verbRE.ReplaceAllString(strings.ReplaceAll(s, "%%", "%"), "…"))
				return false
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// constString folds a string literal or a sum of them.
func constString(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.BasicLit:
		if x.Kind != gotoken.STRING {
			return "", false
		}
		s, err := strconv.Unquote(x.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		if x.Op != gotoken.ADD {
			return "", false
		}
		a, ok1 := constString(x.X)
		b, ok2 := constString(x.Y)
		return a + b, ok1 && ok2
	case *ast.ParenExpr:
		return constString(x.X)
	}
	return "", false
}

// TestTroubleshootingMessagesExist: every message docs/troubleshooting.md
// quotes is still a string (a format string, its verbs as "…") in the
// plugin's source, so a reworded error fails here until the page follows.
func TestTroubleshootingMessagesExist(t *testing.T) {
	doc := readDoc(t, "troubleshooting.md")
	msgRE := regexp.MustCompile("(?m)^\\s*- \\*\\*Message:\\*\\* `([^`]+)`\\s*$")
	found := msgRE.FindAllStringSubmatch(doc, -1)
	if want := strings.Count(doc, "**Message:**"); len(found) != want {
		t.Fatalf("docs/troubleshooting.md has %d **Message:** entries but %d are one code span on one line", want, len(found))
	}
	if len(found) < 15 {
		t.Fatalf("docs/troubleshooting.md quotes only %d messages", len(found))
	}
	strs := sourceStrings(t)
	for _, m := range found {
		msg := m[1]
		if len(strings.ReplaceAll(msg, "…", "")) < 12 {
			t.Errorf("docs/troubleshooting.md quotes %q: too short to identify a message", msg)
			continue
		}
		ok := false
		for _, s := range strs {
			if strings.Contains(s, msg) {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("docs/troubleshooting.md quotes %q, which no string in the source contains (fmt verbs read as …)", msg)
		}
	}
}
