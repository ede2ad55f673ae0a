package peer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror"
	"github.com/drepo-dev/drepo/mirror/dav"
	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

const testChunk = 64 << 10

func testKeys(t *testing.T) (minisign.PrivateKey, minisign.PublicKey) {
	t.Helper()
	sec, pub, err := manifests.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "k"), sec, 0o600)
	os.WriteFile(filepath.Join(dir, "k.pub"), pub, 0o644)
	k, err := manifests.LoadSecretKey(filepath.Join(dir, "k"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := manifests.LoadPublicKey(filepath.Join(dir, "k.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return k, p
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// world is a publisher and one repository server with an app on it.
type world struct {
	t    *testing.T
	key  minisign.PrivateKey
	pub  minisign.PublicKey
	src  string
	srv  *davtest.Server
	sync mirror.SyncOptions
}

func newWorld(t *testing.T) *world {
	key, pub := testKeys(t)
	w := &world{t: t, key: key, pub: pub, src: t.TempDir(), srv: davtest.StartDrepo(t, davtest.DrepoOptions{AnonymousRead: true})}
	w.sync = mirror.SyncOptions{Source: w.src, SigningKey: key, StateDir: filepath.Join(t.TempDir(), "state"),
		Repos:     []dav.Repository{{Name: "origin", URL: w.srv.URL, Username: w.srv.User, Password: dav.NewSecret(w.srv.Password)}},
		ChunkSize: testChunk, Retry: dav.Retry{Attempts: 2, Base: time.Millisecond}}
	return w
}

// publish writes files for app@version into the source and syncs.
func (w *world) publish(app, version string, files map[string][]byte) {
	w.t.Helper()
	for name, data := range files {
		p := filepath.Join(w.src, app, version, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			w.t.Fatal(err)
		}
	}
	rep, err := mirror.Sync(context.Background(), w.sync)
	if err != nil || rep.Failed() {
		w.t.Fatalf("sync: %+v %v", rep, err)
	}
}

// source is a repository source for a URL.
func source(t *testing.T, name, url string, prio int) Source {
	srcs, _ := PlanSources([]dav.Repository{{Name: name, URL: url, Priority: prio}}, 500*time.Millisecond)
	if len(srcs) != 1 {
		t.Fatalf("no source for %s", url)
	}
	return srcs[0]
}

func (w *world) fetch(st *Store, app, version string, srcs ...Source) (*FetchReport, error) {
	return Fetch(context.Background(), FetchOptions{Store: st, Sources: srcs, Keys: []minisign.PublicKey{w.pub}, App: app, Version: version,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func newStore(t *testing.T) *Store {
	st, err := OpenStore(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// checkStore: every complete blob hashes to its name.
func checkStore(t *testing.T, st *Store) int {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(st.Dir(), "blobs", "sha256"))
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(st.Dir(), "blobs", "sha256", e.Name()))
		if got := manifests.SumBytes(b).String(); got != e.Name() {
			t.Fatalf("store holds %s with content %s", e.Name(), got)
		}
	}
	return len(ents)
}

// faultProxy forwards to a repository server; GETs of one blob go through fault.
type faultProxy struct {
	URL    string
	served atomic.Int64 // bytes of the target blob written to clients
	reqs   atomic.Int64
}

type faultFunc func(ctx context.Context, w http.ResponseWriter, body io.Reader, status int, hdr http.Header, p *faultProxy)

func newFaultProxy(t *testing.T, backend string, target manifests.Hash, fault faultFunc, stripRange bool) *faultProxy {
	p := &faultProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.reqs.Add(1)
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, backend+strings.TrimPrefix(r.URL.Path, "/"), nil)
		isTarget := strings.HasSuffix(r.URL.Path, target.String())
		if rg := r.Header.Get("Range"); rg != "" && !(isTarget && stripRange) {
			req.Header.Set("Range", rg)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		if !isTarget || fault == nil {
			for k, v := range resp.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(resp.StatusCode)
			n, _ := io.Copy(w, resp.Body)
			if isTarget {
				p.served.Add(n)
			}
			return
		}
		fault(r.Context(), w, resp.Body, resp.StatusCode, resp.Header, p)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL + "/"
	return p
}

// passThrough copies at most limit bytes (all if limit < 0), applying mutate to the stream.
func passThrough(w http.ResponseWriter, body io.Reader, status int, hdr http.Header, p *faultProxy, limit int64, mutate func(off int64, b []byte)) {
	for k, v := range hdr {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	buf := make([]byte, 32<<10)
	var off int64
	for limit < 0 || off < limit {
		n, err := body.Read(buf)
		if limit >= 0 && off+int64(n) > limit {
			n = int(limit - off)
		}
		if n > 0 {
			if mutate != nil {
				mutate(off, buf[:n])
			}
			k, werr := w.Write(buf[:n])
			p.served.Add(int64(k))
			off += int64(k)
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func TestFetchFaultySourcesFallBack(t *testing.T) {
	w := newWorld(t)
	data := randBytes(64*testChunk+1234, 1)
	w.publish("os", "1.0", map[string][]byte{"image.bin": data, "small.txt": []byte("small")})
	target := manifests.SumBytes(data)
	size := int64(len(data))
	cases := []struct {
		name       string
		fault      faultFunc
		stripRange bool
		// bytes of the blob the second source must serve, as a share of the whole
		lo, hi float64
		banned bool
	}{
		{name: "flipped bytes", fault: func(ctx context.Context, w http.ResponseWriter, b io.Reader, s int, h http.Header, p *faultProxy) {
			passThrough(w, b, s, h, p, -1, func(off int64, buf []byte) {
				if i := 5*testChunk + 100 - off; i >= 0 && i < int64(len(buf)) {
					buf[i] ^= 0xff
				}
			})
		}, lo: 0.9, hi: 0.93, banned: true},
		{name: "cut at 60%", fault: func(ctx context.Context, w http.ResponseWriter, b io.Reader, s int, h http.Header, p *faultProxy) {
			passThrough(w, b, s, h, p, size*6/10, nil)
		}, lo: 0.38, hi: 0.42},
		{name: "500", fault: func(ctx context.Context, w http.ResponseWriter, b io.Reader, s int, h http.Header, p *faultProxy) {
			http.Error(w, "broken", http.StatusInternalServerError)
		}, lo: 1, hi: 1},
		{name: "503 busy", fault: func(ctx context.Context, w http.ResponseWriter, b io.Reader, s int, h http.Header, p *faultProxy) {
			w.Header().Set("Retry-After", "30")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}, lo: 1, hi: 1},
		{name: "404", fault: func(ctx context.Context, w http.ResponseWriter, b io.Reader, s int, h http.Header, p *faultProxy) {
			http.NotFound(w, nil)
		}, lo: 1, hi: 1},
		{name: "403", fault: func(ctx context.Context, w http.ResponseWriter, b io.Reader, s int, h http.Header, p *faultProxy) {
			http.Error(w, "no", http.StatusForbidden)
		}, lo: 1, hi: 1},
		{name: "stall", fault: func(ctx context.Context, w http.ResponseWriter, b io.Reader, s int, h http.Header, p *faultProxy) {
			passThrough(w, b, s, h, p, size/10, nil)
			w.(http.Flusher).Flush()
			<-ctx.Done() // until the client gives up on it
		}, lo: 0.88, hi: 0.92},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := newFaultProxy(t, w.srv.URL, target, c.fault, false)
			good := newFaultProxy(t, w.srv.URL, target, nil, false)
			st := newStore(t)
			rep, err := w.fetch(st, "os", "1.0", source(t, "bad", bad.URL, 10), source(t, "good", good.URL, 5))
			if err != nil {
				t.Fatalf("fetch: %v\n%+v", err, rep)
			}
			b, _ := os.ReadFile(st.BlobPath(target))
			if !bytes.Equal(b, data) {
				t.Fatal("the store holds other bytes")
			}
			share := float64(good.served.Load()) / float64(size)
			if share < c.lo || share > c.hi {
				t.Fatalf("the second source served %.3f of the blob (bad served %d bytes), want %.2f–%.2f", share, bad.served.Load(), c.lo, c.hi)
			}
			if rep.Sources[0].Banned != c.banned {
				t.Fatalf("bad source banned = %v, want %v: %+v", rep.Sources[0].Banned, c.banned, rep.Sources[0])
			}
			checkStore(t, st)
		})
	}
	// a source that answers 200 to a Range request, after a first one cut at 60%: it
	// sends the whole body, the first 60% is skipped, and the bytes still come out right
	t.Run("200 to a Range", func(t *testing.T) {
		cut := newFaultProxy(t, w.srv.URL, target, cases[1].fault, false)
		whole := newFaultProxy(t, w.srv.URL, target, nil, true)
		st := newStore(t)
		if _, err := w.fetch(st, "os", "1.0", source(t, "cut", cut.URL, 10), source(t, "whole", whole.URL, 5)); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(st.BlobPath(target)); !bytes.Equal(b, data) {
			t.Fatal("the store holds other bytes")
		}
		if got := whole.served.Load(); got != size {
			t.Fatalf("the range-ignoring source served %d bytes, want the whole %d", got, size)
		}
	})
}

// Priority order: the highest repository serves; with it down, the next; a staging
// repository is never contacted.
func TestFetchPriorityOrder(t *testing.T) {
	w := newWorld(t)
	data := randBytes(8*testChunk, 2)
	w.publish("app", "1.0", map[string][]byte{"f": data})
	target := manifests.SumBytes(data)
	var stagingLog syncBuffer
	staging := davtest.StartDrepo(t, davtest.DrepoOptions{AnonymousRead: true, Log: &stagingLog})
	w.sync.Repos = append(w.sync.Repos, dav.Repository{Name: "staging", URL: staging.URL, Priority: -1, Username: staging.User, Password: dav.NewSecret(staging.Password)})
	w.publish("app", "1.1", map[string][]byte{"f": data})
	logged := len(stagingLog.String())
	p10 := newFaultProxy(t, w.srv.URL, target, nil, false)
	p5 := newFaultProxy(t, w.srv.URL, target, nil, false)
	srcs, skips := PlanSources([]dav.Repository{
		{Name: "staging", URL: staging.URL, Priority: -1}, {Name: "five", URL: p5.URL, Priority: 5}, {Name: "ten", URL: p10.URL, Priority: 10}}, time.Second)
	if len(srcs) != 2 || srcs[0].Name != "ten" || srcs[1].Name != "five" || len(skips) != 1 || !strings.Contains(skips[0].Reason, "staging") {
		t.Fatalf("plan: %+v skips %+v", srcs, skips)
	}
	if _, err := w.fetch(newStore(t), "app", "1.0", srcs...); err != nil {
		t.Fatal(err)
	}
	if p10.served.Load() != int64(len(data)) || p5.reqs.Load() != 0 {
		t.Fatalf("ten served %d, five had %d requests", p10.served.Load(), p5.reqs.Load())
	}
	// ten goes down: five serves
	srcs[0] = source(t, "ten", "http://127.0.0.1:1/", 10)
	if _, err := w.fetch(newStore(t), "app", "1.1", srcs...); err != nil {
		t.Fatal(err)
	}
	if p5.served.Load() != int64(len(data)) {
		t.Fatalf("five served %d bytes, want %d", p5.served.Load(), len(data))
	}
	if more := stagingLog.String()[logged:]; strings.Contains(more, "msg=request") {
		t.Fatalf("the staging server was contacted by a device:\n%s", more)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// An update that shares most chunks with the installed version downloads only the rest.
func TestFetchUpdateMovesOnlyChangedChunks(t *testing.T) {
	w := newWorld(t)
	v1 := randBytes(40*testChunk, 3)
	v2 := bytes.Clone(v1)
	for _, c := range []int{3, 11, 22, 37} { // 10% of the chunks change
		copy(v2[c*testChunk:], randBytes(testChunk, uint64(100+c)))
	}
	w.publish("os", "1", map[string][]byte{"image": v1})
	w.publish("os", "2", map[string][]byte{"image": v2})
	st := newStore(t)
	if _, err := w.fetch(st, "os", "1", source(t, "origin", w.srv.URL, 0)); err != nil {
		t.Fatal(err)
	}
	rep, err := w.fetch(st, "os", "2", source(t, "origin", w.srv.URL, 0))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(st.BlobPath(manifests.SumBytes(v2))); !bytes.Equal(b, v2) {
		t.Fatal("version 2 is wrong in the store")
	}
	if rep.ReusedLocal != 36*testChunk || rep.Downloaded != 4*testChunk {
		t.Fatalf("downloaded %d and reused %d bytes, want %d and %d", rep.Downloaded, rep.ReusedLocal, 4*testChunk, 36*testChunk)
	}
}

// The trust rules, each refusal saying which, and nothing stored from a refused index.
func TestFetchTrustRefusals(t *testing.T) {
	w := newWorld(t)
	w.publish("app", "1", map[string][]byte{"f": randBytes(3*testChunk, 4)})
	w.publish("app", "2", map[string][]byte{"f": randBytes(3*testChunk, 5)})
	root := w.srv.Root
	origin := source(t, "origin", w.srv.URL, 0)
	st := newStore(t)
	if _, err := w.fetch(st, "app", "2", origin); err != nil {
		t.Fatal(err)
	}
	accepted, _ := os.ReadFile(filepath.Join(st.Dir(), "trust.json"))
	idx2, _ := os.ReadFile(filepath.Join(root, "index.json"))
	x2, _ := manifests.DecodeIndex(idx2)
	serve := func(doc []byte, sign bool) {
		os.WriteFile(filepath.Join(root, "index.json"), doc, 0o644)
		os.Remove(filepath.Join(root, "index.json.minisig"))
		if sign {
			os.WriteFile(filepath.Join(root, dav.SigPath(doc)), manifests.Sign(w.key, doc, time.Now()), 0o644)
		}
	}
	older := *x2
	older.Serial = 1
	older.Apps = older.Apps[:1]
	olderDoc, _ := older.Encode()
	fork := *x2
	fork.Created = fork.Created.Add(time.Second)
	forkDoc, _ := fork.Encode()
	past := time.Now().Add(-time.Hour)
	expired := *x2
	expired.Serial = 3
	expired.Created = past.Add(-time.Hour)
	expired.Expires = &past
	unsigned := *x2
	unsigned.Serial = 5
	unsignedDoc, _ := unsigned.Encode()
	expiredDoc, _ := expired.Encode()
	tampered := bytes.Replace(idx2, []byte(`"serial":2`), []byte(`"serial":9`), 1)
	for _, c := range []struct {
		name string
		doc  []byte
		sign bool
		want error
		text string
	}{
		{"replayed older index", olderDoc, true, ErrRollback, "serial 1, this device accepted 2"},
		{"other index at the same serial", forkDoc, true, ErrFork, "serial 2"},
		{"expired index", expiredDoc, true, ErrExpired, "expired"},
		{"tampered index", tampered, false, ErrUnsigned, "does not match the document"},
		{"unsigned repository", unsignedDoc, false, ErrUnsigned, "no signature"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "tampered index" {
				os.WriteFile(filepath.Join(root, "index.json"), c.doc, 0o644)
				os.WriteFile(filepath.Join(root, dav.SigPath(c.doc)), manifests.Sign(w.key, idx2, time.Now()), 0o644)
			} else {
				serve(c.doc, c.sign)
			}
			// the device refuses the index; app 1 still comes, under the index it accepted
			// before (blobs are checked by hash, wherever they come from)
			rep, err := w.fetch(st, "app", "1", origin)
			if err != nil || rep.Serial != 2 || len(rep.Sources[0].Errors) == 0 {
				t.Fatalf("fetch: %v %+v", err, rep)
			}
			if msg := rep.Sources[0].Errors[0]; !strings.Contains(msg, c.text) {
				t.Fatalf("refusal says %q, want it to say %q", msg, c.text)
			}
			// with no index accepted before, the refusal ends the fetch, naming the source
			fresh := newStore(t)
			if _, err := w.fetch(fresh, "app", "1", origin); c.name != "replayed older index" && c.name != "other index at the same serial" &&
				(err == nil || !strings.Contains(err.Error(), "origin (repository): index refused") || !strings.Contains(err.Error(), c.text)) {
				t.Fatalf("fresh store: %v", err)
			}
			if _, _, aerr := mustTrust(t, st).Accept([]minisign.PublicKey{w.pub}, false, c.doc, manifests.Sign(w.key, c.doc, time.Now()), time.Now()); c.sign && !errors.Is(aerr, c.want) {
				t.Fatalf("Accept: %v, want %v", aerr, c.want)
			}
			if now, _ := os.ReadFile(filepath.Join(st.Dir(), "trust.json")); !bytes.Equal(now, accepted) {
				t.Fatal("the trust state changed")
			}
			if doc, _ := st.Index(); !bytes.Equal(doc, idx2) {
				t.Fatal("the stored index changed")
			}
		})
	}
	// allow_unsigned without keys takes the unsigned index (and only then)
	serve(idx2, false)
	rep, err := Fetch(context.Background(), FetchOptions{Store: newStore(t), Sources: []Source{origin}, AllowUnsigned: true, App: "app", Version: "2"})
	if err != nil {
		t.Fatalf("allow_unsigned: %v %+v", err, rep)
	}
}

// A tampered manifest or chunk: refused, the source banned, nothing stored under a final name.
func TestFetchTamperedManifestAndChunk(t *testing.T) {
	w := newWorld(t)
	data := randBytes(4*testChunk, 6)
	w.publish("app", "1", map[string][]byte{"f": data})
	idx, _ := os.ReadFile(filepath.Join(w.srv.Root, "index.json"))
	x, _ := manifests.DecodeIndex(idx)
	mpath := filepath.Join(w.srv.Root, manifests.BlobPath(x.Apps[0].Manifest))
	orig, _ := os.ReadFile(mpath)
	os.WriteFile(mpath, bytes.Replace(orig, []byte(`"app"`), []byte(`"apx"`), 1), 0o644)
	st := newStore(t)
	rep, err := w.fetch(st, "app", "1", source(t, "origin", w.srv.URL, 0))
	if err == nil || !rep.Sources[0].Banned || !strings.Contains(rep.Sources[0].Errors[0], "do not match their hash") {
		t.Fatalf("tampered manifest: %v %+v", err, rep)
	}
	// a manifest longer than the index's manifest_size is read no further than that and
	// breaks the protocol (the source is dropped), whatever follows
	os.WriteFile(mpath, append(bytes.Clone(orig), bytes.Repeat([]byte(" "), 1<<20)...), 0o644)
	rep, err = w.fetch(st, "app", "1", source(t, "origin", w.srv.URL, 0))
	if err == nil || !rep.Sources[0].Banned || !strings.Contains(rep.Sources[0].Errors[0], "longer than the") {
		t.Fatalf("oversized manifest: %v %+v", err, rep)
	}
	if hs, _ := st.Manifests(); len(hs) != 0 {
		t.Fatal("a tampered manifest was stored")
	}
	os.WriteFile(mpath, orig, 0o644)
	bpath := filepath.Join(w.srv.Root, manifests.BlobPath(manifests.SumBytes(data)))
	bad := bytes.Clone(data)
	bad[2*testChunk+7] ^= 1
	os.WriteFile(bpath, bad, 0o644)
	rep, err = w.fetch(st, "app", "1", source(t, "origin", w.srv.URL, 0))
	if err == nil || !rep.Sources[0].Banned || !strings.Contains(rep.Sources[0].Errors[0], "chunk 2 hashed to") {
		t.Fatalf("tampered chunk: %v %+v", err, rep)
	}
	if n := checkStore(t, st); n != 1 { // the manifest only
		t.Fatalf("%d blobs under final names, want the manifest only", n)
	}
	ps, _ := st.PartialBlobs()
	if p := ps[manifests.SumBytes(data)]; p.Count() != 2 {
		t.Fatalf("the partial blob records %d verified chunks, want 2", p.Count())
	}
	os.WriteFile(bpath, data, 0o644)
	rep, err = w.fetch(st, "app", "1", source(t, "origin", w.srv.URL, 0))
	if err != nil || rep.Downloaded != 2*testChunk || rep.AlreadyHeld != 2*testChunk {
		t.Fatalf("resume: %v, downloaded %d, held %d", err, rep.Downloaded, rep.AlreadyHeld)
	}
}

func mustTrust(t *testing.T, st *Store) TrustState {
	tr, err := st.Trust()
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// --out: files by manifest path with their executable bits; other content refused without
// --force; a rerun replaces its own work.
func TestFetchOut(t *testing.T) {
	w := newWorld(t)
	tool := filepath.Join(w.src, "app", "1", "bin", "tool")
	os.MkdirAll(filepath.Dir(tool), 0o755)
	os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755)
	w.publish("app", "1", map[string][]byte{"lib/data": randBytes(3*testChunk, 7)})
	st := newStore(t)
	out := filepath.Join(t.TempDir(), "target")
	opt := FetchOptions{Store: st, Sources: []Source{source(t, "origin", w.srv.URL, 0)}, Keys: []minisign.PublicKey{w.pub}, App: "app", Version: "1", Out: out}
	if _, err := Fetch(context.Background(), opt); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(out, "bin", "tool"))
	if err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("bin/tool: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "lib", "data")); sha256.Sum256(b) != sha256.Sum256(randBytes(3*testChunk, 7)) {
		t.Fatal("lib/data differs")
	}
	if _, err := Fetch(context.Background(), opt); err != nil {
		t.Fatalf("a rerun into its own output: %v", err)
	}
	os.WriteFile(filepath.Join(out, "mine.txt"), []byte("keep me"), 0o644)
	if _, err := Fetch(context.Background(), opt); !errors.Is(err, ErrOutInUse) || !strings.Contains(err.Error(), "mine.txt") {
		t.Fatalf("other content: %v", err)
	}
	opt.Force = true
	if _, err := Fetch(context.Background(), opt); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "mine.txt")); err == nil {
		t.Fatal("--force kept the other file")
	}
}

// store gc keeps the newest N versions per app and removes what only the others named.
func TestStoreGC(t *testing.T) {
	w := newWorld(t)
	shared := randBytes(2*testChunk, 20)
	for i, v := range []string{"1", "2", "3"} {
		w.publish("app", v, map[string][]byte{"shared": shared, "own": randBytes(testChunk, uint64(30+i))})
	}
	st := newStore(t)
	for _, v := range []string{"1", "2", "3"} {
		if _, err := w.fetch(st, "app", v, source(t, "origin", w.srv.URL, 0)); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := st.GC(context.Background(), GCOptions{Keep: 1}, nil)
	if err != nil || len(rep.RemovedVersions) != 2 || rep.RemovedBlobs != 4 { // two own files, two manifests
		t.Fatalf("gc: %+v %v", rep, err)
	}
	vs, _ := st.Versions()
	if len(vs) != 1 || vs[0].Version != "3" || !vs[0].Complete {
		t.Fatalf("after gc: %+v", vs)
	}
	if !st.HasBlob(manifests.SumBytes(shared), int64(len(shared))) {
		t.Fatal("gc removed a blob the kept version names")
	}
}

// APP@latest is the newest version by the version order; --out of one version of an app is
// replaced by another without --force (the layout's marker), not a folder with files of
// someone else's; a version not published names those that are.
func TestFetchLatestAndUpgradeInPlace(t *testing.T) {
	w := newWorld(t)
	w.publish("app", "1.9", map[string][]byte{"README": []byte("1.9"), "bin/a": randBytes(testChunk, 90)})
	w.publish("app", "1.10", map[string][]byte{"README": []byte("1.10"), "lib/b": randBytes(testChunk, 91)})
	w.publish("other", "1", map[string][]byte{"x": []byte("x")})
	st := newStore(t)
	out := filepath.Join(t.TempDir(), "app")
	fetch := func(app, version string, force bool) (*FetchReport, error) {
		return Fetch(context.Background(), FetchOptions{Store: st, Sources: []Source{source(t, "origin", w.srv.URL, 0)}, Keys: []minisign.PublicKey{w.pub},
			App: app, Version: version, Out: out, Force: force})
	}
	if rep, err := fetch("app", "1.9", false); err != nil || rep.Version != "1.9" {
		t.Fatalf("app@1.9: %v", err)
	}
	rep, err := fetch("app", manifests.Latest, false)
	if err != nil || rep.Version != "1.10" {
		t.Fatalf("app@latest over app@1.9's layout: %v (version %q)", err, rep.Version)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "README")); string(b) != "1.10" {
		t.Fatalf("README: %q", b)
	}
	if _, err := os.Stat(filepath.Join(out, "bin", "a")); err == nil {
		t.Fatal("a file of the old version stayed")
	}
	os.WriteFile(filepath.Join(out, "notes.txt"), []byte("mine"), 0o644)
	if _, err := fetch("app", "1.9", false); !errors.Is(err, ErrOutInUse) || !strings.Contains(err.Error(), "notes.txt") {
		t.Fatalf("a file drepo did not put there: %v", err)
	}
	os.Remove(filepath.Join(out, "notes.txt"))
	if _, err := fetch("other", "1", false); !errors.Is(err, ErrOutInUse) {
		t.Fatalf("another app's layout over this one: %v", err)
	}
	if _, err := fetch("app", "7", false); !errors.Is(err, ErrNotPublished) || !strings.Contains(err.Error(), "available: 1.9, 1.10") {
		t.Fatalf("a version not published: %v", err)
	}
}

// store rm removes a version and the blobs no other version names; gc --partial removes
// the partial blobs of kept versions too.
func TestStoreRmAndPartialGC(t *testing.T) {
	w := newWorld(t)
	shared := randBytes(2*testChunk, 92)
	w.publish("app", "1", map[string][]byte{"shared": shared, "own": randBytes(testChunk, 93)})
	w.publish("app", "2", map[string][]byte{"shared": shared, "own": randBytes(testChunk, 94)})
	st := newStore(t)
	for _, v := range []string{"1", "2"} {
		if _, err := w.fetch(st, "app", v, source(t, "origin", w.srv.URL, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.GC(context.Background(), GCOptions{Remove: []string{"app@3"}}, nil); err == nil {
		t.Fatal("removing a version not held")
	}
	rep, err := st.GC(context.Background(), GCOptions{Remove: []string{"app@1"}}, nil)
	if err != nil || len(rep.RemovedVersions) != 1 || rep.RemovedBlobs != 2 { // its own blob and its manifest
		t.Fatalf("store rm app@1: %+v %v", rep, err)
	}
	if !st.HasBlob(manifests.SumBytes(shared), int64(len(shared))) {
		t.Fatal("a blob app@2 names was removed")
	}
	// a partial blob of a kept version: gc keeps it, gc --partial removes it
	big := randBytes(8*testChunk, 95)
	w.publish("app", "3", map[string][]byte{"big": big})
	p, err := st.OpenPartial(manifests.SumBytes(big), int64(len(big)), testChunk)
	if err != nil {
		t.Fatal(err)
	}
	markChunk(t, p, big, testChunk, 0)
	p.Close()
	m, _ := w.manifestDoc("app", "3")
	st.PutManifest(manifests.SumBytes(m), m)
	if rep, err := st.GC(context.Background(), GCOptions{}, nil); err != nil || rep.RemovedBlobs != 0 {
		t.Fatalf("gc with every version kept: %+v %v", rep, err)
	}
	rep, err = st.GC(context.Background(), GCOptions{Partial: true}, nil)
	if err != nil || rep.RemovedBlobs != 1 || rep.RemovedBytes < testChunk {
		t.Fatalf("gc --partial: %+v %v", rep, err)
	}
	if ps, _ := st.PartialBlobs(); len(ps) != 0 {
		t.Fatalf("partial blobs left: %d", len(ps))
	}
}

// manifestDoc reads app@version's manifest document from the repository.
func (w *world) manifestDoc(app, version string) ([]byte, error) {
	idx, err := os.ReadFile(filepath.Join(w.srv.Root, "index.json"))
	if err != nil {
		return nil, err
	}
	x, err := manifests.DecodeIndex(idx)
	if err != nil {
		return nil, err
	}
	e, ok := x.Find(app, version)
	if !ok {
		return nil, fmt.Errorf("%s@%s not in the index", app, version)
	}
	return os.ReadFile(filepath.Join(w.srv.Root, manifests.BlobPath(e.Manifest)))
}

// --bwlimit and --peer-bwlimit: the bytes from a repository go through the repository's
// limiter, not the peers' (the limiter's tokens show which one they took; the rate itself
// is golang.org/x/time/rate's business and the benchmark's).
func TestFetchLimitsGoWhereTheyBelong(t *testing.T) {
	w := newWorld(t)
	data := randBytes(4*testChunk, 78)
	w.publish("app", "1", map[string][]byte{"f": data})
	repoLim, peerLim := dav.NewLimiter(1<<20), dav.NewLimiter(1<<20) // 256 KiB fit the burst: no wait
	_, err := Fetch(context.Background(), FetchOptions{Store: newStore(t), Sources: []Source{source(t, "origin", w.srv.URL, 0)}, Keys: []minisign.PublicKey{w.pub},
		App: "app", Version: "1", RepoLimit: repoLim, PeerLimit: peerLim})
	if err != nil {
		t.Fatal(err)
	}
	if taken := float64(repoLim.Burst()) - repoLim.Tokens(); taken < float64(len(data))/2 {
		t.Errorf("the repository's limiter gave %.0f tokens for %d bytes", taken, len(data))
	}
	if peerLim.Tokens() < float64(peerLim.Burst()) {
		t.Error("the peers' limiter was used for a repository's bytes")
	}
}
