package peer

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/drepo-dev/drepo/manifests"
)

// metrics are the peer server's Prometheus metrics, on a registry of its own (no globals).
// What fetch brought in is read from the store's stats.json, which every fetch updates.
type metrics struct {
	reg *prometheus.Registry
}

func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "drepo", Name: name, Help: help}, f))
	}
	counter("peer_bytes_served_total", "Blob bytes this peer sent to other devices.", func() float64 { return float64(s.served.Load()) })
	counter("peer_transfers_total", "Blob transfers this peer started.", func() float64 { return float64(s.transfers.Load()) })
	counter("peer_transfers_refused_busy_total", "Blob requests refused with 503 at limit_of_connections.", func() float64 { return float64(s.refused.Load()) })
	counter("peer_transfers_preempted_total", "Slow blob transfers cut to give their slot to another device (Policy.Preempt).", func() float64 { return float64(s.preempted.Load()) })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "drepo", Name: "peer_transfers_active", Help: "Blob transfers running now."},
		func() float64 { return float64(s.active.Load()) }))
	reg.MustRegister(&statsCollector{store: s.Store,
		delta:       prometheus.NewDesc("drepo_fetch_delta_bytes_total", "Delta bytes fetch downloaded (a part of drepo_fetch_bytes_total).", nil, nil),
		rebuilt:     prometheus.NewDesc("drepo_fetch_rebuilt_from_delta_bytes_total", "File bytes fetch rebuilt from deltas instead of downloading them.", nil, nil),
		lastAt:      prometheus.NewDesc("drepo_fetch_last_timestamp_seconds", "When the last fetch on this device ended, by its result (ok, failed, interrupted).", []string{"result"}, nil),
		lastOK:      prometheus.NewDesc("drepo_fetch_last_success_timestamp_seconds", "When a fetch on this device last succeeded.", nil, nil),
		lastSeconds: prometheus.NewDesc("drepo_fetch_last_duration_seconds", "How long the last fetch took.", nil, nil),
		held:        prometheus.NewDesc("drepo_store_app_version", "App versions the store holds (1), complete or partial.", []string{"app", "version", "state"}, nil),
		fetched:     prometheus.NewDesc("drepo_fetch_bytes_total", "Bytes fetch brought into the store, by source kind (repository, peer, local reuse).", []string{"source_kind"}, nil),
		bad:         prometheus.NewDesc("drepo_fetch_bad_chunks_total", "Chunks that did not match their hash, by source.", []string{"source"}, nil),
		sendErrs:    prometheus.NewDesc("drepo_discovery_send_errors_total", "Discovery requests fetches could not send (each a lost datagram; resends make up for it).", nil, nil)})
	return &metrics{reg: reg}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Stats are the store's running totals of what fetches brought in (stats.json).
type Stats struct {
	BytesByKind map[string]int64 `json:"bytes_by_kind"`
	BadChunks   map[string]int64 `json:"bad_chunks_by_source"`
	// DiscoverySendErrors counts discovery requests a fetch could not send (a full
	// neighbour table, a firewall): each is a lost datagram that the resends make up for.
	DiscoverySendErrors int64 `json:"discovery_send_errors"`
	// LastFetch is the last fetch's outcome; LastSuccess when a fetch last succeeded.
	LastFetch   *LastFetch `json:"last_fetch,omitempty"`
	LastSuccess int64      `json:"last_success,omitempty"`
	// DeltaBytes are the deltas fetched (also in BytesByKind, by where they came from);
	// RebuiltBytes the file bytes they rebuilt.
	DeltaBytes   int64 `json:"delta_bytes"`
	RebuiltBytes int64 `json:"rebuilt_from_delta_bytes"`
}

// LastFetch is how the last fetch on the device ended.
type LastFetch struct {
	App     string  `json:"app"`
	Version string  `json:"version"`
	Result  string  `json:"result"` // ok, failed, interrupted
	At      int64   `json:"at"`     // Unix seconds
	Seconds float64 `json:"seconds"`
}

// statsMu serialises the read-modify-write of stats.json within one process; fetches
// hold the store lock, so processes do not race.
var statsMu sync.Mutex

// addStats adds a fetch's totals to the store's stats.json (atomically replaced).
func (s *Store) addStats(byKind map[string]int64, bad map[string]int64, sendErrors int64, last *LastFetch, delta, rebuilt int64) error {
	statsMu.Lock()
	defer statsMu.Unlock()
	st := s.Stats()
	st.DeltaBytes += delta
	st.RebuiltBytes += rebuilt
	if last != nil {
		st.LastFetch = last
		if last.Result == "ok" {
			st.LastSuccess = last.At
		}
	}
	st.DiscoverySendErrors += sendErrors
	for k, v := range byKind {
		st.BytesByKind[k] += v
	}
	for k, v := range bad {
		st.BadChunks[k] += v
	}
	b, _ := json.Marshal(st)
	return manifests.WriteFileAtomic(filepath.Join(s.dir, "stats.json"), b, storeFileMode)
}

// Stats reads stats.json (zero if missing or damaged: these are counters, not trust).
func (s *Store) Stats() Stats {
	st := Stats{BytesByKind: map[string]int64{}, BadChunks: map[string]int64{}}
	if b, err := readBounded(filepath.Join(s.dir, "stats.json"), 1<<20); err == nil {
		_ = json.Unmarshal(b, &st)
	}
	if st.BytesByKind == nil {
		st.BytesByKind = map[string]int64{}
	}
	if st.BadChunks == nil {
		st.BadChunks = map[string]int64{}
	}
	return st
}

type statsCollector struct {
	store                             *Store
	fetched, bad, sendErrs            *prometheus.Desc
	lastAt, lastOK, lastSeconds, held *prometheus.Desc
	delta, rebuilt                    *prometheus.Desc
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.fetched, c.bad, c.sendErrs, c.lastAt, c.lastOK, c.lastSeconds, c.held, c.delta, c.rebuilt} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.store.Stats()
	for _, kind := range []string{KindRepository, KindPeer, KindLocal} {
		ch <- prometheus.MustNewConstMetric(c.fetched, prometheus.CounterValue, float64(st.BytesByKind[kind]), kind)
	}
	ch <- prometheus.MustNewConstMetric(c.sendErrs, prometheus.CounterValue, float64(st.DiscoverySendErrors))
	ch <- prometheus.MustNewConstMetric(c.delta, prometheus.CounterValue, float64(st.DeltaBytes))
	ch <- prometheus.MustNewConstMetric(c.rebuilt, prometheus.CounterValue, float64(st.RebuiltBytes))
	for src, n := range st.BadChunks {
		ch <- prometheus.MustNewConstMetric(c.bad, prometheus.CounterValue, float64(n), src)
	}
	if l := st.LastFetch; l != nil {
		ch <- prometheus.MustNewConstMetric(c.lastAt, prometheus.GaugeValue, float64(l.At), l.Result)
		ch <- prometheus.MustNewConstMetric(c.lastSeconds, prometheus.GaugeValue, l.Seconds)
	}
	if st.LastSuccess > 0 {
		ch <- prometheus.MustNewConstMetric(c.lastOK, prometheus.GaugeValue, float64(st.LastSuccess))
	}
	vs, _ := c.store.Versions()
	for _, v := range vs {
		state := "partial"
		if v.Complete {
			state = "complete"
		}
		ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, 1, v.App, v.Version, state)
	}
}
