package peer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror"
)

// PeerGroup is the LAN's peers as one fetch source: for each thing a fetch needs (the
// index, a manifest, a blob) it asks by discovery who has it and tries those that answer,
// best first. Peers are untrusted transport: their bytes are checked like a repository's,
// and an index from a peer needs a trusted signature even with allow_unsigned.
type PeerGroup struct {
	Targets  []*net.UDPAddr // broadcast addresses and static peers
	Instance uint64         // this device's store instance (its own answers are ignored)
	Wait     time.Duration  // how long answers are collected (default 250 ms for a blob, 100 ms for an index or manifest: a LAN answers in milliseconds)
	Stall    time.Duration  // as for repositories
	// Settle, when set, makes a fetch that found no peer holding something wait a random
	// time up to Settle and ask once more before it goes to the sources after the peers:
	// devices that start together then mostly find the one that started first, and the
	// WAN carries the bytes once. Set when peers come before a repository.
	Settle time.Duration
	// Patience, when set, makes a fetch wait for the LAN: while peers hold a blob, or are
	// fetching it, but none has a free transfer slot, the sources after the peers (the
	// WAN) are left alone for up to Patience from when the fetch began to look for that
	// part of the blob; the fetch waits its turn for a peer instead (every peer serves
	// limit_of_connections transfers at a time, so a LAN fills as a tree, each device
	// serving what it is still receiving). Set when peers come before a repository.
	Patience time.Duration
}

// DefaultPatience is PeerGroup.Patience when peers come before a repository.
const DefaultPatience = time.Minute

// Source is the group as a fetch source.
func (g *PeerGroup) Source(priority int) Source {
	return Source{Name: "peers", Kind: KindPeer, Priority: priority, group: g}
}

// candidates asks who has what q names and returns them as sources, ranked: complete
// before partial, more verified bytes first, only those with a free transfer slot, random
// among equals (to spread load).
func (g *PeerGroup) candidates(ctx context.Context, q Query) (peers []Source, allBusy bool, err error) {
	q.Instance = g.Instance
	wait := g.Wait
	switch {
	case wait > 0:
	case q.Kind == KindBlob:
		wait = 250 * time.Millisecond
	default:
		// an index or a manifest: one answer will do, and an answer missed costs only a few
		// KB from the repository, while every device of a LAN that starts together waits it
		wait = 100 * time.Millisecond
	}
	found, err := Discover(ctx, q, g.Targets, wait)
	if err != nil {
		return nil, false, err
	}
	var usable []Found
	for _, f := range found {
		// a peer that holds nothing yet is only starting too: of two such devices the one
		// with the lower instance id leads (fetches from the sources after the peers) and
		// the other follows it, so none waits on another that waits on it
		if q.Kind == KindBlob && f.Held == 0 && !f.Complete && f.Instance > g.Instance {
			continue
		}
		if f.FreeSlots > 0 {
			usable = append(usable, f)
		}
	}
	rand.Shuffle(len(usable), func(i, j int) { usable[i], usable[j] = usable[j], usable[i] })
	slices.SortStableFunc(usable, func(a, b Found) int {
		switch {
		case a.Complete != b.Complete:
			if a.Complete {
				return -1
			}
			return 1
		case a.Held != b.Held:
			if a.Held > b.Held {
				return -1
			}
			return 1
		}
		return 0
	})
	var out []Source
	for _, f := range usable {
		host := net.JoinHostPort(f.IP.String(), strconv.Itoa(int(f.HTTPPort)))
		r, err := mirror.OpenReader(mirror.Repository{Name: "peer " + host, URL: "http://" + host + "/v1/"}, 1)
		if err != nil {
			continue
		}
		r.Stall = g.Stall
		out = append(out, Source{Name: "peer " + host, Kind: KindPeer, Reader: r, BlobName: manifests.BlobPath})
	}
	return out, len(usable) == 0 && slices.ContainsFunc(found, func(f Found) bool {
		return f.FreeSlots == 0 && (q.Kind != KindBlob || f.Held > 0 || f.Complete || f.Instance < g.Instance)
	}), nil
}

// foundPeers is a discovery result the fetch keeps for a while.
type foundPeers struct {
	at    time.Time
	peers []Source
	held  bool // a blob some peer holds or is fetching, free slot or not
}

// rediscoverAfter: a fetch asks again for the same thing after this long (peers that were
// partial hold more by then).
const rediscoverAfter = 5 * time.Second

// expand turns a source into the sources to try for q: itself, or the peers that answer,
// and whether the LAN holds a blob q names (see Patience).
func (f *fetcher) expand(ctx context.Context, s Source, q Query) ([]Source, bool) {
	if s.group == nil {
		return []Source{s}, false
	}
	if c, ok := f.found[q]; ok && time.Since(c.at) < rediscoverAfter {
		return c.peers, c.held
	}
	cands, busy, err := s.group.candidates(ctx, q)
	if err == nil && len(cands) == 0 && !busy && s.group.Settle > 0 && f.settle {
		select {
		case <-ctx.Done():
			return nil, false
		case <-time.After(rand.N(s.group.Settle)):
		}
		cands, busy, err = s.group.candidates(ctx, q)
	}
	if err != nil {
		f.sourceFailed(s, "discovery", err)
		return nil, false
	}
	held := q.Kind == KindBlob && (len(cands) > 0 || busy)
	f.found[q] = foundPeers{at: time.Now(), peers: cands, held: held}
	if len(cands) == 0 {
		f.sourceFailed(s, "discovery", fmt.Errorf("no peer with a free slot answered"))
		if busy {
			f.busy = true // peers hold it but are all busy: wait for one
		}
	}
	return cands, held
}
