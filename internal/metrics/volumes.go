package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// VolumeOptions bound what counting volumes may cost the storage.
type VolumeOptions struct {
	// Timeout bounds one backend's List during a scrape (default 5 s).
	Timeout time.Duration
	// MaxAge is how long one count is reused before a scrape asks the
	// backend again (default 30 s), so frequent scrapes or several
	// scrapers cost one List per backend per MaxAge.
	MaxAge time.Duration
}

// WatchVolumes registers a collector that reports, per backend of set, the
// volumes the storage holds (state="created"), those attached to a node
// (state="attached") and those a node has connected and staged
// (state="staged"), asking each backend's List at scrape time.
func (m *Metrics) WatchVolumes(set *backends.Set, o VolumeOptions) {
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MaxAge == 0 {
		o.MaxAge = 30 * time.Second
	}
	c := &volumeCollector{
		set: set, opt: o, now: time.Now,
		desc: prometheus.NewDesc(Namespace+"_volumes",
			"Volumes by state, as each backend instance's storage reports them: created (all), attached (to some node), staged (connected on a node).",
			[]string{"backend", "state"}, nil),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "volume_count_errors_total",
			Help: "Scrapes in which a backend instance could not list its volumes; its volume counts are then left out.",
		}, []string{"backend"}),
	}
	for _, b := range set.All() {
		c.errors.WithLabelValues(b.Name())
	}
	m.reg.MustRegister(c)
}

type volumeCounts struct{ created, attached, staged int }

type volumeCollector struct {
	set    *backends.Set
	opt    VolumeOptions
	now    func() time.Time
	desc   *prometheus.Desc
	errors *prometheus.CounterVec

	mu     sync.Mutex // one count at a time; never held while a scraper reads
	at     time.Time
	counts map[string]volumeCounts // by backend; missing when List failed
}

func (c *volumeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	c.errors.Describe(ch)
}

// Collect counts first and then reports the error counter itself: the
// registry collects its collectors concurrently, so a counter registered on
// its own could be read before this scrape's failed List was counted.
func (c *volumeCollector) Collect(ch chan<- prometheus.Metric) {
	for name, n := range c.current() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n.created), name, "created")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n.attached), name, "attached")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n.staged), name, "staged")
	}
	c.errors.Collect(ch)
}

// current returns counts no older than MaxAge, listing again when needed.
func (c *volumeCollector) current() map[string]volumeCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts != nil && c.now().Sub(c.at) < c.opt.MaxAge {
		return c.counts
	}
	counts := make(map[string]volumeCounts)
	for _, b := range c.set.All() {
		ctx, cancel := context.WithTimeout(context.Background(), c.opt.Timeout)
		vols, err := b.List(ctx)
		cancel()
		if err != nil {
			c.errors.WithLabelValues(b.Name()).Inc()
			continue
		}
		var n volumeCounts
		for _, v := range vols {
			n.created++
			if len(v.Attachments) > 0 {
				n.attached++
			}
			for _, a := range v.Attachments {
				if a.Connected {
					n.staged++
					break
				}
			}
		}
		counts[b.Name()] = n
	}
	c.counts, c.at = counts, c.now()
	return counts
}
