package mirror

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drepo-dev/drepo/mirror/dav"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// readRepoIndex reads the index a repository serves now, straight from the server's disk.
func readRepoIndex(t *testing.T, s *davtest.Server) *manifests.Index {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Root, dav.IndexName))
	if err != nil {
		t.Fatal(err)
	}
	x, err := manifests.DecodeIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// An empty (unmounted) source must not publish an empty catalogue, nor drop the hash cache.
func TestSyncRefusesToEmptyTheCatalogue(t *testing.T) {
	ctx := context.Background()
	key, _ := testKeys(t)
	src := makeSource(t)
	srv := davtest.StartDrepo(t, davtest.DrepoOptions{})
	opt := syncOpts(t, src, key, repoOf(srv, "main", 10))
	if rep, err := Sync(ctx, opt); err != nil || rep.Failed() {
		t.Fatalf("first sync: %+v %v", rep, err)
	}
	cacheBefore, err := os.ReadFile(filepath.Join(opt.StateDir, "hashcache.json"))
	if err != nil {
		t.Fatal(err)
	}

	empty := t.TempDir()
	opt.Source = empty
	_, err = Sync(ctx, opt)
	if !errors.Is(err, ErrRemovals) || !strings.Contains(err.Error(), "4 of the 4") || !strings.Contains(err.Error(), "tools@1.0") {
		t.Fatalf("empty source: want ErrRemovals naming what would go, got %v", err)
	}
	if x := readRepoIndex(t, srv); x.Serial != 1 || len(x.Apps) != 4 {
		t.Fatalf("the repository's index changed: serial %d, %d versions", x.Serial, len(x.Apps))
	}
	if b, _ := os.ReadFile(filepath.Join(opt.StateDir, "hashcache.json")); !bytes.Equal(b, cacheBefore) {
		t.Fatal("a refused sync rewrote the hash cache")
	}

	// half or less may go without a word; more than half needs AllowRemovals
	opt.Source = src
	os.RemoveAll(filepath.Join(src, "tools"))
	opt.DryRun = true
	rep, err := Sync(ctx, opt)
	if err != nil || len(rep.RemovedVersions) != 1 || rep.RemovedVersions[0] != "tools@1.0" {
		t.Fatalf("dry run removing one of four: %+v %v", rep, err)
	}
	opt.DryRun = false
	opt.Source = empty
	opt.AllowRemovals = true
	rep, err = Sync(ctx, opt)
	if err != nil || rep.Failed() || len(rep.RemovedVersions) != 4 || rep.Versions != 0 {
		t.Fatalf("--allow-removals: %+v %v", rep, err)
	}
}

// A signing key that trusted keys do not name is refused before any repository is touched.
func TestSyncRefusesUntrustedSigningKey(t *testing.T) {
	key, _ := testKeys(t)
	_, trusted := testKeys(t)
	srv := davtest.StartDrepo(t, davtest.DrepoOptions{})
	proxy := newCountingProxy(t, srv)
	opt := syncOpts(t, makeSource(t), key, dav.Repository{Name: "main", URL: proxy.URL, Username: srv.User, Password: dav.NewSecret(srv.Password)})
	opt.Keys = []minisign.PublicKey{trusted}
	if _, err := Sync(context.Background(), opt); !errors.Is(err, ErrUntrustedKey) {
		t.Fatalf("want ErrUntrustedKey, got %v", err)
	}
	if n := proxy.n.Load(); n != 0 {
		t.Fatalf("%d requests reached the repository", n)
	}
}

// A serial is never signed twice: not after switching keys and back, not after losing
// state_dir, and never past 2^53.
func TestSyncNeverReusesASerial(t *testing.T) {
	ctx := context.Background()
	keyA, _ := testKeys(t)
	keyB, _ := testKeys(t)
	src := makeSource(t)
	srv := davtest.StartDrepo(t, davtest.DrepoOptions{})
	opt := syncOpts(t, src, keyA, repoOf(srv, "main", 10))
	addVersion := func(v string) {
		os.MkdirAll(filepath.Join(src, "extra", v), 0o755)
		os.WriteFile(filepath.Join(src, "extra", v, "f"), []byte(v), 0o644)
	}
	seen := map[uint64][]byte{}
	run := func(what string, want uint64) {
		t.Helper()
		rep, err := Sync(ctx, opt)
		if err != nil || rep.Failed() || rep.Serial != want {
			t.Fatalf("%s: want serial %d: %+v %v", what, want, rep, err)
		}
		b, _ := os.ReadFile(filepath.Join(srv.Root, dav.IndexName))
		if old, ok := seen[want]; ok && !bytes.Equal(old, b) {
			t.Fatalf("%s: serial %d signed twice with different content", what, want)
		}
		seen[want] = b
	}
	run("key A", 1)
	// another key (no trusted keys set, as a careless admin would) publishes serial 2
	opt.SigningKey = keyB
	addVersion("1")
	run("key B", 2)
	// back to key A with the same state: above 2, although A never signed 2
	opt.SigningKey = keyA
	addVersion("2")
	run("back to key A", 3)
	// state lost and key switched: the repository's index still says 3
	opt.StateDir = filepath.Join(t.TempDir(), "lost")
	opt.SigningKey = keyB
	addVersion("3")
	run("lost state", 4)
	// unchanged source, state lost again: the newest index is re-used, not re-signed
	opt.StateDir = filepath.Join(t.TempDir(), "lost2")
	run("no-op without state", 4)

	// an absurd serial on a repository is an error, not something to wrap past
	doc, _ := (&manifests.Index{Serial: MaxSerial + 5, Created: time.Now()}).Encode()
	os.WriteFile(filepath.Join(srv.Root, dav.IndexName), doc, 0o644)
	addVersion("4")
	if _, err := Sync(ctx, opt); !errors.Is(err, ErrSerialRange) {
		t.Fatalf("serial above 2^53: want ErrSerialRange, got %v", err)
	}
}

// A published app version is immutable: a changed file stops the run, naming version and
// file, unless Republish names the version.
func TestSyncRefusesChangedPublishedVersion(t *testing.T) {
	ctx := context.Background()
	key, _ := testKeys(t)
	src := makeSource(t)
	srv := davtest.StartDrepo(t, davtest.DrepoOptions{})
	opt := syncOpts(t, src, key, repoOf(srv, "main", 10))
	if rep, err := Sync(ctx, opt); err != nil || rep.Failed() {
		t.Fatalf("first sync: %+v %v", rep, err)
	}
	os.WriteFile(filepath.Join(src, "tools", "1.0", "bin", "t03"), []byte("edited"), 0o644)
	// a fresh state must not help: the repository's index says what was published
	opt.StateDir = filepath.Join(t.TempDir(), "fresh")
	_, err := Sync(ctx, opt)
	if !errors.Is(err, ErrRepublish) || !strings.Contains(err.Error(), "tools@1.0: changed bin/t03") {
		t.Fatalf("want ErrRepublish naming tools@1.0 and bin/t03, got %v", err)
	}
	if x := readRepoIndex(t, srv); x.Serial != 1 {
		t.Fatalf("index replaced: serial %d", x.Serial)
	}
	opt.Republish = []string{"tools@1.0"}
	if rep, err := Sync(ctx, opt); err != nil || rep.Failed() || rep.Serial != 2 {
		t.Fatalf("--republish: %+v %v", rep, err)
	}
}

// Retention is a setting: every sync with Keep publishes the same catalogue, and a dry run
// counts the blobs the real run removes.
func TestSyncRetentionIsStable(t *testing.T) {
	ctx := context.Background()
	key, _ := testKeys(t)
	src := makeSource(t)
	srv := davtest.StartDrepo(t, davtest.DrepoOptions{})
	opt := syncOpts(t, src, key, repoOf(srv, "main", 10))
	if rep, err := Sync(ctx, opt); err != nil || rep.Failed() {
		t.Fatalf("first sync: %+v %v", rep, err)
	}
	opt.KeepApps = map[string]int{"base_system": 1}
	opt.DryRun = true
	plan, err := Sync(ctx, opt)
	if err != nil || plan.Repos[0].Removed == 0 || len(plan.RemovedVersions) != 1 {
		t.Fatalf("dry run: %+v %v", plan, err)
	}
	opt.DryRun = false
	rep, err := Sync(ctx, opt)
	if err != nil || rep.Failed() || rep.Repos[0].Removed != plan.Repos[0].Removed {
		t.Fatalf("pruning sync removed %+v, the dry run said %d (%v)", rep.Repos, plan.Repos[0].Removed, err)
	}
	rep, err = Sync(ctx, opt)
	if err != nil || rep.Failed() || rep.Changed || rep.Repos[0].Status != StatusUpToDate {
		t.Fatalf("the next sync with the same retention changed the catalogue: %+v %v", rep, err)
	}
	if x := readRepoIndex(t, srv); len(x.Apps) != 3 {
		t.Fatalf("index holds %d versions, want 3", len(x.Apps))
	}
}

// lockedBuffer is a log destination that goroutines share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// hungServer accepts connections and never answers; it reports whether its first
// connection is still open.
type hungServer struct {
	ln        net.Listener
	accepted  atomic.Int64
	firstDone atomic.Bool
}

func startHungServer(t *testing.T) *hungServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hungServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			first := h.accepted.Add(1) == 1
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				if first {
					h.firstDone.Store(true)
				}
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return h
}

// A hung and a refusing repository do not hold up a healthy one: its new index is in place
// while the hung server still holds the first request open.
func TestSyncRepositoriesRunIndependently(t *testing.T) {
	key, _ := testKeys(t)
	src := makeSource(t)
	srv := davtest.StartDrepo(t, davtest.DrepoOptions{})
	good := repoOf(srv, "good", 10)
	opt := syncOpts(t, src, key, good)
	if rep, err := Sync(context.Background(), opt); err != nil || rep.Failed() {
		t.Fatalf("first sync: %+v %v", rep, err)
	}
	hung := startHungServer(t)
	refused, _ := net.Listen("tcp", "127.0.0.1:0")
	refusedURL := "http://" + refused.Addr().String() + "/"
	refused.Close()
	opt.Repos = []dav.Repository{
		{Name: "hung", URL: "http://" + hung.ln.Addr().String() + "/", SmallTimeout: 30 * time.Second},
		{Name: "refused", URL: refusedURL},
		good,
	}
	os.MkdirAll(filepath.Join(src, "new", "1"), 0o755)
	os.WriteFile(filepath.Join(src, "new", "1", "f"), []byte("new"), 0o644)

	var logs lockedBuffer
	opt.Log = slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan *SyncReport, 1)
	go func() {
		rep, err := Sync(ctx, opt)
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	for !strings.Contains(logs.String(), `msg="sync done" repository=good status=updated`) {
		select {
		case rep := <-done:
			t.Fatalf("sync ended before the good repository was done: %+v", rep)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if x := readRepoIndex(t, srv); x.Serial != 2 {
		t.Fatalf("the good repository holds serial %d, want 2", x.Serial)
	}
	if hung.accepted.Load() == 0 || hung.firstDone.Load() {
		t.Fatalf("the hung server's first request is not open any more (accepted %d)", hung.accepted.Load())
	}
	cancel()
	rep := <-done
	if rep == nil {
		t.Fatal("no report")
	}
	for _, r := range rep.Repos {
		if want := map[string]string{"hung": StatusFailed, "refused": StatusFailed, "good": StatusUpdated}[r.Name]; r.Status != want {
			t.Errorf("%s: %s (%s), want %s", r.Name, r.Status, r.Error, want)
		}
	}
}

// A sync frozen past its lease's stale time, while another sync took over, published and
// pruned, must not commit when it wakes up: it proves it still holds the lease first.
func TestSyncThatLostItsLeaseDoesNotCommit(t *testing.T) {
	ctx := context.Background()
	key, _ := testKeys(t)
	src := makeSource(t)
	srv := davtest.StartDrepo(t, davtest.DrepoOptions{})
	first := syncOpts(t, src, key, repoOf(srv, "main", 10))
	if rep, err := Sync(ctx, first); err != nil || rep.Failed() {
		t.Fatalf("first sync: %+v %v", rep, err)
	}

	// sync A: its uploads go through a proxy that holds the first blob PUT until released
	target, _ := url.Parse(srv.URL)
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/") {
			once.Do(func() { close(held); <-release })
		}
		if d := r.Header.Get("Destination"); d != "" {
			r.Header.Set("Destination", strings.Replace(d, "http://"+r.Host, srv.URL[:len(srv.URL)-1], 1))
		}
		r.Host = target.Host
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	optA := syncOpts(t, src, key, dav.Repository{Name: "main", URL: proxy.URL + "/", Username: srv.User, Password: dav.NewSecret(srv.Password)})
	optA.LeaseStale = time.Hour // A does not renew during the test
	os.MkdirAll(filepath.Join(src, "a", "1"), 0o755)
	os.WriteFile(filepath.Join(src, "a", "1", "f"), []byte("from A"), 0o644)
	done := make(chan *SyncReport, 1)
	go func() {
		rep, err := Sync(ctx, optA)
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	<-held

	// sync B takes the (stale to it) lease over, publishes serial 2 and prunes
	optB := syncOpts(t, src, key, repoOf(srv, "main", 10))
	optB.LeaseStale = time.Nanosecond
	optB.KeepApps = map[string]int{"base_system": 1}
	rep, err := Sync(ctx, optB)
	if err != nil || rep.Failed() || rep.Serial != 2 || rep.Repos[0].Removed == 0 {
		t.Fatalf("sync B: %+v %v", rep, err)
	}
	indexB, _ := os.ReadFile(filepath.Join(srv.Root, dav.IndexName))

	close(release)
	repA := <-done
	if repA == nil || repA.Repos[0].Status != StatusFailed || !strings.Contains(repA.Repos[0].Error, "lost the repository lease") {
		t.Fatalf("sync A after losing its lease: %+v", repA)
	}
	if b, _ := os.ReadFile(filepath.Join(srv.Root, dav.IndexName)); !bytes.Equal(b, indexB) {
		t.Fatal("sync A replaced the index after losing its lease")
	}
}
