package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror/dav"
)

// liar is a hostile peer: a real UDP responder and real HTTP listeners on a loopback
// address of its own that misbehave on purpose. Every discovery request gets answers
// from instances instance ids, each "complete, a free slot" (or none, free 0), their
// HTTP ports rotating over the listeners; every HTTP request gets what mode says.
type liar struct {
	ip        string
	disco     *net.UDPAddr
	ports     []int
	instances int
	free      uint8
	mode      string
	gets      atomic.Int64 // HTTP requests received
	conns     atomic.Int64 // TCP connections accepted
	open      atomic.Int64 // TCP connections open now
	maxOpen   atomic.Int64
	turn      atomic.Int64
	aim       atomic.Int64 // set: every answer points at this port instead
}

// startLiar starts a liar with ports HTTP listeners; it stops with the test.
func startLiar(t *testing.T, mode string, instances, ports int, free uint8) *liar {
	t.Helper()
	l := &liar{ip: loopbackIP(), instances: instances, free: free, mode: mode}
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(l.ip)})
	if err != nil {
		t.Fatal(err)
	}
	l.disco = uc.LocalAddr().(*net.UDPAddr)
	for range ports {
		ln, err := net.Listen("tcp", l.ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		l.ports = append(l.ports, ln.Addr().(*net.TCPAddr).Port)
		srv := &http.Server{Handler: http.HandlerFunc(l.serveHTTP), ConnState: l.connState}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	go l.answer(uc)
	t.Cleanup(func() { uc.Close() })
	return l
}

func (l *liar) connState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		l.conns.Add(1)
		n := l.open.Add(1)
		for m := l.maxOpen.Load(); n > m && !l.maxOpen.CompareAndSwap(m, n); m = l.maxOpen.Load() {
		}
	case http.StateClosed, http.StateHijacked:
		l.open.Add(-1)
	}
}

// answer claims to hold whatever is asked, under many instance ids.
func (l *liar) answer(uc *net.UDPConn) {
	buf := make([]byte, 1024)
	for {
		n, from, err := uc.ReadFromUDP(buf)
		if err != nil {
			return
		}
		q, err := DecodeQuery(buf[:n])
		if err != nil {
			continue
		}
		for i := range l.instances {
			port := l.ports[int(l.turn.Add(1))%len(l.ports)]
			if p := l.aim.Load(); p != 0 {
				port = int(p)
			}
			a := Answer{Instance: 0xdead0000 + uint64(i) + uint64(l.turn.Load())<<20, Kind: q.Kind, Blob: q.Blob, Serial: q.Serial + 1000,
				HTTPPort: uint16(port), Complete: true, Held: 1 << 40, FreeSlots: l.free}
			uc.WriteToUDP(EncodeAnswer(a), from)
		}
	}
}

// serveHTTP misbehaves as mode says.
func (l *liar) serveHTTP(w http.ResponseWriter, r *http.Request) {
	l.gets.Add(1)
	start, end := int64(0), int64(1<<20-1)
	if rng, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok {
		a, b, _ := strings.Cut(rng, "-")
		start, _ = strconv.ParseInt(a, 10, 64)
		if e, err := strconv.ParseInt(b, 10, 64); err == nil {
			end = e
		} else {
			end = start + 1<<20 - 1
		}
	}
	junk := bytes.Repeat([]byte{0x5a}, 32<<10)
	switch l.mode {
	case "hang": // accepts, never answers
		<-r.Context().Done()
	case "busy":
		w.Header().Set("Retry-After", "1")
		http.Error(w, "busy", http.StatusServiceUnavailable)
	case "drip": // the right headers, then 2 KB/s of wrong bytes
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/*", start, end))
		w.WriteHeader(http.StatusPartialContent)
		for r.Context().Err() == nil {
			if _, err := w.Write(junk[:2048]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(time.Second)
		}
	case "wrong": // wrong bytes at full speed, the range as asked
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/*", start, end))
		w.Header().Set("Content-Length", strconv.FormatInt(end-start+1, 10))
		w.WriteHeader(http.StatusPartialContent)
		for n := end - start + 1; n > 0; {
			k, err := w.Write(junk[:min(n, int64(len(junk)))])
			if err != nil {
				return
			}
			n -= int64(k)
		}
	case "endless": // every document endless
		w.WriteHeader(http.StatusOK)
		for r.Context().Err() == nil {
			if _, err := w.Write(junk); err != nil {
				return
			}
		}
	case "badrange": // a range other than the one asked for
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/*", start+4096, end))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(junk[:4096])
	}
}

// peak samples the process's heap in use and open descriptors until stop is called.
func peak() (stop func() (heap uint64, fds int)) {
	var heapMax atomic.Uint64
	var fdMax atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if h := ms.HeapInuse; h > heapMax.Load() {
				heapMax.Store(h)
			}
			if ents, err := os.ReadDir("/proc/self/fd"); err == nil && int64(len(ents)) > fdMax.Load() {
				fdMax.Store(int64(len(ents)))
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() (uint64, int) {
		close(done)
		wg.Wait()
		return heapMax.Load(), int(fdMax.Load())
	}
}

// Hostile peers, each against a peers-first device whose repository is reachable: the
// fetch completes with the right bytes, what peers that never delivered cost it stays
// within the policy's budget (give or take the guard's one-second look and one LAN
// wait), the liar sees a bounded number of requests and connections, and the process's
// heap and descriptors stay bounded with all of them at once.
func TestFetchAgainstHostilePeers(t *testing.T) {
	w := newWorld(t)
	// three files: what a liar costs per blob shows against what it costs per fetch
	data := randBytes(24*testChunk+77, 61)
	w.publish("app", "1", map[string][]byte{"f": data, "g": randBytes(8*testChunk, 62), "h": randBytes(3*testChunk+1, 63)})
	h := manifests.SumBytes(data)
	baseFDs := 0
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		baseFDs = len(ents)
	}
	stop := peak()
	cases := []struct {
		name                 string
		liars, instances     int
		ports                int
		free                 uint8
		mode                 string
		maxGets, maxConnsNow int64
	}{
		{"one liar answering as 1000 instances, 503", 1, 1000, 1, 1, "busy", 60, 2},
		{"25 peers that accept and never answer", 25, 1, 1, 1, "hang", 10, 2},
		{"a peer dripping 2 KB/s", 1, 1, 1, 1, "drip", 10, 2},
		{"a peer with no free slot that answers 503", 1, 1, 1, 0, "busy", 60, 2},
		{"wrong bytes from 20 ports of one host", 1, 20, 20, 1, "wrong", 4, 2},
		{"an endless document", 1, 1, 1, 1, "endless", 6, 2},
		{"a range other than the one asked for", 1, 1, 1, 1, "badrange", 4, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var liars []*liar
			var targets []*net.UDPAddr
			for range c.liars {
				l := startLiar(t, c.mode, c.instances, c.ports, c.free)
				liars = append(liars, l)
				targets = append(targets, l.disco)
			}
			st := newStore(t)
			id, _ := st.Instance()
			// static peers: their answers are followed to any port (the rotating ports too)
			g := &PeerGroup{Targets: targets, Static: targets, Instance: id, Wait: 200 * time.Millisecond, Stall: 5 * time.Second,
				Settle: 500 * time.Millisecond, Patience: true}
			prio := 20
			began := time.Now()
			rep, err := Fetch(context.Background(), FetchOptions{Store: st, Keys: []minisign.PublicKey{w.pub}, App: "app", Version: "1",
				Sources: WithPeers([]Source{source(t, "origin", w.srv.URL, 10)}, g.Source(0), &prio)})
			took := time.Since(began)
			if err != nil {
				t.Fatalf("fetch: %v\n%+v", err, rep)
			}
			if b, _ := os.ReadFile(st.BlobPath(h)); !bytes.Equal(b, data) {
				t.Fatal("wrong bytes in the store")
			}
			bound := DefaultPolicy.Budget + 1500*time.Millisecond
			if rep.PeersWasted > bound {
				t.Errorf("peers that never delivered cost %s, over the bound %s", rep.PeersWasted, bound)
			}
			var gets, conns, maxOpen int64
			for _, l := range liars {
				gets += l.gets.Load()
				conns += l.conns.Load()
				maxOpen = max(maxOpen, l.maxOpen.Load())
			}
			if gets > c.maxGets*int64(c.liars) || maxOpen > c.maxConnsNow {
				t.Errorf("the liars got %d requests (bound %d) and up to %d connections at once from one device (bound %d)", gets, c.maxGets*int64(c.liars), maxOpen, c.maxConnsNow)
			}
			banned := false
			for _, s := range rep.Sources {
				if s.Kind == KindPeer && s.Bytes > 0 {
					t.Errorf("a liar is credited with %d bytes", s.Bytes)
				}
				banned = banned || s.Banned
			}
			if (c.mode == "wrong" || c.mode == "badrange") && !banned {
				t.Errorf("a peer that sent wrong bytes or broke the protocol was not dropped: %+v", rep.Sources)
			}
			for label := range st.Stats().BadChunks {
				if label != KindPeer {
					t.Errorf("bad chunks counted under the label %q (want one label for every peer)", label)
				}
			}
			t.Logf("fetch took %s, %s of it on liars; liars got %d requests on %d connections", took.Round(10*time.Millisecond), rep.PeersWasted.Round(10*time.Millisecond), gets, conns)
		})
	}
	t.Cleanup(func() {
		heap, fds := stop()
		t.Logf("all cases at once: heap in use up to %d MiB, descriptors up to %d (%d before)", heap>>20, fds, baseFDs)
		if heap > 100<<20 {
			t.Errorf("heap in use reached %d MiB", heap>>20)
		}
		if fds-baseFDs > 400 {
			t.Errorf("descriptors grew from %d to %d", baseFDs, fds)
		}
	})
}

// Forged answers lead a device nowhere but to the answering address and the LAN's
// http_port: a bystander on another port of the liar's host hears nothing, an address off
// the LAN is not followed, a static peer is followed to its port, and with the fleet's CA
// an answer without HTTPS is not followed at all.
func TestForgedAnswersAreNotFollowed(t *testing.T) {
	var bystander atomic.Int64
	l := startLiar(t, "wrong", 1, 1, 1)
	ln, err := net.Listen("tcp", l.ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { bystander.Add(1) })}
	go srv.Serve(ln)
	defer srv.Close()
	l.aim.Store(int64(ln.Addr().(*net.TCPAddr).Port)) // every answer points at the bystander
	w := newWorld(t)
	data := randBytes(3*testChunk, 83)
	w.publish("app", "1", map[string][]byte{"f": data})
	st := newStore(t)
	id, _ := st.Instance()
	// the liar is heard as if by broadcast (not a static peer); the LAN's port is another
	g := &PeerGroup{Targets: []*net.UDPAddr{l.disco}, HTTPPort: 22335, Instance: id, Wait: 200 * time.Millisecond}
	prio := 20
	if _, err := Fetch(context.Background(), FetchOptions{Store: st, Keys: []minisign.PublicKey{w.pub}, App: "app", Version: "1",
		Sources: WithPeers([]Source{source(t, "origin", w.srv.URL, 10)}, g.Source(0), &prio)}); err != nil {
		t.Fatal(err)
	}
	if n := bystander.Load(); n != 0 {
		t.Fatalf("the bystander got %d requests", n)
	}
	static := &net.UDPAddr{IP: net.ParseIP("127.0.0.9"), Port: 22336}
	g = &PeerGroup{Static: []*net.UDPAddr{static}, HTTPPort: 22335}
	for _, c := range []struct {
		name string
		f    Found
		tls  bool
		want bool
	}{
		{"the LAN's port", Found{Answer: Answer{HTTPPort: 22335}, IP: net.ParseIP("127.0.0.5"), From: &net.UDPAddr{IP: net.ParseIP("127.0.0.5"), Port: 22336}}, false, true},
		{"another port", Found{Answer: Answer{HTTPPort: 22}, IP: net.ParseIP("127.0.0.5"), From: &net.UDPAddr{IP: net.ParseIP("127.0.0.5"), Port: 22336}}, false, false},
		{"off the LAN", Found{Answer: Answer{HTTPPort: 22335}, IP: net.ParseIP("203.0.113.7"), From: &net.UDPAddr{IP: net.ParseIP("203.0.113.7"), Port: 22336}}, false, false},
		{"a static peer's port", Found{Answer: Answer{HTTPPort: 8080}, IP: static.IP, From: static}, false, true},
		{"no HTTPS in a fleet", Found{Answer: Answer{HTTPPort: 22335}, IP: net.ParseIP("127.0.0.5"), From: &net.UDPAddr{IP: net.ParseIP("127.0.0.5"), Port: 22336}}, true, false},
	} {
		g.TLS = nil
		if c.tls {
			g.TLS = &tls.Config{}
		}
		if got := g.follow(c.f); got != c.want {
			t.Errorf("%s: follow = %v, want %v", c.name, got, c.want)
		}
	}
}

// A manifest the signed index names (it hashes right) that lists an invalid path is the
// publisher's error: the fetch stops with a message that says so and blames no source.
func TestSignedBadManifestIsAnAdminError(t *testing.T) {
	w := newWorld(t)
	w.publish("app", "1", map[string][]byte{"f": randBytes(testChunk, 84)})
	root := w.srv.Root
	idx, _ := os.ReadFile(filepath.Join(root, "index.json"))
	x, _ := manifests.DecodeIndex(idx)
	mdoc, _ := os.ReadFile(filepath.Join(root, manifests.BlobPath(x.Apps[0].Manifest)))
	bad := bytes.Replace(mdoc, []byte(`"path":"f"`), []byte(`"path":"../f"`), 1)
	if bytes.Equal(bad, mdoc) {
		t.Fatalf("the manifest has no path f: %s", mdoc)
	}
	bh := manifests.SumBytes(bad)
	os.MkdirAll(filepath.Dir(filepath.Join(root, manifests.BlobPath(bh))), 0o755)
	os.WriteFile(filepath.Join(root, manifests.BlobPath(bh)), bad, 0o644)
	x.Serial++
	x.Apps[0].Manifest, x.Apps[0].ManifestSize = bh, int64(len(bad))
	doc, _ := x.Encode()
	os.WriteFile(filepath.Join(root, "index.json"), doc, 0o644)
	os.WriteFile(filepath.Join(root, dav.SigPath(doc)), manifests.Sign(w.key, doc, time.Now()), 0o644)
	rep, err := w.fetch(newStore(t), "app", "1", source(t, "origin", w.srv.URL, 0))
	if !errors.Is(err, ErrBadManifest) || !strings.Contains(err.Error(), "manifest for app@1") {
		t.Fatalf("a signed manifest with a bad path: %v", err)
	}
	for _, s := range rep.Sources {
		if s.Banned {
			t.Fatalf("a source was blamed for the publisher's manifest: %+v", s)
		}
	}
}

// A peer that drips while a device fetches a delta costs what any liar costs: the delta
// then comes from the repository and the file is rebuilt.
func TestDeltaAgainstADrippingPeer(t *testing.T) {
	w := newWorld(t)
	w.sync.DeltaVersions = 1
	base := randBytes(32*testChunk, 131)
	next := append(append(append([]byte{}, base[:2000]...), randBytes(100, 132)...), base[2000:]...)
	w.publish("app", "1", map[string][]byte{"f": base})
	w.publish("app", "2", map[string][]byte{"f": next})
	st := newStore(t)
	if _, err := w.fetch(st, "app", "1", source(t, "origin", w.srv.URL, 0)); err != nil {
		t.Fatal(err)
	}
	l := startLiar(t, "drip", 1, 1, 1)
	id, _ := st.Instance()
	targets := []*net.UDPAddr{l.disco}
	g := &PeerGroup{Targets: targets, Static: targets, Instance: id, Wait: 200 * time.Millisecond, Stall: 5 * time.Second, Patience: true}
	prio := 20
	rep, err := Fetch(context.Background(), FetchOptions{Store: st, Keys: []minisign.PublicKey{w.pub}, App: "app", Version: "2",
		Sources: WithPeers([]Source{source(t, "origin", w.srv.URL, 10)}, g.Source(0), &prio)})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(st.BlobPath(manifests.SumBytes(next))); !bytes.Equal(b, next) || rep.RebuiltFromDelta != int64(len(next)) {
		t.Fatalf("rebuilt %d bytes", rep.RebuiltFromDelta)
	}
	if bound := DefaultPolicy.Budget + 1500*time.Millisecond; rep.PeersWasted > bound {
		t.Fatalf("the dripping peer cost %s, over %s", rep.PeersWasted, bound)
	}
	t.Logf("the fetch took %s, %s of it on the dripping peer", rep.Duration.Round(10*time.Millisecond), rep.PeersWasted.Round(10*time.Millisecond))
}
