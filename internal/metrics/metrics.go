// Package metrics counts CSI calls by method, backend and result and times
// them, and serves the figures in the Prometheus text format. Labels carry
// only method names, backend instance names and gRPC codes: nothing from a
// request's content, so no secret or id can reach a metric.
package metrics

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Buckets are the upper bounds, in seconds, of the latency histogram: from a
// metadata read to a slow attach.
var Buckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60}

type key struct{ method, backend, code string }

type hist struct {
	counts []uint64 // per bucket, not cumulative
	sum    float64
	n      uint64
}

// Registry holds the figures. The zero value is not usable; call New.
type Registry struct {
	mu       sync.Mutex
	calls    map[key]uint64
	latency  map[key]*hist // code left empty: by method and backend
	inFlight map[string]int64
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{calls: map[key]uint64{}, latency: map[key]*hist{}, inFlight: map[string]int64{}}
}

// Start records a call beginning and returns the function that records its
// end.
func (r *Registry) Start(method, backend string) func(code string) {
	start := time.Now()
	r.mu.Lock()
	r.inFlight[method]++
	r.mu.Unlock()
	return func(code string) {
		d := time.Since(start).Seconds()
		r.mu.Lock()
		defer r.mu.Unlock()
		r.inFlight[method]--
		r.calls[key{method, backend, code}]++
		k := key{method: method, backend: backend}
		h := r.latency[k]
		if h == nil {
			h = &hist{counts: make([]uint64, len(Buckets)+1)}
			r.latency[k] = h
		}
		i := sort.SearchFloat64s(Buckets, d)
		h.counts[i]++
		h.sum += d
		h.n++
	}
}

// ServeHTTP writes the Prometheus text exposition.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	r.WriteTo(w)
}

// WriteTo writes the exposition to w.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	p := func(format string, a ...any) {
		m, _ := fmt.Fprintf(w, format, a...)
		n += int64(m)
	}
	p("# HELP csi_libstorage_calls_total CSI calls answered, by method, backend and gRPC code.\n")
	p("# TYPE csi_libstorage_calls_total counter\n")
	for _, k := range sortedKeys(r.calls) {
		p("csi_libstorage_calls_total{method=%q,backend=%q,code=%q} %d\n", k.method, k.backend, k.code, r.calls[k])
	}
	p("# HELP csi_libstorage_call_duration_seconds Time to answer CSI calls, by method and backend.\n")
	p("# TYPE csi_libstorage_call_duration_seconds histogram\n")
	for _, k := range sortedKeys(r.latency) {
		h := r.latency[k]
		var cum uint64
		for i, b := range Buckets {
			cum += h.counts[i]
			p("csi_libstorage_call_duration_seconds_bucket{method=%q,backend=%q,le=%q} %d\n", k.method, k.backend, fmt.Sprint(b), cum)
		}
		p("csi_libstorage_call_duration_seconds_bucket{method=%q,backend=%q,le=\"+Inf\"} %d\n", k.method, k.backend, h.n)
		p("csi_libstorage_call_duration_seconds_sum{method=%q,backend=%q} %g\n", k.method, k.backend, h.sum)
		p("csi_libstorage_call_duration_seconds_count{method=%q,backend=%q} %d\n", k.method, k.backend, h.n)
	}
	p("# HELP csi_libstorage_calls_in_flight CSI calls being answered now, by method.\n")
	p("# TYPE csi_libstorage_calls_in_flight gauge\n")
	methods := make([]string, 0, len(r.inFlight))
	for m := range r.inFlight {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	for _, m := range methods {
		p("csi_libstorage_calls_in_flight{method=%q} %d\n", m, r.inFlight[m])
	}
	return n, nil
}

func sortedKeys[V any](m map[key]V) []key {
	out := make([]key, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.method != b.method {
			return a.method < b.method
		}
		if a.backend != b.backend {
			return a.backend < b.backend
		}
		return a.code < b.code
	})
	return out
}
