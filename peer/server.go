package peer

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drepo-dev/drepo/manifests"
	"golang.org/x/time/rate"
)

// Server serves a device's store to other devices, read-only:
//
//	GET /v1/index                      the last accepted index (also /v1/index.json)
//	GET /v1/index.minisig              its signature (also /v1/index.json.minisig and
//	                                   /v1/signatures/<sha256 of the index>.minisig)
//	GET /v1/blobs/sha256/<h>           a blob, with Range; a blob still arriving is served
//	                                   as its chunks are verified
//	GET /v1/status                     JSON: what it holds, transfers, counters
//	HEAD /v1/probe/sha256/<h>          200 if a transfer of h would start now (a free
//	                                   slot, or a slow transfer Preempt would cut), else 503
//	GET /metrics                       Prometheus text format
//
// At most Limit blob transfers run at once; the next request gets 503 with Retry-After.
// Index, status and metrics requests do not count. Nothing a client sends names a path:
// a blob is looked up by its parsed hash only.
type Server struct {
	Store *Store
	// Limit is limit_of_connections (default 1).
	Limit int
	// WaitAhead bounds how long a range just beyond the verified chunks of a blob still
	// arriving waits for them (default 10 s).
	WaitAhead time.Duration
	Log       *slog.Logger
	// HTTPPort and HTTPSPort are what discovery answers carry (set by Run).
	HTTPPort, HTTPSPort int
	// CompleteOnly serves and announces complete blobs only: the whole-file cascade other
	// tools do (for comparison; off by default).
	CompleteOnly bool
	// Policy decides when a slow transfer gives its slot to another device (nil:
	// DefaultPolicy).
	Policy *Policy
	// SendWait is how long one write of a transfer (sendPiece bytes at most) may take
	// (default 30 s): a client that stops reading frees its slot within it.
	SendWait time.Duration
	// SendLimit bounds what the server sends, over all its transfers (nil: none;
	// dav.NewLimiter): peer --bwlimit.
	SendLimit *rate.Limiter

	once      sync.Once
	runMu     sync.Mutex
	running   map[*transfer]struct{}
	clients   map[string]knownClient        // by client host: its last transfer's rate (Preempt)
	link      rateMax                       // the best rate this device showed lately: sending, or its own download
	growth    map[manifests.Hash]heldSample // how fast its own fetch verifies each partial blob
	preempted atomic.Int64
	slots     chan struct{}
	active    atomic.Int64
	maxActive atomic.Int64
	served    atomic.Int64
	refused   atomic.Int64
	transfers atomic.Int64
	metrics   *metrics
	cache     heldCache // what discovery, probes and status read (heldcache.go)
}

func (s *Server) init() {
	s.once.Do(func() {
		if s.Limit < 1 {
			s.Limit = 1
		}
		if s.WaitAhead <= 0 {
			s.WaitAhead = 10 * time.Second
		}
		if s.SendWait <= 0 {
			s.SendWait = 30 * time.Second
		}
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
		s.slots = make(chan struct{}, s.Limit)
		s.running = map[*transfer]struct{}{}
		s.clients = map[string]knownClient{}
		s.growth = map[manifests.Hash]heldSample{}
		s.metrics = newMetrics(s)
	})
}

// FreeSlots is how many transfers the server would accept now.
func (s *Server) FreeSlots() int {
	s.init()
	return s.Limit - len(s.slots)
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler {
	s.init()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/index", s.serveIndex)
	mux.HandleFunc("GET /v1/index.json", s.serveIndex)
	mux.HandleFunc("GET /v1/index.minisig", s.serveSig)
	mux.HandleFunc("GET /v1/index.json.minisig", s.serveSig)
	mux.HandleFunc("GET /v1/signatures/{name}", s.serveSig)
	mux.HandleFunc("GET /v1/blobs/sha256/{hash}", s.serveBlob)
	mux.HandleFunc("GET /v1/blobs/sha256/{prefix}/{hash}", s.serveBlob) // the repository layout
	mux.HandleFunc("GET /v1/status", s.serveStatus)
	mux.HandleFunc("HEAD /v1/probe/sha256/{hash}", s.serveProbe)
	mux.Handle("GET /metrics", s.metrics.handler())
	return logRequests(s.Log, mux)
}

func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	doc, _ := s.Store.Index()
	if doc == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	http.ServeContent(w, r, "index.json", time.Time{}, strings.NewReader(string(doc)))
}

func (s *Server) serveSig(w http.ResponseWriter, r *http.Request) {
	doc, sig := s.Store.Index()
	if sig == nil {
		http.NotFound(w, r)
		return
	}
	if name := r.PathValue("name"); name != "" && name != manifests.SumBytes(doc).String()+".minisig" {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, "index.json.minisig", time.Time{}, strings.NewReader(string(sig)))
}

// Status is what GET /v1/status answers.
type Status struct {
	Complete           int             `json:"complete_blobs"`
	Partial            []PartialStatus `json:"partial_blobs"`
	Serial             uint64          `json:"index_serial"`
	Limit              int             `json:"limit_of_connections"`
	TransfersActive    int64           `json:"transfers_active"`
	TransfersMaxActive int64           `json:"transfers_max_active"` // the most at once since start
	Transfers          int64           `json:"transfers_total"`
	RefusedBusy        int64           `json:"refused_busy_total"`
	PreemptedSlow      int64           `json:"preempted_slow_total"` // slow transfers cut to give their slot to another device
	BytesServed        int64           `json:"bytes_served_total"`
}

// PartialStatus is one blob still arriving.
type PartialStatus struct {
	Blob     manifests.Hash `json:"blob"`
	Size     int64          `json:"size"`
	Verified int64          `json:"verified_bytes"`
}

func (s *Server) status(now time.Time) Status {
	st := Status{Limit: s.Limit, TransfersActive: s.active.Load(), TransfersMaxActive: s.maxActive.Load(),
		Transfers: s.transfers.Load(), RefusedBusy: s.refused.Load(), PreemptedSlow: s.preempted.Load(), BytesServed: s.served.Load(), Partial: []PartialStatus{}}
	if ents, err := os.ReadDir(filepath.Join(s.Store.Dir(), "blobs", "sha256")); err == nil {
		st.Complete = len(ents)
	}
	for _, h := range s.Store.partialHashes() {
		if v, err := s.Store.view(h); err == nil && !v.complete {
			st.Partial = append(st.Partial, PartialStatus{Blob: h, Size: v.st.Size, Verified: v.st.VerifiedBytes()})
		}
	}
	st.Serial = s.serial(now)
	return st
}

func (s *Server) serveStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(s.cachedStatus(time.Now()))
}

// view is what the store holds of blob h, or false (nothing, a stale empty partial,
// or CompleteOnly and not complete). It learns this device's own download rate on the way.
func (s *Server) view(h manifests.Hash) (*blobView, bool) {
	v, err := s.Store.view(h)
	if err != nil {
		if !errors.Is(err, errNotHeld) {
			s.Log.Warn("a partial blob's state does not read", "blob", h, "err", err)
		}
		return nil, false
	}
	if s.CompleteOnly && !v.complete {
		return nil, false
	}
	_, held, ok := v.held()
	if ok && !v.complete {
		s.observeGrowth(h, held, time.Now())
	}
	return v, ok
}

// logRequests writes one line per request at debug level.
func logRequests(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h.ServeHTTP(w, r)
		log.Debug("request", "method", r.Method, "path", manifests.Printable(r.URL.Path), "remote", r.RemoteAddr, "duration_ms", time.Since(start).Milliseconds())
	})
}
