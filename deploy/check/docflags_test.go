package check

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// invocation is one csi-libstorage command line found in a guide.
type invocation struct {
	Sub   string   // "force-detach" or ""
	Flags []string // flag names, without dashes or values
}

var (
	fenceRE = regexp.MustCompile("(?s)```[a-z]*\n(.*?)```")
	spanRE  = regexp.MustCompile("`([^`]+)`")
	// a command word: csi-libstorage, possibly behind a path.
	commandRE = regexp.MustCompile(`^(?:[./A-Za-z0-9_-]*/)?csi-libstorage$`)
)

// invocations finds csi-libstorage command lines in the fenced code blocks
// (continuation lines joined) and inline code spans of a Markdown text, and
// the flags each passes.
func invocations(doc string) []invocation {
	var snippets []string
	rest := fenceRE.ReplaceAllStringFunc(doc, func(block string) string {
		body := fenceRE.FindStringSubmatch(block)[1]
		snippets = append(snippets, strings.Split(strings.ReplaceAll(body, "\\\n", " "), "\n")...)
		return ""
	})
	for _, m := range spanRE.FindAllStringSubmatch(rest, -1) {
		snippets = append(snippets, m[1])
	}
	var out []invocation
	for _, s := range snippets {
		toks := strings.Fields(s)
		for i, tok := range toks {
			prev := ""
			if i > 0 {
				prev = toks[i-1]
			}
			if !commandRE.MatchString(tok) || !slices.Contains([]string{"", "exec", "--", "sudo", "$", "#"}, prev) {
				continue
			}
			var inv invocation
			for j := i + 1; j < len(toks); j++ {
				a := strings.Trim(toks[j], "[]")
				if commandRE.MatchString(a) || slices.Contains([]string{"|", ";", "&&", "&", "#"}, a) || strings.HasPrefix(a, "#") {
					break
				}
				if j == i+1 && a == "force-detach" {
					inv.Sub = a
					continue
				}
				name, ok := strings.CutPrefix(a, "--")
				if !ok || name == "" {
					continue
				}
				name, _, _ = strings.Cut(name, "=")
				inv.Flags = append(inv.Flags, name)
			}
			out = append(out, inv)
		}
	}
	return out
}

// forceDetachFlagNames reads the flags of `csi-libstorage force-detach`
// from the source of cmd/csi-libstorage: the function that makes the flag
// set named "... force-detach" defines them. The subcommand lives in the
// main package, which no test can import.
func forceDetachFlagNames(t *testing.T) []string {
	t.Helper()
	dir := filepath.Join(harness.RepoRoot(t), "cmd", "csi-libstorage")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	fset := gotoken.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil || !definesFlagSet(fn, "force-detach") {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				arg := -1
				switch sel.Sel.Name {
				case "String", "Bool", "Int", "Int64", "Uint", "Duration", "Float64":
					arg = 0
				case "StringVar", "BoolVar", "IntVar", "Int64Var", "UintVar", "DurationVar", "Float64Var":
					arg = 1
				}
				if arg < 0 || len(call.Args) <= arg {
					return true
				}
				if lit, ok := call.Args[arg].(*ast.BasicLit); ok && lit.Kind == gotoken.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil {
						names = append(names, s)
					}
				}
				return true
			})
		}
	}
	return names
}

// definesFlagSet reports whether fn calls flag.NewFlagSet with a name
// ending in sub.
func definesFlagSet(fn *ast.FuncDecl, sub string) bool {
	found := false
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "NewFlagSet" {
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && strings.HasSuffix(strings.Trim(lit.Value, `"`), sub) {
				found = true
			}
		}
		return !found
	})
	return found
}

// tableKeys returns the sorted keys (code spans of the first column,
// "`a` / `b`" giving both) of the Markdown table under the header line.
func tableKeys(t *testing.T, doc, header string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, header+"\n")
	if !ok {
		t.Fatalf("no table with header %q", header)
	}
	var keys []string
	for i, line := range strings.Split(rest, "\n") {
		if i == 0 {
			continue // the |---| line
		}
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(line, "|")
		keys = append(keys, codeSpans(cells[1])...)
	}
	slices.Sort(keys)
	return keys
}

// codeSpans returns the contents of the `code spans` in s.
func codeSpans(s string) []string {
	var out []string
	for _, m := range spanRE.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
