package check_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/internal/capability"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// debianPackage says which Debian 12 package installs each command the
// plugin may execute. A command missing here fails the test: whoever adds
// an exec also says where its binary comes from.
var debianPackage = map[string]string{
	"blkid":      "util-linux",
	"mkfs.ext4":  "e2fsprogs",
	"mkfs.ext3":  "e2fsprogs",
	"mkfs.ext2":  "e2fsprogs",
	"resize2fs":  "e2fsprogs",
	"e2fsck":     "e2fsprogs",
	"mkfs.xfs":   "xfsprogs",
	"xfs_growfs": "xfsprogs",
	"xfs_repair": "xfsprogs",
	"mkfs.btrfs": "btrfs-progs",
	"btrfs":      "btrfs-progs",
	"mount":      "mount",
	"umount":     "mount",
	"mount.nfs":  "nfs-common",
	"mount.nfs4": "nfs-common",
}

// hostProvided are commands that no Debian package provides: they come
// with vendor software installed on the host, which the operator mounts
// into the plugin's container. Each must be named in the docs, where the
// operator learns to mount it.
var hostProvided = map[string]string{
	"/opt/emc/scaleio/sdc/bin/drv_cfg": "the ScaleIO/PowerFlex SDC",
}

// TestImageInstallsEveryCommand derives the external commands from the
// plugin's own source (every exec.Command and exec.CommandContext in the
// packages the binary links) and checks that the Dockerfile installs the
// package of each one.
func TestImageInstallsEveryCommand(t *testing.T) {
	root := harness.RepoRoot(t)
	files := pluginSources(t, root)
	var cmds []string
	for _, f := range files {
		found, err := execCommands(f)
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, found...)
	}
	slices.Sort(cmds)
	cmds = slices.Compact(cmds)
	if !slices.Contains(cmds, "blkid") || !slices.Contains(cmds, "mkfs.xfs") {
		t.Fatalf("found commands %v: the scan no longer sees the node's blkid and mkfs calls", cmds)
	}
	installed := dockerPackages(t, filepath.Join(root, "Dockerfile"))
	docs := allDocs(t, root)
	for _, c := range cmds {
		if from, ok := hostProvided[c]; ok {
			if !strings.Contains(docs, c) {
				t.Errorf("the plugin runs %s (from %s on the host), but no page under docs/ names it: say where it comes from and how to mount it into the container", c, from)
			}
			continue
		}
		pkg, ok := debianPackage[c]
		if !ok {
			t.Errorf("the plugin runs %q, which has no entry in debianPackage: add the Debian package that installs it, and add that package to the Dockerfile", c)
			continue
		}
		if !slices.Contains(installed, pkg) {
			t.Errorf("the plugin runs %q (package %s), but the Dockerfile does not install %s", c, pkg, pkg)
		}
	}
	t.Logf("commands %v; image packages %v", cmds, installed)
}

// TestExecScanFindsNewCommands proves the scan would catch a new exec, in
// each form it understands, and refuses a form it cannot name.
func TestExecScanFindsNewCommands(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want []string
		err  bool
	}{
		{"literal", `exec.Command("mount.nfs", "a")`, []string{"mount.nfs"}, false},
		{"context", `exec.CommandContext(ctx, "xfs_repair", "-n")`, []string{"xfs_repair"}, false},
		{"mkfs family", `exec.CommandContext(ctx, "mkfs."+fs, dev)`, prefixed("mkfs.", capability.FSTypes), false},
		{"variable", `exec.Command(name)`, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "x.go")
			src := "package x\nimport \"os/exec\"\nfunc f() { _ = " + tc.src + " }\n"
			if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := execCommands(p)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if !tc.err && !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestImageCopiesReleaseBinaries ties the Dockerfile to make release's
// output names, so a renamed artifact cannot leave the image without it.
func TestImageCopiesReleaseBinaries(t *testing.T) {
	root := harness.RepoRoot(t)
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mk), "-o bin/release/$$cmd-linux-$$arch") {
		t.Fatal("Makefile release no longer writes bin/release/<cmd>-linux-<arch>; update this test and the Dockerfile together")
	}
	for _, cmd := range []string{"csi-libstorage", "csictl"} {
		want := "COPY bin/release/" + cmd + "-linux-${TARGETARCH} /usr/local/bin/" + cmd
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

func prefixed(p string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = p + n
	}
	return out
}

// pluginSources lists the non-test Go files of this module's packages that
// the plugin binary links.
func pluginSources(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}{{end}}`,
		"./cmd/csi-libstorage")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	files := strings.Fields(string(out))
	if len(files) < 10 {
		t.Fatalf("go list found only %d source files", len(files))
	}
	return files
}

// execCommands returns the command names of the exec calls in one file.
func execCommands(path string) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		return nil, err
	}
	var names []string
	var bad error
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || bad != nil {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		pkg, ok := sel.X.(*ast.Ident)
		if !ok || pkg.Name != "exec" {
			return true
		}
		arg := -1
		switch sel.Sel.Name {
		case "Command":
			arg = 0
		case "CommandContext":
			arg = 1
		}
		if arg < 0 || len(call.Args) <= arg {
			return true
		}
		found, ok := commandNames(call.Args[arg])
		if !ok {
			bad = &scanError{fset.Position(call.Pos()).String()}
			return false
		}
		names = append(names, found...)
		return true
	})
	return names, bad
}

// commandNames evaluates the forms of command name the code uses: a string
// literal, or "mkfs."+fsType, which can run the mkfs of any supported
// filesystem.
func commandNames(e ast.Expr) ([]string, bool) {
	switch v := e.(type) {
	case *ast.BasicLit:
		if s, err := strconv.Unquote(v.Value); err == nil {
			return []string{s}, true
		}
	case *ast.BinaryExpr:
		if lit, ok := v.X.(*ast.BasicLit); ok && v.Op == token.ADD {
			if s, err := strconv.Unquote(lit.Value); err == nil && s == "mkfs." {
				return prefixed(s, capability.FSTypes), true
			}
		}
	}
	return nil, false
}

type scanError struct{ pos string }

func (e *scanError) Error() string {
	return e.pos + ": cannot tell which command this exec runs; name it with a string literal (or teach commandNames in deploy/check/image_test.go the new form)"
}

var aptInstall = regexp.MustCompile(`(?s)apt-get install ([^&]*)`)

// dockerPackages returns the packages the Dockerfile's apt-get install names.
func dockerPackages(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := aptInstall.FindSubmatch(raw)
	if m == nil {
		t.Fatal("the Dockerfile has no apt-get install")
	}
	var pkgs []string
	for _, w := range strings.Fields(strings.ReplaceAll(string(m[1]), "\\", " ")) {
		if !strings.HasPrefix(w, "-") {
			pkgs = append(pkgs, w)
		}
	}
	return pkgs
}

// allDocs is the text of every page under docs/.
func allDocs(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".md") {
			return err
		}
		raw, err := os.ReadFile(p)
		b.Write(raw)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
