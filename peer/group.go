package peer

import (
	"context"
	"crypto/tls"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror/dav"
)

// PeerGroup is the LAN's peers as one fetch source: for each thing a fetch needs (the
// index, a manifest, a blob) it asks by discovery who has it, and the fetch's Policy picks
// among those that answer. Peers are untrusted transport: their bytes are checked like a
// repository's, and an index from a peer needs a trusted signature even with allow_unsigned.
type PeerGroup struct {
	Targets []*net.UDPAddr // broadcast addresses and static peers
	// Static are the static peers' discovery addresses (in Targets too): the admin named
	// them, so their answers are followed to the HTTP port they give. Any other answer is
	// followed only to its own source address and HTTPPort (follow).
	Static []*net.UDPAddr
	// HTTPPort is peers.http_port, the same on every device (0: any port; tests).
	HTTPPort int
	// TLS, when set (peers.ca_cert: FleetClientTLS), makes the group read peers only over
	// HTTPS, on the port an answer gives as its HTTPS port (HTTPSPort, as HTTPPort above),
	// from peers whose certificate chains to the fleet's CA.
	TLS       *tls.Config
	HTTPSPort int
	Instance  uint64        // this device's store instance (its own answers are ignored)
	Wait      time.Duration // how long answers are collected (default 250 ms for a blob, 100 ms for an index or manifest: a LAN answers in milliseconds)
	Stall     time.Duration // as for repositories
	// Settle, when set, makes a fetch that found no peer holding a blob wait a random
	// time up to Settle and ask once more before it goes to the sources after the peers:
	// devices that start together then mostly find the one that started first, and the
	// WAN carries the bytes once. Set when peers come before a repository.
	Settle time.Duration
	// Patience, when set, makes a fetch wait for the LAN while Policy.WaitForLAN says so
	// (a peer ahead of it, verified progress within Policy.Idle), for at most
	// Policy.MaxWait per blob: every peer serves limit_of_connections transfers at a
	// time, so a LAN fills as chains, each device serving what it is still receiving.
	// Set when peers come before a repository.
	Patience bool
	// Policy decides which peer, when to leave a slow one and how long to wait
	// (zero: DefaultPolicy).
	Policy *Policy
	Log    *slog.Logger // debug lines about discovery (nil: none)

	mu         sync.Mutex
	recent     map[string]recentPeer // discovery addresses that answered lately
	sendErrors atomic.Int64
	transport  http.RoundTripper // one pool of connections for every peer (peerTransport)
}

// recentPeer is a peer that answered discovery lately: it is asked by unicast too, so a
// lost broadcast does not hide it.
type recentPeer struct {
	addr *net.UDPAddr
	at   time.Time
}

// rememberPeers: how long a peer that answered is asked by unicast as well; at most
// maxRecent are kept.
const (
	rememberPeers = 10 * time.Minute
	maxRecent     = 256
)

// Source is the group as a fetch source.
func (g *PeerGroup) Source(priority int) Source {
	return Source{Name: "peers", Kind: KindPeer, Priority: priority, group: g}
}

// policy is the group's policy.
func (g *PeerGroup) policy() Policy {
	if g.Policy != nil {
		return *g.Policy
	}
	return DefaultPolicy
}

// SendErrors is how many discovery datagrams could not be sent since the group was made.
func (g *PeerGroup) SendErrors() int64 { return g.sendErrors.Load() }

// discover asks who has what q names: the targets and the peers heard lately, the request
// sent again within the wait (DiscoveryResends), so one lost datagram loses no answer.
// small: q is an index or a manifest.
func (g *PeerGroup) discover(ctx context.Context, q Query, small bool) ([]Found, error) {
	q.Instance = g.Instance
	wait := g.Wait
	switch {
	case wait > 0:
	case small:
		// an index or a manifest: one answer will do, and an answer missed costs only a few
		// KB from the repository, while every device of a LAN that starts together waits it
		wait = 100 * time.Millisecond
	default:
		wait = 250 * time.Millisecond
	}
	found, errs, err := Discover(ctx, q, g.Targets, g.recentPeers(time.Now()), wait, DiscoveryResends(wait, rand.New(rand.NewPCG(rand.Uint64(), 0))))
	if errs > 0 {
		g.sendErrors.Add(int64(errs))
		if g.Log != nil {
			g.Log.Debug("discovery requests could not be sent (lost; the resends make up for them)", "count", errs, "answers", len(found))
		}
	}
	if err != nil {
		return nil, err
	}
	found = slices.DeleteFunc(found, func(f Found) bool { return !g.follow(f) })
	g.remember(found, time.Now())
	return found, nil
}

// recentPeers are the peers heard within rememberPeers.
func (g *PeerGroup) recentPeers(now time.Time) []*net.UDPAddr {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*net.UDPAddr
	for k, r := range g.recent {
		if now.Sub(r.at) > rememberPeers {
			delete(g.recent, k)
			continue
		}
		out = append(out, r.addr)
	}
	return out
}

// remember keeps the discovery address of every peer that answered.
func (g *PeerGroup) remember(found []Found, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.recent == nil {
		g.recent = map[string]recentPeer{}
	}
	for _, f := range found {
		if f.From == nil {
			continue
		}
		if len(g.recent) >= maxRecent {
			break
		}
		g.recent[f.From.IP.String()] = recentPeer{addr: f.From, at: now} // one per host
	}
}

// Bounds on what a LAN can make a fetch hold: connections kept idle to peers in all and
// per peer, and how long a peer may take to begin an answer (a peer server answers at
// once, or within firstChunkWait with 503).
const (
	peerIdleConns    = 16
	peerConnsPerHost = 2
	peerAnswer       = firstChunkWait + time.Second
)

// peerTransport is the one transport of the group's peer sources: however many peers
// answer, the fetch holds at most peerConnsPerHost connections to each and
// peerIdleConns idle in all, and a peer that accepts and never answers costs peerAnswer.
func (g *PeerGroup) peerTransport() http.RoundTripper {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.transport == nil {
		d := &net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}
		g.transport = &http.Transport{
			DialContext:           d.DialContext,
			TLSClientConfig:       g.TLS,
			TLSHandshakeTimeout:   3 * time.Second,
			ResponseHeaderTimeout: peerAnswer,
			MaxIdleConns:          peerIdleConns,
			MaxIdleConnsPerHost:   peerConnsPerHost,
			MaxConnsPerHost:       peerConnsPerHost,
			IdleConnTimeout:       30 * time.Second,
			WriteBufferSize:       64 << 10,
			ReadBufferSize:        256 << 10,
		}
	}
	return g.transport
}

// follow reports whether the fetch may send an HTTP request where an answer points: to
// the answer's own source address (Found.IP always is), and to HTTPPort unless the answer
// came from a static peer. A forged answer so cannot aim a device's requests at another
// port of a LAN host, nor at all at a host off the LAN (onLink).
func (g *PeerGroup) follow(f Found) bool {
	static := f.From != nil && slices.ContainsFunc(g.Static, func(a *net.UDPAddr) bool { return a.IP.Equal(f.From.IP) && a.Port == f.From.Port })
	if g.TLS != nil && f.HTTPSPort == 0 {
		return false // no HTTPS: not a peer of an authenticated fleet
	}
	if static {
		return true
	}
	port, want := int(f.HTTPPort), g.HTTPPort
	if g.TLS != nil {
		port, want = int(f.HTTPSPort), g.HTTPSPort
	}
	if want != 0 && port != want {
		return false
	}
	return onLink(f.IP)
}

// onLink reports whether ip is this host's loopback or on one of its interfaces' subnets
// (as they were within the last linkTTL: a device's addresses change rarely, its
// discovery answers arrive many times a second).
func onLink(ip net.IP) bool {
	if ip.IsLoopback() {
		return true
	}
	links.mu.Lock()
	if time.Since(links.at) > linkTTL {
		var nets []*net.IPNet // a new slice: callers may still read the old one
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				nets = append(nets, n)
			}
		}
		links.nets, links.at = nets, time.Now()
	}
	nets := links.nets
	links.mu.Unlock()
	return slices.ContainsFunc(nets, func(n *net.IPNet) bool { return n.Contains(ip) })
}

// links are this host's interface subnets, looked up at most once a linkTTL.
var links struct {
	mu   sync.Mutex
	nets []*net.IPNet
	at   time.Time
}

const linkTTL = 10 * time.Second

// peerKey is what identifies a peer for bans, limits and its one source: its address,
// not address and port (one host answering on many ports is one peer).
func peerKey(ip net.IP) string { return "peer " + ip.String() }

// peerSource is the HTTP source of a peer that answered; the fetch keeps one per address.
func (g *PeerGroup) peerSource(f Found, stall time.Duration) (Source, error) {
	scheme, port := "http", f.HTTPPort
	if g.TLS != nil {
		scheme, port = "https", f.HTTPSPort
	}
	host := net.JoinHostPort(f.IP.String(), strconv.Itoa(int(port)))
	r, err := dav.OpenReaderOn(dav.Repository{Name: "peer " + host, URL: scheme + "://" + host + "/v1/", SmallTimeout: peerAnswer}, g.peerTransport())
	if err != nil {
		return Source{}, err
	}
	r.Stall = stall
	return Source{Name: "peer " + host, Kind: KindPeer, Reader: r, BlobName: manifests.BlobPath, instance: f.Instance, key: peerKey(f.IP)}, nil
}
