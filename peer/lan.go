package peer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/drepo-dev/drepo/manifests"
)

// lanMemory is what one fetch learned of the LAN's peers: one HTTP source per address
// (kept for the run, so asking again dials no new transport), each peer's held bytes of a
// blob over time (its growth: how fast it downloads), and the rate each delivered to this
// fetch. Measurements only; the Policy decides.
type lanMemory struct {
	mu      sync.Mutex
	sources map[string]Source // by peerKey
	held    map[peerBlob]heldSample
	rates   map[uint64]float64 // verified bytes per second delivered, by instance
	proven  map[string]bool    // peers (peerKey) that delivered verified bytes in this run
	failed  map[string]bool    // peers whose attempt failed (not busy) before they delivered
}

// maxLANSources bounds the peer sources one fetch keeps (one per address).
const maxLANSources = 256

type peerBlob struct {
	id   uint64
	blob manifests.Hash
}

type heldSample struct {
	held     int64
	at       time.Time
	growth   float64
	measured bool
}

// growthAfter: two answers this far apart or more give a peer's growth (the policy's
// Sample: a peer that verifies a chunk every few seconds shows its pace only over a while).
const growthAfter = 2 * time.Second

// cands turns discovery answers for a blob into the policy's view, learning growth.
func (m *lanMemory) cands(found []Found, q Query, now time.Time, banned func(Found) bool) []Cand {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.held == nil {
		m.held = map[peerBlob]heldSample{}
	}
	out := make([]Cand, 0, len(found))
	for _, fd := range found {
		// a peer that answers for an index holds all of it
		k := peerKey(fd.IP)
		c := Cand{ID: fd.Instance, Complete: fd.Complete || q.Kind == KindIndex, Held: fd.Held, Free: fd.FreeSlots > 0, Rate: m.rates[fd.Instance], Banned: banned(fd),
			Proven: m.proven[k], Failed: m.failed[k] && !m.proven[k]}
		if q.Kind == KindBlob && !fd.Complete {
			k := peerBlob{fd.Instance, q.Blob}
			s, ok := m.held[k]
			switch {
			case !ok || fd.Held < s.held:
				s = heldSample{held: fd.Held, at: now}
			case now.Sub(s.at) >= growthAfter:
				s = heldSample{held: fd.Held, at: now, growth: float64(fd.Held-s.held) / now.Sub(s.at).Seconds(), measured: true}
			}
			m.held[k] = s
			c.Growth, c.Measured = s.growth, s.measured
		}
		out = append(out, c)
	}
	return out
}

// rate records what a source delivered to this fetch (a newer measurement replaces the old).
func (m *lanMemory) rate(id uint64, r float64) {
	if id == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rates == nil {
		m.rates = map[uint64]float64{}
	}
	m.rates[id] = r
}

// source returns the fetch's source for a peer that answered: one per address for the
// run (a new port or instance at the address replaces it), at most maxLANSources.
func (m *lanMemory) source(g *PeerGroup, fd Found, stall time.Duration) (Source, error) {
	k := peerKey(fd.IP)
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := g.peerSource(fd, stall)
	if err != nil {
		return s, err
	}
	if old, ok := m.sources[k]; ok && old.instance == fd.Instance && old.Name == s.Name {
		return old, nil
	}
	if m.sources == nil || len(m.sources) >= maxLANSources {
		m.sources = map[string]Source{}
	}
	m.sources[k] = s
	return s, nil
}

// isProven reports whether the peer s delivered verified bytes in this run.
func (m *lanMemory) isProven(s Source) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proven[s.id()]
}

// provenAt reports whether the peer at ip delivered verified bytes in this run.
func (m *lanMemory) provenAt(ip net.IP) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proven[peerKey(ip)]
}

// outcome records how an attempt on a peer ended: verified bytes make it proven; a
// failure before any (not a busy answer) makes it failed, no holder for this run.
func (m *lanMemory) outcome(s Source, verified bool, busy bool) {
	if s.Kind != KindPeer {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proven == nil {
		m.proven, m.failed = map[string]bool{}, map[string]bool{}
	}
	switch {
	case verified:
		m.proven[s.id()] = true
	case !busy && len(m.failed) < maxLANSources:
		m.failed[s.id()] = true
	}
}

// blobWant is one blob's fetch as the source rounds see it: the partial blob, its LAN
// wait and the peer that Policy.Leave chose. Owned by the blob's loop and passed down.
type blobWant struct {
	p *Partial
	// delta: the blob is a delta (fetchDelta): its bytes count as delta bytes, not as the
	// file's, and move no progress bar
	delta   bool
	wait    LANWait
	have    int64  // verified bytes at the last look
	settled bool   // the settle wait was taken
	prefer  []Cand // peers Leave chose: asked first in the next round, free slot or not
	// leftRate is the rate of the transfer last left (0: none pending); fruitless counts
	// leaves in a row that did not pay (Policy.Fruitful, Need.Fruitless)
	leftRate  float64
	fruitless int
}

// lanGroup is the fetch's peer group, nil without peers.
func (f *fetcher) lanGroup() *PeerGroup {
	for _, s := range f.opt.Sources {
		if s.group != nil {
			return s.group
		}
	}
	return nil
}

// settleRounds bounds the rounds a fetch asks again before it reads the WAN when nobody
// answered at all.
const settleRounds = 3

// lanSources asks the LAN for q and returns the peers to try, best first (Policy.Rank; a
// peer Leave chose first), and whether the fetch should wait for the LAN rather than go
// on to the sources after the peers (Policy.WaitForLAN; only for a file's blob, bw).
func (f *fetcher) lanSources(ctx context.Context, g *PeerGroup, group Source, q Query, bw *blobWant) (srcs []Source, wait bool) {
	pol := g.policy()
	found, err := g.discover(ctx, q, bw == nil)
	if err != nil {
		f.sourceFailed(group, "discovery", err) // as lost datagrams: asked again below
	}
	need := f.need()
	need.Self, need.WANDown = g.Instance, f.wanDown()
	if bw != nil {
		st := bw.p.State()
		need.Have, need.Chunk = st.VerifiedBytes(), st.ChunkSize
	}
	now := time.Now()
	cands := f.lan.cands(found, q, now, f.isBanned)
	if bw != nil && !bw.settled && need.Have == 0 && g.Settle > 0 && !pol.Spent(need) && !slices.ContainsFunc(pol.Counted(cands, need), func(c Cand) bool { return c.ahead(need) }) {
		// nobody ahead answered (or only peers that already failed this run): a device
		// that started a moment earlier (with a lower instance id) may not have announced
		// the blob yet, and no answer at all is not yet "nobody has it" (lost or late
		// datagrams): ask again after a random wait; while nobody answers at all, up to
		// settleRounds times, each wait a little longer. Leading at once when only devices
		// behind answered made three leaders of one LAN.
		bw.settled = true
		for round := 0; round < settleRounds && (round == 0 || len(found) == 0); round++ {
			select {
			case <-ctx.Done():
				return nil, false
			case <-time.After(rand.N(g.Settle) + time.Duration(round)*g.Settle/4):
			}
			if found, err = g.discover(ctx, q, false); err != nil {
				f.sourceFailed(group, "discovery", err)
			}
			now = time.Now()
			cands = f.lan.cands(found, q, now, f.isBanned)
		}
	}
	ranked := pol.Rank(cands, need, rand.New(rand.NewPCG(rand.Uint64(), 0)))
	if bw != nil && bw.prefer != nil {
		var first []Cand
		for _, p := range bw.prefer {
			for _, c := range cands {
				if c.ID == p.ID && c.ahead(need) {
					first = append(first, c)
				}
			}
		}
		ranked = append(first, ranked...)
		bw.prefer = nil
	}
	byID := map[uint64]Found{}
	for _, fd := range found {
		byID[fd.Instance] = fd
	}
	seen := map[uint64]bool{}
	for _, c := range ranked {
		if seen[c.ID] {
			continue
		}
		seen[c.ID] = true
		s, err := f.lan.source(g, byID[c.ID], g.Stall)
		if err == nil {
			srcs = append(srcs, s)
		}
		if bw == nil && len(srcs) == maxDocPeers {
			break
		}
	}
	if bw != nil {
		bw.wait = bw.wait.Observe(now, need.Have > bw.have, pol.Counted(cands, need), need)
		bw.have = need.Have
		wait = g.Patience && pol.WaitForLAN(now, bw.wait, cands, need)
	}
	if len(srcs) == 0 {
		why := "no peer ahead of this device with a free slot answered"
		if len(found) == 0 {
			why = "no peer answered"
		}
		f.sourceFailed(group, "discovery", errors.New(why))
	}
	return srcs, wait
}

// wanDown reports whether every source that is not the LAN refused the connection or
// could not be reached (or was banned) in this run: waiting for the LAN is all there is.
func (f *fetcher) wanDown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.opt.Sources {
		if s.group == nil && !f.down[s.id()] && !f.banned[s.id()] {
			return false
		}
	}
	return true
}

// maxDocPeers bounds the peers asked for an index or a manifest in one round: a few KB
// the repository has too, not worth more than a couple of peers' answer deadlines.
const maxDocPeers = 2

// isBanned reports whether a peer that answered was dropped for this run (by address).
func (f *fetcher) isBanned(fd Found) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := peerKey(fd.IP)
	return f.banned[k] || f.down[k]
}

// watchLeave runs beside a transfer from src while a LAN exists: every second after
// the policy's sample time it asks the LAN for the blob and, when Policy.Leave names peers
// ahead that are much faster, records them in bw.prefer and ends the transfer (cancel).
// The verified chunks stay; the next round asks those peers first. It returns when ctx ends.
func (f *fetcher) watchLeave(ctx context.Context, g *PeerGroup, src Source, q Query, bw *blobWant, started time.Time, delivered func() int64, cancel context.CancelCauseFunc) {
	pol := g.policy()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		if now.Sub(started) < pol.Sample {
			continue
		}
		t := Transfer{Source: src.instance, Started: started, Bytes: delivered()}
		f.lan.rate(src.instance, t.Rate(now))
		found, err := g.discover(ctx, q, false)
		if err != nil || ctx.Err() != nil {
			continue
		}
		st := bw.p.State()
		need := f.need()
		need.Self, need.Have, need.Chunk, need.Fruitless = g.Instance, st.VerifiedBytes(), st.ChunkSize, bw.fruitless
		cands := f.lan.cands(found, q, now, f.isBanned)
		if bw.leftRate > 0 {
			// the transfer after a leave: did the leave pay?
			if Fruitful(bw.leftRate, t.Rate(now)) {
				bw.fruitless = 0
			} else {
				bw.fruitless++
			}
			bw.leftRate = 0
		}
		var to []Cand
		for _, c := range pol.Leave(now, t, cands, need) {
			// make before break: a busy peer is asked first whether it would take this
			// device now (a slow transfer it would cut); the transfer goes on if none would
			if c.Free || f.probe(ctx, g, found, c.ID, q.Blob) {
				to = append(to, c)
			}
		}
		if to != nil {
			f.log.Info("leaving a slow source for faster peers", "source", src.Name, "rate_Bps", int64(t.Rate(now)), "peers", len(to), "first_busy", !to[0].Free)
			bw.prefer, bw.leftRate = to, t.Rate(now)
			cancel(fmt.Errorf("%w: %s delivered %d B/s", errLeft, src.Name, int64(t.Rate(now))))
			return
		}
	}
}

// probe asks the peer id whether it would start a transfer of blob h for this device now.
func (f *fetcher) probe(ctx context.Context, g *PeerGroup, found []Found, id uint64, h manifests.Hash) bool {
	for _, fd := range found {
		if fd.Instance != id {
			continue
		}
		s, err := f.lan.source(g, fd, g.Stall)
		if err != nil {
			return false
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err = s.Reader.Stat(pctx, "probe/sha256/"+h.String())
		return err == nil
	}
	return false
}

// errLeft ends a transfer the policy left for a faster peer; not a failure of the source.
var errLeft = errors.New("left for a faster peer")
