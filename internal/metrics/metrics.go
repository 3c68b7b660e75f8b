// Package metrics gives each plugin instance its own Prometheus registry:
// the gRPC server's calls (handled, handling seconds, by method and code,
// from go-grpc-middleware), the time and errors of every backend call by
// backend and operation, volumes by state per backend, formats performed
// and refused, and the Go runtime and process collectors.
//
// Labels carry only method and operation names, gRPC codes, states and
// configured backend instance names: nothing from a request's content, so
// no volume id, name, path or secret can reach a metric. Scrapes gather a
// copy of the figures before writing, so a stalled scraper never holds up
// a call.
package metrics

import (
	"net/http"

	"github.com/csi-libstorage/csi-libstorage/backends"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
)

// Namespace prefixes the plugin's own metrics.
const Namespace = "csi_libstorage"

// Buckets are the upper bounds, in seconds, of the latency histograms:
// from a metadata read to a slow attach, up to the 60 s Mesos allows a
// call.
var Buckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60}

// Metrics is one plugin instance's registry and the collectors in it.
type Metrics struct {
	reg            *prometheus.Registry
	grpc           *grpcprom.ServerMetrics
	backendSeconds *prometheus.HistogramVec
	backendErrors  *prometheus.CounterVec
	formats        *prometheus.CounterVec
	takeovers      *prometheus.CounterVec
	fences         *prometheus.CounterVec
	unary          grpc.UnaryServerInterceptor
}

// New returns a registry holding the gRPC server metrics, the backend and
// format metrics, and the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets(Buckets))),
		backendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "backend_call_duration_seconds",
			Help:    "Time backend calls take, by backend instance and operation.",
			Buckets: Buckets,
		}, []string{"backend", "operation"}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "backend_call_errors_total",
			Help: "Backend calls that returned an error (not-found answers included), by backend instance and operation.",
		}, []string{"backend", "operation"}),
		formats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "formats_total",
			Help: "Filesystems the node made (result=performed) or refused to make because the device held data (result=refused), by backend instance.",
		}, []string{"backend", "result"}),
		takeovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "takeovers_total",
			Help: "Volumes moved automatically away from a node proven unable to write, by backend instance and proof (lease-expired, instance-stopped, …).",
		}, []string{"backend", "proof"}),
		fences: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "fences_total",
			Help: "Times this node set its volumes read-only because it could not renew its lease, by backend instance.",
		}, []string{"backend"}),
	}
	m.unary = m.grpc.UnaryServerInterceptor()
	m.reg.MustRegister(m.grpc, m.backendSeconds, m.backendErrors, m.formats, m.takeovers, m.fences,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the registry to gather from.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// UnaryServerInterceptor counts and times every call the server answers.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return m.unary
}

// InitializeServer makes every method of srv appear with zero counts, so
// a dashboard shows the methods before they are first called.
func (m *Metrics) InitializeServer(srv *grpc.Server) { m.grpc.InitializeMetrics(srv) }

// Formats returns the counter the node service reports to when it formats
// a volume or refuses to.
// A nil *Metrics returns a nil *Formats, which counts nothing.
func (m *Metrics) Formats() *Formats {
	if m == nil {
		return nil
	}
	return &Formats{v: m.formats}
}

// Formats counts the node's format decisions. A nil *Formats counts
// nothing, so a node service built without metrics need not check.
type Formats struct{ v *prometheus.CounterVec }

// Performed counts a filesystem made on a volume of backend.
func (f *Formats) Performed(backend string) {
	if f != nil {
		f.v.WithLabelValues(backend, "performed").Inc()
	}
}

// Refused counts a format the safety probe refused because the device
// already held a signature or data.
func (f *Formats) Refused(backend string) {
	if f != nil {
		f.v.WithLabelValues(backend, "refused").Inc()
	}
}

// Events counts the takeovers and fences the backends report. A nil
// *Metrics returns nil, which backends.LogEvents accepts.
func (m *Metrics) Events() backends.Events {
	if m == nil {
		return nil
	}
	return events{takeovers: m.takeovers, fences: m.fences}
}

type events struct {
	takeovers, fences *prometheus.CounterVec
}

func (e events) Takeover(t backends.Takeover) {
	e.takeovers.WithLabelValues(t.Backend, t.Proof).Inc()
}

func (e events) Fenced(f backends.Fence) {
	e.fences.WithLabelValues(f.Backend).Inc()
}
