package peer

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drepo-dev/drepo/manifests"
)

// The peer server's transfer slots: at most Limit transfers at once. When a request finds
// every slot taken, the server asks Policy.Preempt whether a running transfer is far
// slower than this device's link; if so it cuts that one (its client keeps the verified
// chunks and asks elsewhere) and gives the slot to the newcomer. So a slow device does
// not hold a fast device's only slot while others wait behind it.

// transfer is one running blob transfer.
type transfer struct {
	client  string // the client's address (host)
	started time.Time
	sent    atomic.Int64
	waited  atomic.Int64 // nanoseconds spent waiting for chunks this device had not verified
	rc      *http.ResponseController
	wait    time.Duration // Server.SendWait
	isCut   atomic.Bool
	result  string // how it ended, for its log line (serveRange sets it)
}

// cut ends the response at once: a write deadline in the past (set after the flag, so a
// deadline extend sets meanwhile is either overwritten or sees the flag).
func (t *transfer) cut() {
	t.isCut.Store(true)
	_ = t.rc.SetWriteDeadline(time.Unix(1, 0))
}

// extend gives the next write of at most sendPiece bytes until now+wait to leave: a client
// that stops reading (or reads slower than sendPiece per wait) loses its slot then. false:
// the transfer was cut.
func (t *transfer) extend() bool {
	_ = t.rc.SetWriteDeadline(time.Now().Add(t.wait))
	return !t.isCut.Load()
}

// sendPiece is the most one write of a transfer sends under one deadline (extend).
const sendPiece = 1 << 20

// knownClient is the rate a client reached in its last transfer from this server.
type knownClient struct {
	rate float64
	at   time.Time
}

// maxKnown bounds the clients remembered (the table is cleared when full).
const maxKnown = 1024

// known returns what client reached here lately (0: nothing within rateMemory).
func (s *Server) known(client string, now time.Time) float64 {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	k, ok := s.clients[client]
	if !ok || now.Sub(k.at) > rateMemory {
		return 0
	}
	return k.rate
}

// rateMax is the best rate seen lately: a sample replaces it when higher, or when the
// last one is older than rateMemory.
type rateMax struct {
	mu   sync.Mutex
	rate float64
	at   time.Time
}

const rateMemory = time.Minute

func (m *rateMax) observe(r float64, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r > m.rate || now.Sub(m.at) > rateMemory {
		m.rate, m.at = r, now
	}
}

func (m *rateMax) get(now time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.at) > rateMemory {
		return 0
	}
	return m.rate
}

// A transfer gives a rate (for the link and the client's record) once it ran rateAfter
// and sent rateBytes.
const (
	rateAfter = 200 * time.Millisecond
	rateBytes = 1 << 20
)

// preemptWait bounds how long a newcomer waits for the slot of the transfer it preempted.
const preemptWait = 2 * time.Second

// acquire takes a transfer slot (preempting a slow transfer if the policy says so), or
// answers 503 with Retry-After.
func (s *Server) acquire(w http.ResponseWriter, r *http.Request) (*transfer, bool) {
	client := clientHost(r)
	select {
	case s.slots <- struct{}{}:
	default:
		if !s.preempt(client) {
			s.refused.Add(1)
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy: limit_of_connections reached", http.StatusServiceUnavailable)
			return nil, false
		}
		select {
		case s.slots <- struct{}{}:
		case <-time.After(preemptWait):
			s.refused.Add(1)
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy: limit_of_connections reached", http.StatusServiceUnavailable)
			return nil, false
		}
	}
	n := s.active.Add(1)
	for {
		m := s.maxActive.Load()
		if n <= m || s.maxActive.CompareAndSwap(m, n) {
			break
		}
	}
	s.transfers.Add(1)
	t := &transfer{client: client, started: time.Now(), rc: http.NewResponseController(w), wait: s.SendWait}
	s.runMu.Lock()
	s.running[t] = struct{}{}
	s.runMu.Unlock()
	return t, true
}

// serveProbe answers whether a transfer of the blob would start now: a fetch leaving a
// slow source asks before it lets go of it (make before break). Nothing is cut.
func (s *Server) serveProbe(w http.ResponseWriter, r *http.Request) {
	h, err := manifests.ParseHash(r.PathValue("hash"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if _, _, ok := s.holding(h, time.Now()); !ok {
		http.NotFound(w, r)
		return
	}
	if s.FreeSlots() > 0 || s.victim(clientHost(r)) != nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
}

// clientHost is the client's address without the port.
func clientHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// preempt cuts the transfer the policy names for client, if any.
func (s *Server) preempt(client string) bool {
	t := s.victim(client)
	if t == nil {
		return false
	}
	s.runMu.Lock()
	_, still := s.running[t]
	delete(s.running, t) // cut once
	s.runMu.Unlock()
	if !still {
		return false
	}
	s.preempted.Add(1)
	now := time.Now()
	s.Log.Info("a slow transfer gives its slot to another device", "client", t.client, "bytes", t.sent.Load(), "seconds", now.Sub(t.started).Seconds(), "link_Bps", int64(s.link.get(now)))
	t.cut()
	return true
}

// victim is the running transfer the policy would cut for client, nil if none.
func (s *Server) victim(client string) *transfer {
	now := time.Now()
	newcomer := s.known(client, now)
	s.runMu.Lock()
	defer s.runMu.Unlock()
	var ts []*transfer
	var views []Serving
	for t := range s.running {
		ts = append(ts, t)
		k := s.clients[t.client]
		if now.Sub(k.at) > rateMemory {
			k.rate = 0
		}
		views = append(views, Serving{Started: t.started, Bytes: t.sent.Load(), Waited: time.Duration(t.waited.Load()), Known: k.rate})
	}
	if i := s.policy().Preempt(now, views, s.link.get(now), newcomer); i >= 0 {
		return ts[i]
	}
	return nil
}

func (s *Server) release(t *transfer) {
	now := time.Now()
	d := now.Sub(t.started) - time.Duration(t.waited.Load())
	s.runMu.Lock()
	if d >= rateAfter && t.sent.Load() >= rateBytes {
		r := float64(t.sent.Load()) / d.Seconds()
		s.link.observe(r, now)
		if len(s.clients) >= maxKnown {
			clear(s.clients)
		}
		s.clients[t.client] = knownClient{rate: r, at: now}
	}
	delete(s.running, t)
	s.runMu.Unlock()
	s.active.Add(-1)
	<-s.slots
}

// policy is the server's policy.
func (s *Server) policy() Policy {
	if s.Policy != nil {
		return *s.Policy
	}
	return DefaultPolicy
}

// observeGrowth learns this device's own download rate from a partial blob's verified
// bytes over time: part of the link rate that Preempt compares transfers with.
func (s *Server) observeGrowth(h manifests.Hash, held int64, now time.Time) {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	old, ok := s.growth[h]
	if !ok || len(s.growth) >= maxKnown {
		if !ok && len(s.growth) >= maxKnown {
			clear(s.growth)
		}
		s.growth[h] = heldSample{held: held, at: now}
		return
	}
	if d := now.Sub(old.at); d >= rateAfter {
		if held > old.held {
			s.link.observe(float64(held-old.held)/d.Seconds(), now)
		}
		s.growth[h] = heldSample{held: held, at: now}
	}
}
