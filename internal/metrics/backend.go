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

// unwrapper lets a caller that needs the concrete backend (a test, an
// operator's tool) reach past the decorator.
type unwrapper struct{ c *core }

// Unwrap returns the decorated backend.
func (u unwrapper) Unwrap() backends.Backend { return u.c.inner }

// Unwrap returns the backend inside b's decorator, or b if it has none.
func Unwrap(b backends.Backend) backends.Backend {
	if u, ok := b.(interface{ Unwrap() backends.Backend }); ok {
		return u.Unwrap()
	}
	return b
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
	return wrapMask(c, maskOf(b))
}

// Set returns a set of the backends of s, each wrapped by Backend.
func (m *Metrics) Set(s *backends.Set) (*backends.Set, error) {
	var list []backends.Backend
	for _, b := range s.All() {
		list = append(list, m.Backend(b))
	}
	return backends.NewSet(list...)
}
