package metrics

import (
	"strings"
	"testing"
	"time"
)

func TestExposition(t *testing.T) {
	r := New()
	done := r.Start("/csi.v1.Node/NodeStageVolume", "local")
	time.Sleep(2 * time.Millisecond)
	done("OK")
	r.Start("/csi.v1.Node/NodeStageVolume", "local")("Internal")
	hold := r.Start("/csi.v1.Controller/CreateVolume", "")
	var b strings.Builder
	r.WriteTo(&b)
	out := b.String()
	for _, want := range []string{
		`csi_libstorage_calls_total{method="/csi.v1.Node/NodeStageVolume",backend="local",code="OK"} 1`,
		`csi_libstorage_calls_total{method="/csi.v1.Node/NodeStageVolume",backend="local",code="Internal"} 1`,
		`csi_libstorage_call_duration_seconds_count{method="/csi.v1.Node/NodeStageVolume",backend="local"} 2`,
		`csi_libstorage_call_duration_seconds_bucket{method="/csi.v1.Node/NodeStageVolume",backend="local",le="0.001"} 1`,
		`csi_libstorage_call_duration_seconds_bucket{method="/csi.v1.Node/NodeStageVolume",backend="local",le="+Inf"} 2`,
		`csi_libstorage_calls_in_flight{method="/csi.v1.Controller/CreateVolume"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %s\n%s", want, out)
		}
	}
	hold("OK")
}
