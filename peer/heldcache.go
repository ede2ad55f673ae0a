package peer

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drepo-dev/drepo/manifests"
)

// What the peer server knows of its store for discovery answers, probes and /v1/status,
// kept current by looking again at most every heldTTL (a blob), statusTTL (the status)
// or when index.json changes (its serial), not once per datagram or request: a flood of
// questions costs a bounded amount of disk and CPU whatever it asks. Serving a blob
// reads the store afresh (blobView), since the bytes must be right, not just recent.

// heldTTL is how stale an answer about one blob may be: a LAN's growth measurements
// (Policy.Sample, 2 s) do not notice.
const (
	heldTTL   = 100 * time.Millisecond
	statusTTL = time.Second
)

// heldCache is the cached view of the store; zero value ready.
type heldCache struct {
	mu     sync.Mutex
	blobs  map[manifests.Hash]heldEntry
	index  indexEntry
	status Status
	statAt time.Time
	looks  atomic.Int64 // looks at the store (tests count them)
}

type heldEntry struct {
	complete bool
	held     int64
	ok       bool
	at       time.Time
}

type indexEntry struct {
	size   int64
	mtime  time.Time
	serial uint64
	at     time.Time
}

// holding is what discovery answers of blob h: complete, or the verified bytes of a
// partial a fetch holds; ok false when not announced. Cached for heldTTL.
func (s *Server) holding(h manifests.Hash, now time.Time) (complete bool, held int64, ok bool) {
	c := &s.cache
	c.mu.Lock()
	e, hit := c.blobs[h]
	c.mu.Unlock()
	if hit && now.Sub(e.at) < heldTTL {
		return e.complete, e.held, e.ok
	}
	c.looks.Add(1)
	e = heldEntry{at: now}
	if v, ok := s.view(h); ok {
		e.complete, e.held, e.ok = v.held()
	}
	c.mu.Lock()
	if c.blobs == nil || len(c.blobs) >= maxKnown {
		c.blobs = map[manifests.Hash]heldEntry{}
	}
	c.blobs[h] = e
	c.mu.Unlock()
	return e.complete, e.held, e.ok
}

// serial is the serial of the index the store holds (0: none), decoded again only when
// index.json changed (size or mtime), and looked at no more than once a heldTTL.
func (s *Server) serial(now time.Time) uint64 {
	c := &s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.index.at) < heldTTL {
		return c.index.serial
	}
	c.index.at = now
	fi, err := os.Lstat(filepath.Join(s.Store.Dir(), "index.json"))
	if err != nil {
		c.index = indexEntry{at: now}
		return 0
	}
	if fi.Size() == c.index.size && fi.ModTime().Equal(c.index.mtime) {
		return c.index.serial
	}
	c.looks.Add(1)
	c.index = indexEntry{size: fi.Size(), mtime: fi.ModTime(), at: now}
	if doc, _ := s.Store.Index(); doc != nil {
		if x, err := manifests.DecodeIndex(doc); err == nil {
			c.index.serial = x.Serial
		}
	}
	return c.index.serial
}

// cachedStatus is status() at most statusTTL old.
func (s *Server) cachedStatus(now time.Time) Status {
	c := &s.cache
	c.mu.Lock()
	if !c.statAt.IsZero() && now.Sub(c.statAt) < statusTTL {
		st := c.status
		c.mu.Unlock()
		return st
	}
	c.mu.Unlock()
	c.looks.Add(1)
	st := s.status(now)
	c.mu.Lock()
	c.status, c.statAt = st, now
	c.mu.Unlock()
	return st
}
