package mesos

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

func readGuide(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "docs", "mesos.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(doc)
}

var (
	spanRE = regexp.MustCompile("`([^`]+)`")
	// "parameter `a`", "parameters `a`, `b` or `c`"
	paramListRE = regexp.MustCompile("parameters? ((?:`[^`]+`(?:, | or | and )?)+)")
)

// flat joins the lines of a paragraph: a phrase may be wrapped anywhere.
func flat(doc string) string { return strings.Join(strings.Fields(doc), " ") }

// spansAfter returns the code spans between the first occurrence of start
// and the next occurrence of end after it.
func spansAfter(t *testing.T, doc, start, end string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(flat(doc), start)
	if !ok {
		t.Fatalf("docs/mesos.md has no %q", start)
	}
	part, _, _ := strings.Cut(rest, end)
	var out []string
	for _, m := range spanRE.FindAllStringSubmatch(part, -1) {
		out = append(out, m[1])
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// TestDocAgentFlags: the agent flags the guide gives are the ones the
// shipped additions files set, with the same values.
func TestDocAgentFlags(t *testing.T) {
	doc := readGuide(t)
	root := filepath.Join(harness.RepoRoot(t), "deploy", "mesos")
	n := 0
	for _, name := range []string{"mesos-agent-csi.env", "mesos-agent-slrp.env"} {
		data, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		env, err := ParseEnvFile(data)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range env {
			n++
			if want := "--" + flagName(k) + "=" + v; !strings.Contains(doc, want) {
				t.Errorf("%s sets %s=%s, but docs/mesos.md never gives %s", name, k, v, want)
			}
		}
	}
	if n == 0 {
		t.Fatal("the agent flag files set nothing")
	}
	// The defaults the guide lists are the agent's.
	if got := spansAfter(t, doc, "list all eight defaults (", ")"); !sameSet(got, DefaultAgentCapabilities) {
		t.Errorf("docs/mesos.md lists the default agent capabilities %v; Mesos 1.11 has %v", got, DefaultAgentCapabilities)
	}
	if got := spansAfter(t, doc, "Only the five CSI 1.1.0 access modes exist for Mesos", ")"); !sameSet(got, AccessModes) {
		t.Errorf("docs/mesos.md lists the access modes %v; CSI 1.1.0 has %v", got, AccessModes)
	}
}

// TestDocPluginFiles: what the guide says about the plugin files is what
// they hold.
func TestDocPluginFiles(t *testing.T) {
	doc := readGuide(t)
	_, d := loadDeploy(t)
	managed := d.isolator["csi-plugins/csi-libstorage-managed.json"]
	unmanaged := d.isolator["csi-plugins-unmanaged/csi-libstorage-unmanaged.json"]
	rp := d.slrps["resource-providers/libstorage_slrp.json"]
	if managed == nil || unmanaged == nil || rp == nil {
		t.Fatal("a shipped plugin file is missing")
	}

	// The table row of the managed file states its flags and resources.
	row := tableRow(t, doc, "deploy/mesos/csi-plugins/csi-libstorage-managed.json")
	_, flags, err := ParseCommand(managed.Containers[0].Command.Value)
	if err != nil {
		t.Fatal(err)
	}
	stated := 0
	for _, span := range spanRE.FindAllStringSubmatch(row, -1) {
		for _, tok := range strings.Fields(span[1]) {
			name, ok := strings.CutPrefix(tok, "--")
			if !ok {
				continue
			}
			stated++
			name, val, _ := strings.Cut(name, "=")
			if got, ok := flags[name]; !ok || got != val {
				t.Errorf("docs/mesos.md says the managed plugin runs with --%s=%s; the file has %q", name, val, got)
			}
		}
	}
	if stated == 0 {
		t.Error("docs/mesos.md does not state the managed plugin's flags")
	}
	for _, r := range managed.Containers[0].Resources {
		unit := map[string]string{"cpus": "CPU", "mem": "MB"}[r.Name]
		if want := fmt.Sprintf("%v %s", r.Scalar.Value, unit); !strings.Contains(row, want) {
			t.Errorf("docs/mesos.md does not state the managed plugin's %s (%s)", r.Name, want)
		}
	}

	row = tableRow(t, doc, "deploy/mesos/csi-plugins-unmanaged/csi-libstorage-unmanaged.json")
	for _, want := range []string{unmanaged.Endpoints[0].Endpoint, unmanaged.TargetPathRoot} {
		if !strings.Contains(row, "`"+want+"`") {
			t.Errorf("docs/mesos.md does not state the unmanaged plugin's %s", want)
		}
	}

	for what, want := range map[string]string{"RP name": rp.Name, "plugin name": rp.Storage.Plugin.Name} {
		if !strings.Contains(flat(doc), what+" `"+want+"`") {
			t.Errorf("docs/mesos.md does not give the SLRP's %s %s", what, want)
		}
	}
	for rel, m := range d.profiles {
		for name := range m.ProfileMatrix {
			if !strings.Contains(doc, "`"+name+"`") {
				t.Errorf("%s defines profile %q, which docs/mesos.md does not name", rel, name)
			}
		}
	}
}

// TestDocParameters: every CreateVolume parameter the dvdi mapping table
// names is one the plugin accepts.
func TestDocParameters(t *testing.T) {
	doc := readGuide(t)
	_, table, ok := strings.Cut(doc, "| dvdi / REX-Ray | csi-libstorage | Notes |\n")
	if !ok {
		t.Fatal("docs/mesos.md has no dvdi mapping table")
	}
	n := 0
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.Contains(cells[2], "parameter") {
			continue
		}
		for _, list := range paramListRE.FindAllStringSubmatch(cells[2], -1) {
			for _, m := range spanRE.FindAllStringSubmatch(list[1], -1) {
				key, _, _ := strings.Cut(m[1], ":")
				n++
				if !slices.Contains(AcceptedCreateParameters(), key) {
					t.Errorf("docs/mesos.md maps a dvdi option to parameter %q, which csi-libstorage does not accept (%v)", key, AcceptedCreateParameters())
				}
			}
		}
	}
	if n < 5 {
		t.Errorf("found only %d parameter names in the dvdi mapping table", n)
	}
}

// tableRow returns the Markdown table row that starts with `cell`.
func tableRow(t *testing.T, doc, cell string) string {
	t.Helper()
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "| `"+cell+"` |") {
			return line
		}
	}
	t.Fatalf("docs/mesos.md has no table row for %s", cell)
	return ""
}
