package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

//go:generate go run gen_wrap.go

// core is what every generated decorator of one backend shares.
type core struct {
	inner   backends.Backend
	seconds prometheus.ObserverVec // by operation
	errors  *prometheus.CounterVec // by operation
}

// start times one call of op; the returned function records its end.
func (c *core) start(op string) func(error) {
	t := time.Now()
	return func(err error) {
		c.seconds.WithLabelValues(op).Observe(time.Since(t).Seconds())
		if err != nil {
			c.errors.WithLabelValues(op).Inc()
		}
	}
}

// Backend returns b with every call that takes a context timed under b's
// configured name. The result implements exactly the optional interfaces
// (Expander, Snapshotter, …) that b does, so the services find the same
// abilities through it.
func (m *Metrics) Backend(b backends.Backend) backends.Backend {
	name := prometheus.Labels{"backend": b.Name()}
	c := &core{
		inner:   b,
		seconds: m.backendSeconds.MustCurryWith(name),
		errors:  m.backendErrors.MustCurryWith(name),
	}
	// Known label values start at zero, so rate() and increase() see the
	// first format of a backend.
	m.formats.WithLabelValues(b.Name(), "performed")
	m.formats.WithLabelValues(b.Name(), "refused")
	return timed{c}
}

// Set returns a set of the backends of s, each wrapped by Backend.
func (m *Metrics) Set(s *backends.Set) (*backends.Set, error) {
	var list []backends.Backend
	for _, b := range s.All() {
		list = append(list, m.Backend(b))
	}
	return backends.NewSet(list...)
}
