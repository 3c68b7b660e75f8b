package check

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"

	"github.com/csi-libstorage/csi-libstorage/internal/config"
	"github.com/csi-libstorage/csi-libstorage/internal/wiring"
	"github.com/csi-libstorage/csi-libstorage/test/harness"
	"github.com/csi-libstorage/csi-libstorage/test/harness/inproc"
)

// dashboard is the part of a Grafana dashboard that carries queries.
type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// queries returns every PromQL expression of the dashboard, keyed by where
// it is used.
func (d *dashboard) queries() map[string]string {
	out := map[string]string{}
	for _, p := range d.Panels {
		for i, t := range p.Targets {
			out[p.Title+"#"+string(rune('A'+i))] = t.Expr
		}
	}
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			if s, _ := q["query"].(string); s != "" {
				out["variable "+v.Name] = s
			}
		}
	}
	return out
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*\s*\(?`)
	promLabelArg = regexp.MustCompile(`(label_values\([^,]*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}
)

// metricNames returns the metric names a PromQL expression reads: the
// identifiers left once strings, label matchers, ranges and groupings are
// gone, other than function calls and keywords.
func metricNames(expr string) []string {
	e := promString.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promLabelArg.ReplaceAllString(e, "$1)") // Grafana's label_values(metric, label)
	e = promRange.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var names []string
	for _, m := range promIdent.FindAllString(e, -1) {
		m = strings.TrimSpace(m)
		if strings.HasSuffix(m, "(") || promKeywords[strings.ToLower(m)] {
			continue
		}
		names = append(names, m)
	}
	return names
}

func TestMetricNamesOfQueries(t *testing.T) {
	for _, tt := range []struct {
		expr string
		want []string
	}{
		{`sum by (le, backend) (rate(a_bucket{backend=~"$b", x="y{z}"}[5m]))`, []string{"a_bucket"}},
		{`sum by (m) (a_total{s="v"}) - sum by (m) (b_total)`, []string{"a_total", "b_total"}},
		{`label_values(c_total{job=~"$job", a="b"}, job)`, []string{"c_total"}},
		{`histogram_quantile(0.99, x_bucket) > 0 and on (instance) up`, []string{"x_bucket", "up"}},
	} {
		got := metricNames(tt.expr)
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("metricNames(%q) = %v, want %v", tt.expr, got, tt.want)
		}
	}
}

// exported returns every series name the exposition holds, with the
// _bucket, _sum and _count series of histograms and summaries.
func exported(fams map[string]*dto.MetricFamily) map[string]bool {
	out := map[string]bool{}
	for name, f := range fams {
		out[name] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			out[name+"_sum"], out[name+"_count"] = true, true
		}
	}
	return out
}

// TestDashboardQueriesExportedMetrics starts a plugin in-process, makes a
// few calls so that every kind of metric has a sample, scrapes it, and
// checks that every metric the Grafana dashboard queries is one the plugin
// exports: a renamed metric breaks this test, not an operator's dashboard.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "deploy", "monitoring", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	queries := d.queries()
	if len(queries) < 10 {
		t.Fatalf("only %d queries in the dashboard; the parse lost panels", len(queries))
	}

	dir := t.TempDir()
	sock := filepath.Join(dir, "csi.sock")
	ctx := context.Background()
	p := inproc.Start(t, wiring.Options{
		Endpoint: "unix://" + sock, Mode: wiring.ModeController, Config: config.Default(filepath.Join(dir, "pool")),
		Logger: zap.NewNop(), MetricsAddress: "127.0.0.1:0", ShutdownGrace: 5 * time.Second,
	})
	conn := inproc.Dial(t, sock)
	cc := csi.NewControllerClient(conn)
	if _, err := csi.NewIdentityClient(conn).Probe(ctx, &csi.ProbeRequest{}); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	mount := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	if _, err := cc.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "dash", VolumeCapabilities: []*csi.VolumeCapability{mount},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 16 << 20}}); err != nil {
		t.Fatalf("CreateVolume: %v", err)
	}
	// A volume that does not exist: a backend call that fails.
	if _, err := cc.ValidateVolumeCapabilities(ctx, &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "local/missing", VolumeCapabilities: []*csi.VolumeCapability{mount}}); err == nil {
		t.Fatal("ValidateVolumeCapabilities of a missing volume succeeded")
	}

	resp, err := http.Get("http://" + p.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("exposition: %v", err)
	}
	have := exported(fams)
	var missing []string
	checked := 0
	for where, q := range queries {
		names := metricNames(q)
		if len(names) == 0 {
			t.Errorf("%s: no metric found in %q", where, q)
		}
		for _, n := range names {
			checked++
			if !have[n] {
				missing = append(missing, where+": "+n)
			}
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("dashboard queries a metric the plugin does not export: %s", m)
	}
	if checked < 10 {
		t.Fatalf("only %d metric references checked", checked)
	}
}
