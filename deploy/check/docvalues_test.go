package check

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/csi-libstorage/csi-libstorage/backends/ebs"
	"github.com/csi-libstorage/csi-libstorage/backends/file"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
)

// The tests here compare values that several files state (a port, a count,
// a ratio, a key name) rather than phrases, so a value changed in one place
// fails until every place agrees.

func readRepo(t *testing.T, rel string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// operatorDocs lists the Markdown files an operator reads, relative to the
// repository root.
func operatorDocs(t *testing.T) []string {
	t.Helper()
	root := harness.RepoRoot(t)
	out := []string{"README.md", "BENCHMARKS.md"}
	for _, pat := range []string{"docs/*.md", "docs/backends/*.md"} {
		m, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(pat)))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			rel, _ := filepath.Rel(root, f)
			out = append(out, filepath.ToSlash(rel))
		}
	}
	return out
}

// TestDocsMetricsPort: the metrics port is one number in the README, the
// guides, the flag's help text and the manifests, and it is not the
// livenessprobe's port.
func TestDocsMetricsPort(t *testing.T) {
	addrRE := regexp.MustCompile(`--metrics-address[ =]\S*:(\d+)`)
	ports := map[string][]string{} // port -> where
	var files []string
	files = append(files, operatorDocs(t)...)
	yamls, _ := filepath.Glob(filepath.Join(k8sDir(t), "*.yaml"))
	for _, y := range yamls {
		files = append(files, "deploy/kubernetes/"+filepath.Base(y))
	}
	for _, f := range files {
		for _, m := range addrRE.FindAllStringSubmatch(readRepo(t, f), -1) {
			ports[m[1]] = append(ports[m[1]], f)
		}
	}
	help := regexp.MustCompile(`"metrics-address".*e\.g\. [0-9.]+:(\d+)`).FindStringSubmatch(readRepo(t, "internal/wiring/flags.go"))
	if help == nil {
		t.Fatal("internal/wiring/flags.go: no example address in the --metrics-address help")
	}
	ports[help[1]] = append(ports[help[1]], "internal/wiring/flags.go")
	prose := regexp.MustCompile(`metrics on port (\d+)`).FindStringSubmatch(readDoc(t, "kubernetes.md"))
	if prose == nil {
		t.Fatal("docs/kubernetes.md does not state the metrics port")
	}
	ports[prose[1]] = append(ports[prose[1]], "docs/kubernetes.md (prose)")
	if len(ports) != 1 {
		t.Fatalf("the metrics port differs between files: %v", ports)
	}
	var port string
	for p := range ports {
		port = p
	}
	if len(ports[port]) < 4 {
		t.Errorf("found the metrics port in only %v", ports[port])
	}
	health := regexp.MustCompile(`--http-endpoint=:(\d+)`).FindAllStringSubmatch(readRepo(t, "deploy/kubernetes/node.yaml"), -1)
	if len(health) == 0 {
		t.Fatal("deploy/kubernetes/node.yaml: no livenessprobe --http-endpoint")
	}
	for _, h := range health {
		if h[1] == port {
			t.Errorf("the metrics port %s is also the livenessprobe's", port)
		}
	}
}

// TestDocsEBSParameterLists: the Kubernetes and Nomad guides list every
// CreateVolume key of the EBS backend, spelt as the parser spells it.
func TestDocsEBSParameterLists(t *testing.T) {
	k8s := readDoc(t, "kubernetes.md")
	var row string
	for _, line := range strings.Split(k8s, "\n") {
		if strings.HasSuffix(line, "| ebs | see docs/backends/ebs.md |") {
			row = line
		}
	}
	_, nomadRest, _ := strings.Cut(readDoc(t, "nomad.md"), "and for EBS ")
	nomadList, _, _ := strings.Cut(nomadRest, "(docs/backends/ebs.md)")
	for doc, text := range map[string]string{"kubernetes.md": row, "nomad.md": nomadList} {
		got := sorted(codeSpans(text))
		want := sorted(ebs.ParameterKeys)
		if !slices.Equal(got, want) {
			t.Errorf("docs/%s lists the EBS parameters %v; the backend accepts %v", doc, got, want)
		}
	}
}

// TestDocsEBSConfigKeys: the EBS guide's configuration example uses the
// YAML keys of ebs.Config (kmsKeyID there, kmsKeyId as a parameter).
func TestDocsEBSConfigKeys(t *testing.T) {
	doc := readDoc(t, "backends/ebs.md")
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(doc)
	if m == nil {
		t.Fatal("docs/backends/ebs.md has no yaml configuration example")
	}
	src := readRepo(t, "backends/ebs/ebs.go")
	keyRE := regexp.MustCompile(`(?m)^\s+([A-Za-z]+):`)
	n := 0
	for _, k := range keyRE.FindAllStringSubmatch(m[1], -1) {
		if k[1] == "backends" {
			continue
		}
		n++
		if !strings.Contains(src, "yaml:\""+k[1]+"\"") && !strings.Contains(src, "yaml:\""+k[1]+",") && k[1] != "name" && k[1] != "type" {
			t.Errorf("docs/backends/ebs.md configures %s, which ebs.Config has no yaml tag for", k[1])
		}
	}
	if n < 3 {
		t.Errorf("read only %d keys from the EBS configuration example", n)
	}
}

// TestDocsEBSNodeID: what the EBS guide says Kubernetes passes as the node
// id is the argument of the shipped DaemonSet.
func TestDocsEBSNodeID(t *testing.T) {
	arg := regexp.MustCompile(`--node-id=(\S+)`).FindStringSubmatch(readRepo(t, "deploy/kubernetes/node.yaml"))
	if arg == nil {
		t.Fatal("deploy/kubernetes/node.yaml passes no --node-id")
	}
	for _, doc := range []string{"backends/ebs.md", "kubernetes.md"} {
		var said []string
		for _, m := range regexp.MustCompile("`--node-id=([^`]+)`").FindAllStringSubmatch(readDoc(t, doc), -1) {
			said = append(said, m[1])
		}
		if len(said) == 0 {
			t.Errorf("docs/%s does not say which node id Kubernetes passes", doc)
		}
		for _, s := range said {
			if s != arg[1] {
				t.Errorf("docs/%s says Kubernetes passes --node-id=%s; deploy/kubernetes/node.yaml passes %s", doc, s, arg[1])
			}
		}
	}
}

// TestDocsMesosRetries: wherever a page says Mesos retries a call, the
// call is one the Mesos guide lists as retried.
func TestDocsMesosRetries(t *testing.T) {
	_, rest, ok := strings.Cut(readDoc(t, "mesos.md"), "Only `")
	if !ok {
		t.Fatal("docs/mesos.md does not list the calls Mesos retries")
	}
	sentence, _, _ := strings.Cut("`"+rest, " are retried")
	retried := codeSpans(sentence)
	if !slices.Equal(sorted(retried), []string{"CreateVolume", "DeleteVolume"}) {
		t.Errorf("docs/mesos.md says Mesos retries %v; it retries CreateVolume and DeleteVolume (src/csi/v1_volume_manager.cpp)", retried)
	}
	claim := regexp.MustCompile(`(?i)\bmesos (?:and [^,;]*? )?retr(?:y|ies)\b`)
	call := regexp.MustCompile(`\b(?:Create|Delete|Controller|Node)[A-Z][A-Za-z]+\b`)
	for _, doc := range operatorDocs(t) {
		for _, s := range sentences(readRepo(t, doc)) {
			if !claim.MatchString(s) {
				continue
			}
			calls := call.FindAllString(s, -1)
			if len(calls) == 0 {
				t.Errorf("%s: %q says Mesos retries without naming the call; it retries only %v", doc, s, retried)
			}
			for _, c := range calls {
				if !slices.Contains(retried, c) {
					t.Errorf("%s: %q says Mesos retries %s; it retries only %v", doc, s, c, retried)
				}
			}
		}
	}
}

// sentences splits Markdown prose into sentences, joining wrapped lines.
func sentences(text string) []string {
	flat := strings.Join(strings.Fields(text), " ")
	return regexp.MustCompile(`[.;:]\s+`).Split(flat, -1)
}

// TestReliabilityBugCount: "It found N bugs, all fixed: a; b; c" lists N.
func TestReliabilityBugCount(t *testing.T) {
	words := map[string]int{"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
	flat := strings.Join(strings.Fields(readDoc(t, "RELIABILITY.md")), " ")
	ms := regexp.MustCompile(`found (\w+) bugs, all fixed: ([^.]*(?:\.[a-z][^.]*)*)\.`).FindAllStringSubmatch(flat, -1)
	if len(ms) == 0 {
		t.Fatal("docs/RELIABILITY.md: no \"found N bugs, all fixed:\" list")
	}
	for _, m := range ms {
		n, ok := words[m[1]]
		if !ok {
			t.Errorf("docs/RELIABILITY.md: bug count %q is not a number word", m[1])
			continue
		}
		if items := len(strings.Split(m[2], ";")); items != n {
			t.Errorf("docs/RELIABILITY.md says it found %d bugs and lists %d: %s", n, items, m[2])
		}
	}
}

// TestBenchmarksProseMatchesTable: the ratios the analysis quotes are the
// ones in the generated table above it. The issue-17 figures (the fresh
// stage, the control plane against hostpath, the create rate at 10,000
// volumes) are described without quoting the table: the table prints
// their targets as met or MISSED itself.
func TestBenchmarksProseMatchesTable(t *testing.T) {
	text := readRepo(t, "BENCHMARKS.md")
	generated, analysis, ok := strings.Cut(text, "<!-- csi-bench: end of generated part -->")
	if !ok {
		t.Fatal("BENCHMARKS.md has no end-of-generated marker")
	}
	table := func(figure string) string {
		for _, line := range strings.Split(generated, "\n") {
			cells := strings.Split(line, "|")
			if len(cells) > 3 && strings.Contains(cells[2], figure) {
				return strings.TrimSpace(cells[3])
			}
		}
		t.Fatalf("BENCHMARKS.md table has no row %q", figure)
		return ""
	}
	ratio := func(cell string) string { return regexp.MustCompile(`[0-9.]+×`).FindString(cell) }
	flat := strings.Join(strings.Fields(analysis), " ")
	for _, c := range []struct{ prose, figure string }{
		{`in the run above: \*\*\(b\) ([0-9.]+×)`, "(b) re-stage"},
		{`in the run above: \*\*\(b\) [0-9.]+×, \(c\) ([0-9.]+×)`, "(c) unpublish+unstage"},
	} {
		m := regexp.MustCompile(c.prose).FindStringSubmatch(flat)
		if m == nil {
			t.Errorf("BENCHMARKS.md analysis no longer states %q", c.prose)
			continue
		}
		if want := ratio(table(c.figure)); m[1] != want {
			t.Errorf("BENCHMARKS.md analysis says %s for %q; the table says %s", m[1], c.figure, want)
		}
	}
}

// TestDocsLinks: every relative Markdown link resolves to a file of the
// repository, and no link leaves the repository to reach its own GitHub
// copy.
func TestDocsLinks(t *testing.T) {
	linkRE := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	root := harness.RepoRoot(t)
	module := strings.TrimPrefix(regexp.MustCompile(`(?m)^module (\S+)`).FindStringSubmatch(readRepo(t, "go.mod"))[1], "github.com/")
	n := 0
	for _, doc := range operatorDocs(t) {
		for _, m := range linkRE.FindAllStringSubmatch(readRepo(t, doc), -1) {
			target := m[1]
			n++
			if strings.Contains(strings.ToLower(target), "github.com/"+strings.ToLower(module)) {
				t.Errorf("%s links %s, this repository's GitHub copy: use a relative link", doc, target)
				continue
			}
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "#") {
				continue
			}
			p, _, _ := strings.Cut(target, "#")
			if _, err := os.Stat(filepath.Join(root, filepath.Dir(filepath.FromSlash(doc)), filepath.FromSlash(p))); err != nil {
				t.Errorf("%s links %s, which does not exist", doc, target)
			}
		}
	}
	if n < 4 {
		t.Errorf("found only %d links across the docs", n)
	}
}

// TestDocsSharedFSTypes: the filesystem types docs/install.md says a
// shared: true pool may be on are the ones the file backend accepts.
func TestDocsSharedFSTypes(t *testing.T) {
	flat := strings.Join(strings.Fields(readDoc(t, "install.md")), " ")
	m := regexp.MustCompile(`network or cluster filesystem \(([a-z0-9., ]+)\)`).FindStringSubmatch(flat)
	if m == nil {
		t.Fatal("docs/install.md does not list the filesystem types of a shared pool")
	}
	got := strings.Split(m[1], ", ")
	if !slices.Equal(sorted(got), sorted(file.SharedFSTypes)) {
		t.Errorf("docs/install.md lists %v for a shared pool; the file backend accepts %v", got, file.SharedFSTypes)
	}
}
