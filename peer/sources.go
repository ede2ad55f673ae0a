package peer

import (
	"fmt"
	"slices"
	"time"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror/dav"
)

// Source kinds, as reports and metrics name them.
const (
	KindRepository = "repository"
	KindPeer       = "peer"
	KindLocal      = "local"
)

// Source is one place a device reads from, in the order it is tried. Any failure moves
// the fetch to the next source; a source is untrusted transport, its bytes checked by hash.
type Source struct {
	Name     string
	Kind     string
	Priority int
	Reader   dav.Reader
	// BlobName is where blob h is in this source's namespace.
	BlobName func(h manifests.Hash) string

	group    *PeerGroup // the LAN's peers, found by discovery for each need
	instance uint64     // a peer's instance id (0: a repository)
	key      string     // a peer's identity for bans (peerKey); a repository's is its Name
}

// id is what bans and failures are kept by: a peer's address, a repository's name.
func (s Source) id() string {
	if s.key != "" {
		return s.key
	}
	return s.Name
}

// WithPeers places the peer group among the sources: after every repository, or, with a
// priority, before the repositories of lower priority.
func WithPeers(sources []Source, peers Source, priority *int) []Source {
	if priority == nil {
		return append(slices.Clone(sources), peers)
	}
	peers.Priority = *priority
	i := slices.IndexFunc(sources, func(s Source) bool { return s.Priority < *priority })
	if i < 0 {
		i = len(sources)
	}
	return slices.Insert(slices.Clone(sources), i, peers)
}

// Skip is a configured source that a fetch will not use, and why.
type Skip struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// PlanSources orders the repositories as a device uses them (dav.DeviceOrder: priority
// high to low, equal ones shuffled) and says why the others are skipped. A staging
// repository (negative priority) is never contacted. stall bounds how long a transfer may
// crawl before the next source is tried.
func PlanSources(repos []dav.Repository, stall time.Duration) ([]Source, []Skip) {
	var skips []Skip
	for _, r := range repos {
		if r.Staging() {
			skips = append(skips, Skip{Name: r.Name, Reason: fmt.Sprintf("priority %d: staging, never used by devices", r.Priority)})
		}
	}
	var out []Source
	for _, r := range dav.DeviceOrder(repos) {
		h, err := dav.OpenReader(r, 1)
		if err != nil {
			skips = append(skips, Skip{Name: r.Name, Reason: err.Error()})
			continue
		}
		h.Stall = stall
		out = append(out, Source{Name: r.Name, Kind: KindRepository, Priority: r.Priority, Reader: h, BlobName: manifests.BlobPath})
	}
	return out, skips
}
