package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
)

// daemon runs a peer on a loopback address of its own (free ports) for the test, as a
// device has an address of its own on a LAN (a fetch keeps one source per address); it
// returns the HTTP base URL and the discovery address.
func daemon(t *testing.T, st *Store, limit int, log io.Writer, mod func(*DaemonOptions)) (string, *net.UDPAddr) {
	t.Helper()
	if log == nil {
		log = io.Discard
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan [2]net.Addr, 1)
	ip := loopbackIP()
	opt := DaemonOptions{Store: st, Limit: limit, HTTPAddr: ip + ":0", HTTPSAddr: ip + ":0", DiscoveryAddr: ip + ":0",
		Log: slog.New(slog.NewTextHandler(log, nil)), Ready: func(h, _, d net.Addr) { ready <- [2]net.Addr{h, d} }}
	if mod != nil {
		mod(&opt)
	}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opt) }()
	var addrs [2]net.Addr
	select {
	case addrs = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("peer did not start: %v", err)
	}
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + addrs[0].String() + "/", addrs[1].(*net.UDPAddr)
}

// putBlob puts data into st as the complete blob h, recorded as verified (h may be
// another hash: a store that lies).
func putBlob(t *testing.T, st *Store, h manifests.Hash, data []byte) {
	t.Helper()
	os.Remove(st.BlobPath(h))
	if err := manifests.WriteFileAtomic(st.BlobPath(h), data, blobMode); err != nil {
		t.Fatal(err)
	}
	if err := st.markVerified(h); err != nil {
		t.Fatal(err)
	}
}

// nextLoopback numbers the loopback addresses tests give their devices (127.0.1.x..).
var nextLoopback atomic.Int32

// loopbackIP is a loopback address no other device of the test process uses.
func loopbackIP() string {
	n := nextLoopback.Add(1)
	return fmt.Sprintf("127.0.%d.%d", 1+n/250, 1+n%250)
}

// partialStore makes a store holding blob data as a partial blob with the first verified
// chunks verified (written and recorded), the rest absent.
func partialStore(t *testing.T, data []byte, chunk int64, verified int) (*Store, *Partial, manifests.Hash) {
	st := newStore(t)
	h := manifests.SumBytes(data)
	p, err := st.OpenPartial(h, int64(len(data)), chunk)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < verified; i++ {
		markChunk(t, p, data, chunk, i)
	}
	if err := p.Persist(); err != nil {
		t.Fatal(err)
	}
	return st, p, h
}

func markChunk(t *testing.T, p *Partial, data []byte, chunk int64, i int) {
	off := int64(i) * chunk
	end := min(off+chunk, int64(len(data)))
	if _, err := p.WriteAt(data[off:end], off); err != nil {
		t.Fatal(err)
	}
	if err := p.Verified(i); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, url, rng string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// With limit_of_connections 1, a second transfer gets 503 with Retry-After while the first
// runs, and is served once it ended; status and metrics do not count.
func TestPeerLimitOfConnections(t *testing.T) {
	data := randBytes(8<<20, 40)
	st := newStore(t)
	h := manifests.SumBytes(data)
	putBlob(t, st, h, data)
	base, _ := daemon(t, st, 1, nil, nil)
	url := base + "v1/blobs/sha256/" + h.String()
	resp, err := http.Get(url) // the first transfer: headers read, body not yet
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first: %v %v", resp, err)
	}
	second, _ := get(t, url, "")
	if second.StatusCode != http.StatusServiceUnavailable || second.Header.Get("Retry-After") == "" {
		t.Fatalf("second transfer while the first runs: %d, Retry-After %q", second.StatusCode, second.Header.Get("Retry-After"))
	}
	if r, _ := get(t, base+"v1/status", ""); r.StatusCode != 200 {
		t.Fatalf("status while busy: %d", r.StatusCode)
	}
	if r, b := get(t, base+"metrics", ""); r.StatusCode != 200 || !strings.Contains(string(b), "drepo_peer_transfers_refused_busy_total 1") {
		t.Fatalf("metrics while busy: %d\n%s", r.StatusCode, b)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(body, data) {
		t.Fatal("first transfer: wrong bytes")
	}
	var third *http.Response
	for i := 0; i < 100; i++ { // the server releases the slot as the handler returns
		if third, _ = get(t, url, "bytes=0-9"); third.StatusCode != http.StatusServiceUnavailable {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if third.StatusCode != http.StatusPartialContent {
		t.Fatalf("after the first ended: %d", third.StatusCode)
	}
	_, sb := get(t, base+"v1/status", "")
	if !strings.Contains(string(sb), `"transfers_max_active": 1`) {
		t.Fatalf("status: %s", sb)
	}
}

// A blob still arriving is served within its verified chunks at once; a range just beyond
// them waits for the next chunk; one that does not come in WaitAhead gets 503.
func TestPeerServesWhileDownloading(t *testing.T) {
	const chunk = 64 << 10
	data := randBytes(8*chunk, 41)
	st, p, h := partialStore(t, data, chunk, 3)
	base, _ := daemon(t, st, 2, nil, nil)
	url := base + "v1/blobs/sha256/" + h.String()
	r, b := get(t, url, fmt.Sprintf("bytes=%d-%d", chunk, 3*chunk-1))
	if r.StatusCode != http.StatusPartialContent || !bytes.Equal(b, data[chunk:3*chunk]) {
		t.Fatalf("inside the verified chunks: %d, %d bytes", r.StatusCode, len(b))
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		markChunk(t, p, data, chunk, 3)
		p.Persist()
	}()
	r, b = get(t, url, fmt.Sprintf("bytes=%d-%d", 3*chunk, 4*chunk-1))
	if r.StatusCode != http.StatusPartialContent || !bytes.Equal(b, data[3*chunk:4*chunk]) {
		t.Fatalf("just beyond, then verified: %d, %d bytes", r.StatusCode, len(b))
	}
	srv := &Server{Store: st, WaitAhead: 200 * time.Millisecond}
	ts := &http.Server{Handler: srv.Handler()}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go ts.Serve(ln)
	defer ts.Close()
	r, _ = get(t, fmt.Sprintf("http://%s/v1/blobs/sha256/%s", ln.Addr(), h), fmt.Sprintf("bytes=%d-", 6*chunk))
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a chunk that does not come: %d", r.StatusCode)
	}
}

// HTTPS without its key does not start, and says why; HTTP serves on.
func TestPeerHTTPSWithoutKey(t *testing.T) {
	var log syncBuffer
	st := newStore(t)
	gotHTTPS := make(chan net.Addr, 1)
	base, _ := daemon(t, st, 1, &log, func(o *DaemonOptions) {
		o.HTTPS, o.TLSCert, o.TLSKey = true, filepath.Join(t.TempDir(), "device.pem"), filepath.Join(t.TempDir(), "missing.key")
		ready := o.Ready
		o.Ready = func(h, s, d net.Addr) { gotHTTPS <- s; ready(h, s, d) }
	})
	if a := <-gotHTTPS; a != nil {
		t.Fatalf("HTTPS started on %v without a key", a)
	}
	if !strings.Contains(log.String(), "HTTPS not started") || !strings.Contains(log.String(), "missing.key") {
		t.Fatalf("the log does not say why:\n%s", log.String())
	}
	if r, _ := get(t, base+"v1/status", ""); r.StatusCode != 200 {
		t.Fatalf("HTTP: %d", r.StatusCode)
	}
}

// Paths that try to leave the store are refused: only a parsed hash names a blob.
func TestPeerRefusesPathEscapes(t *testing.T) {
	st := newStore(t)
	os.WriteFile(filepath.Join(st.Dir(), "trust.json"), []byte("secret-ish"), 0o644)
	base, _ := daemon(t, st, 1, nil, nil)
	host := strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/")
	for _, path := range []string{"/v1/blobs/sha256/../../etc/passwd", "/v1/blobs/sha256/..%2f..%2ftrust.json", "/v1/blobs/sha256/%2e%2e/trust.json",
		"/v1/blobs/sha256/../trust.json", "/v1/blobs/sha256/ab/../../../trust.json", "/v1/blobs/sha256/" + strings.Repeat("a", 64) + "/../../trust.json",
		"/v1/../trust.json", "/v1/blobs/sha256/" + strings.Repeat("A", 64), "/v1/signatures/..%2ftrust.json"} {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode == 200 || bytes.Contains(b, []byte("secret-ish")) {
			t.Errorf("%s: %d %q", path, resp.StatusCode, b)
		}
	}
}

// A discovery answer to a forged request is never larger than the request; malformed,
// oversized and own requests get no answer.
func TestDiscoveryNoAmplification(t *testing.T) {
	data := randBytes(1000, 42)
	st := newStore(t)
	h := manifests.SumBytes(data)
	putBlob(t, st, h, data)
	_, disco := daemon(t, st, 1, nil, nil)
	conn, err := net.DialUDP("udp4", nil, disco)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ask := func(b []byte) []byte {
		conn.Write(b)
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 2048)
		n, err := conn.Read(buf)
		if err != nil {
			return nil
		}
		return buf[:n]
	}
	forged := EncodeQuery(Query{Instance: 12345, Kind: KindBlob, Blob: h})
	ans := ask(forged)
	if ans == nil || len(ans) > len(forged) {
		t.Fatalf("answer of %d bytes to a request of %d", len(ans), len(forged))
	}
	a, err := DecodeAnswer(ans)
	if err != nil || !a.Complete || a.Held != 1000 || a.FreeSlots != 1 {
		t.Fatalf("answer: %+v %v", a, err)
	}
	own, _ := st.Instance()
	for name, b := range map[string][]byte{
		"truncated": forged[:30],
		"oversized": append(bytes.Clone(forged), make([]byte, 1000)...),
		"garbage":   bytes.Repeat([]byte{0xff}, 64),
		"own":       EncodeQuery(Query{Instance: own, Kind: KindBlob, Blob: h}),
		"not held":  EncodeQuery(Query{Instance: 1, Kind: KindBlob, Blob: manifests.SumBytes(nil)}),
		"no index":  EncodeQuery(Query{Instance: 1, Kind: KindIndex, Serial: 1}),
		"an answer": ans,
	} {
		if got := ask(b); got != nil {
			t.Errorf("%s: answered %d bytes", name, len(got))
		}
	}
}

// Peers as the only source (no repository reachable), found through a static peer on
// 127.0.0.1: the fetch completes from them; a peer that sends wrong bytes is dropped and
// another serves; an index from a peer is accepted only with a trusted signature.
func TestFetchFromPeers(t *testing.T) {
	w := newWorld(t)
	data := randBytes(6*testChunk+99, 43)
	w.publish("app", "1", map[string][]byte{"f": data})
	h := manifests.SumBytes(data)
	// device A: fetched from the repository, then corrupted on disk (a bad peer)
	stA := lyingStore(t, w, data, 3*testChunk+5)
	// device B: holds the blob as a fully verified partial (a good peer, ranked after A)
	stB := newStore(t)
	if _, err := w.fetch(stB, "app", "1", source(t, "origin", w.srv.URL, 0)); err != nil {
		t.Fatal(err)
	}
	os.Rename(stB.BlobPath(h), filepath.Join(stB.Dir(), "partial", h.String()))
	full, _ := NewPartialState(int64(len(data)), testChunk)
	for i := range full.Chunks() {
		full.Set(i)
	}
	os.WriteFile(filepath.Join(stB.Dir(), "partial", h.String()+".state"), full.Encode(), 0o600)
	// held open as a fetch holds it: a partial nobody fetches is not announced
	pB, err := stB.OpenPartial(h, int64(len(data)), testChunk)
	if err != nil {
		t.Fatal(err)
	}
	defer pB.Close()
	_, discoA := daemon(t, stA, 1, nil, nil)
	_, discoB := daemon(t, stB, 1, nil, nil)
	stC := newStore(t)
	id, _ := stC.Instance()
	g := &PeerGroup{Targets: []*net.UDPAddr{discoA, discoB}, Instance: id, Wait: 300 * time.Millisecond, Stall: time.Second}
	rep, err := Fetch(context.Background(), FetchOptions{Store: stC, Keys: []minisign.PublicKey{w.pub}, App: "app", Version: "1",
		Sources: WithPeers([]Source{source(t, "down", "http://127.0.0.1:1/", 10)}, g.Source(0), nil)})
	if err != nil {
		t.Fatalf("fetch from peers: %v\n%+v", err, rep)
	}
	if b, _ := os.ReadFile(stC.BlobPath(h)); !bytes.Equal(b, data) {
		t.Fatal("wrong bytes in the store")
	}
	var banned []string
	for _, s := range rep.Sources {
		if s.Banned {
			banned = append(banned, s.Name)
		}
	}
	if len(banned) != 1 {
		t.Fatalf("want the corrupt peer banned, got %v (%+v)", banned, rep.Sources)
	}
	// an unsigned index from a peer is refused even with allow_unsigned
	os.Remove(filepath.Join(stA.Dir(), "index.json.minisig"))
	os.Remove(filepath.Join(stB.Dir(), "index.json.minisig"))
	_, err = Fetch(context.Background(), FetchOptions{Store: newStore(t), AllowUnsigned: true, App: "app", Version: "1",
		Sources: []Source{(&PeerGroup{Targets: []*net.UDPAddr{discoA, discoB}, Instance: 7, Wait: 300 * time.Millisecond}).Source(0)}})
	if err == nil || !strings.Contains(err.Error(), "no trusted_keys configured") {
		t.Fatalf("unsigned index from peers: %v", err)
	}
}

// With peers before a repository, a device waits for a busy peer that holds the blob
// (PeerGroup.Patience) instead of reading the repository; without the patience it reads
// the repository, which shows the wait is what kept the WAN out.
func TestFetchWaitsForABusyPeer(t *testing.T) {
	w := newWorld(t)
	data := randBytes(8*testChunk+5, 44)
	w.publish("app", "1", map[string][]byte{"f": data})
	h := manifests.SumBytes(data)
	stA := newStore(t)
	if _, err := w.fetch(stA, "app", "1", source(t, "origin", w.srv.URL, 0)); err != nil {
		t.Fatal(err)
	}
	// a second blob on A, arriving: a range past its verified chunk holds A's only slot
	// until WaitAhead gives up on it
	other := randBytes(2*testChunk, 45)
	oh := manifests.SumBytes(other)
	op, err := stA.OpenPartial(oh, int64(len(other)), testChunk)
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close() // held (and its lock with it) while the test runs
	markChunk(t, op, other, testChunk, 0)
	if err := op.Persist(); err != nil {
		t.Fatal(err)
	}
	const hold = 2 * time.Second
	urlA, discoA := daemon(t, stA, 1, nil, func(o *DaemonOptions) { o.WaitAhead = hold })
	for _, patience := range []time.Duration{time.Minute, 0} {
		held := make(chan struct{})
		go func() {
			defer close(held)
			req, _ := http.NewRequest("GET", urlA+"v1/blobs/sha256/"+oh.String(), nil)
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", testChunk))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		waitFor(t, func() bool {
			_, b := get(t, urlA+"v1/status", "")
			var st Status
			return json.Unmarshal(b, &st) == nil && st.TransfersActive == 1
		})
		origin := newFaultProxy(t, w.srv.URL, h, nil, false)
		stC := newStore(t)
		id, _ := stC.Instance()
		g := &PeerGroup{Targets: []*net.UDPAddr{discoA}, Instance: id, Wait: 200 * time.Millisecond, Stall: time.Second, Patience: patience > 0}
		prio := 20
		rep, err := Fetch(context.Background(), FetchOptions{Store: stC, Keys: []minisign.PublicKey{w.pub}, App: "app", Version: "1",
			Sources: WithPeers([]Source{source(t, "origin", origin.URL, 10)}, g.Source(0), &prio)})
		if err != nil {
			t.Fatalf("patience %v: %v\n%+v", patience, err, rep)
		}
		if b, _ := os.ReadFile(stC.BlobPath(h)); !bytes.Equal(b, data) {
			t.Fatal("wrong bytes in the store")
		}
		switch got := origin.served.Load(); {
		case patience > 0 && got != 0:
			t.Fatalf("the repository served %d bytes of the blob while a LAN peer held it", got)
		case patience == 0 && got != int64(len(data)):
			t.Fatalf("without patience the repository served %d bytes, want all %d (the peer was busy)", got, len(data))
		}
		<-held
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met in 10 s")
}

// A helper whose peer sends wrong bytes leaves its part of the blob missing, the peer is
// dropped, and the fetch brings that part from the repository: the blob completes with the
// right bytes, never with a chunk left out.
func TestHelperFailureLeavesNoHole(t *testing.T) {
	w := newWorld(t)
	data := randBytes(64*testChunk+7, 47)
	w.publish("app", "1", map[string][]byte{"f": data})
	h := manifests.SumBytes(data)
	// device A holds the blob complete, but altered near its end: a peer that lies
	stA := lyingStore(t, w, data, 60*testChunk+3)
	_, discoA := daemon(t, stA, 1, nil, nil)
	// the repository sends slowly, so the helper starts while the first transfer runs
	slow := newFaultProxy(t, w.srv.URL, h, func(ctx context.Context, rw http.ResponseWriter, body io.Reader, status int, hdr http.Header, p *faultProxy) {
		for k, v := range hdr {
			rw.Header()[k] = v
		}
		rw.WriteHeader(status)
		buf := make([]byte, testChunk)
		for {
			n, err := io.ReadFull(body, buf)
			rw.Write(buf[:n])
			rw.(http.Flusher).Flush()
			p.served.Add(int64(n))
			if err != nil || ctx.Err() != nil {
				return
			}
			time.Sleep(60 * time.Millisecond)
		}
	}, false)
	stC := newStore(t)
	id, _ := stC.Instance()
	g := &PeerGroup{Targets: []*net.UDPAddr{discoA}, Instance: id, Wait: 100 * time.Millisecond, Stall: 5 * time.Second}
	rep, err := Fetch(context.Background(), FetchOptions{Store: stC, Keys: []minisign.PublicKey{w.pub}, App: "app", Version: "1",
		Sources: WithPeers([]Source{source(t, "origin", slow.URL, 10)}, g.Source(0), nil)})
	if err != nil {
		t.Fatalf("fetch: %v\n%+v", err, rep)
	}
	if b, _ := os.ReadFile(stC.BlobPath(h)); !bytes.Equal(b, data) {
		t.Fatal("wrong bytes in the store")
	}
	var banned bool
	for _, s := range rep.Sources {
		banned = banned || (s.Kind == KindPeer && s.Banned)
	}
	if !banned {
		t.Fatalf("the lying helper was not dropped (did the helper run?): %+v", rep.Sources)
	}
}

// lyingStore is a store that fetched app@1 (whose one file is data) from w's repository and
// then had the byte at off flipped on disk: as a peer, it serves wrong bytes there.
func lyingStore(t *testing.T, w *world, data []byte, off int) *Store {
	t.Helper()
	st := newStore(t)
	if _, err := w.fetch(st, "app", "1", source(t, "origin", w.srv.URL, 0)); err != nil {
		t.Fatal(err)
	}
	h := manifests.SumBytes(data)
	bad := bytes.Clone(data)
	bad[off] ^= 1
	putBlob(t, st, h, bad) // recorded as verified: a lying peer runs what it likes
	return st
}
