package backends_test

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

type plain struct{ backends.Backend }

type expanding struct{ plain }

func (expanding) Expand(context.Context, string, int64, int64) (int64, error) { return 1, nil }

// deco implements every optional interface it knows, as the metrics
// decorator does, and counts the calls that go through it.
type deco struct {
	backends.Backend // the methods this test does not call
	inner            backends.Backend
	calls            *int
}

func (d deco) Unwrap() backends.Backend { return d.inner }
func (d deco) Expand(ctx context.Context, id string, r, l int64) (int64, error) {
	*d.calls++
	x, _ := backends.As[backends.Expander](d.inner)
	return x.Expand(ctx, id, r, l)
}

func TestAs(t *testing.T) {
	calls := 0
	cases := []struct {
		name string
		b    backends.Backend
		want bool
	}{
		{"plain", plain{}, false},
		{"expanding", expanding{}, true},
		{"decorated plain", deco{inner: plain{}, calls: &calls}, false},
		{"decorated expanding", deco{inner: expanding{}, calls: &calls}, true},
		{"twice decorated expanding", deco{inner: deco{inner: expanding{}, calls: &calls}, calls: &calls}, true},
		{"twice decorated plain", deco{inner: deco{inner: plain{}, calls: &calls}, calls: &calls}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x, ok := backends.As[backends.Expander](tc.b)
			if ok != tc.want {
				t.Fatalf("As[Expander] = %v, want %v", ok, tc.want)
			}
			if !ok {
				return
			}
			calls = 0
			if _, err := x.Expand(context.Background(), "v", 1, 0); err != nil {
				t.Fatal(err)
			}
			if _, isDeco := tc.b.(deco); isDeco && calls == 0 {
				t.Fatal("the ability As returned bypasses the decorator")
			}
		})
	}
}

// TestAbilitiesOnlyThroughAs fails on any plain type assertion to an
// optional interface of this package in the code that ships: through the
// metrics decorator, which implements them all, such an assertion would
// advertise abilities the storage does not have.
func TestAbilitiesOnlyThroughAs(t *testing.T) {
	root := moduleRoot(t)
	optional := optionalInterfaces(t, filepath.Join(root, "backends"))
	if len(optional) < 5 {
		t.Fatalf("found only %v optional interfaces", optional)
	}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "var" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		if filepath.Dir(path) == filepath.Join(root, "backends") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ta, ok := n.(*ast.TypeAssertExpr)
			if !ok {
				return true
			}
			if sel, ok := ta.Type.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "backends" && optional[sel.Sel.Name] {
					rel, _ := filepath.Rel(root, path)
					t.Errorf("%s: .(backends.%s): use backends.As[backends.%s]", rel, sel.Sel.Name, sel.Sel.Name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func optionalInterfaces(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	out := map[string]bool{}
	for _, p := range files {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, s := range g.Specs {
				ts, ok := s.(*ast.TypeSpec)
				if !ok {
					continue
				}
				if _, ok := ts.Type.(*ast.InterfaceType); ok && ts.Name.IsExported() && ts.Name.Name != "Backend" && ts.Name.Name != "Wrapper" {
					out[ts.Name.Name] = true
				}
			}
		}
	}
	return out
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}
