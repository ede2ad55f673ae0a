package mirror

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
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

	"github.com/drepo-dev/drepo/mirror/dav"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// hostileProxy forwards to a real server unless override answers the request itself; it
// records every request line.
type hostileProxy struct {
	URL  string
	mu   sync.Mutex
	seen []string
}

func newHostileProxy(t *testing.T, s *davtest.Server, override func(w http.ResponseWriter, r *http.Request) bool) *hostileProxy {
	target, _ := url.Parse(s.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	hp := &hostileProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hp.mu.Lock()
		hp.seen = append(hp.seen, r.Method+" "+r.URL.RawPath+r.URL.Path)
		hp.mu.Unlock()
		if override != nil && override(w, r) {
			return
		}
		if d := r.Header.Get("Destination"); d != "" {
			r.Header.Set("Destination", strings.Replace(d, hp.URL, s.URL, 1))
		}
		r.Host = target.Host
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	hp.URL = srv.URL + "/"
	return hp
}

// Redirects to another port, or from https down to http, are refused before any request
// (and so any credential) reaches the other side, and are not retried.
func TestRedirectsToOtherOriginsRefused(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		http.Error(w, "should never be asked", http.StatusTeapot)
	}))
	defer other.Close()
	redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	})
	plain := httptest.NewServer(redirect)
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(redirect)
	defer tlsSrv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o644)
	for _, r := range []dav.Repository{
		{Name: "port", URL: plain.URL + "/", Username: "u", Password: dav.NewSecret("p")},
		{Name: "downgrade", URL: tlsSrv.URL + "/", Username: "u", Password: dav.NewSecret("p"), CACert: ca},
	} {
		w, err := dav.Open(r, 1)
		if err != nil {
			t.Fatal(err)
		}
		_, err = dav.ReadIndex(context.Background(), w, nil, dav.ReadOptions{})
		if !errors.Is(err, dav.ErrRedirectRefused) || !strings.Contains(err.Error(), "redirect to another scheme, host or port refused") {
			t.Errorf("%s: %v, want ErrRedirectRefused", r.Name, err)
		}
		if _, err := w.List(context.Background(), "blobs"); !errors.Is(err, dav.ErrRedirectRefused) {
			t.Errorf("%s: PROPFIND through gowebdav's path: %v", r.Name, err)
		}
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("%d requests reached the other origin", n)
	}
}

// A certificate that does not verify fails at once with a clear error; a connection per
// try shows it is not retried.
func TestTLSFailureNotRetried(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	w, _ := dav.Open(dav.Repository{Name: "r", URL: srv.URL + "/"}, 1)
	_, err := dav.ReadIndex(context.Background(), w, nil, dav.ReadOptions{})
	if !errors.Is(err, dav.ErrTLSVerify) || dav.Retryable(err) {
		t.Fatalf("want a final ErrTLSVerify, got %v", err)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1 (no retries)", n)
	}
}

// A listing that names files outside the folder asked for, or with "..", is never acted on:
// sync --full sends no DELETE for them and the live index stays.
func TestHostileListingNamesSkipped(t *testing.T) {
	ctx := context.Background()
	key, pub := testKeys(t)
	srv := davtest.StartDrepo(t, davtest.DrepoOptions{})
	hostile := newHostileProxy(t, srv, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != "PROPFIND" || !strings.HasPrefix(r.URL.Path, "/tmp") {
			return false
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusMultiStatus)
		io.WriteString(w, `<?xml version="1.0"?><D:multistatus xmlns:D="DAV:">`)
		for _, href := range []string{"/tmp/", "/tmp/../index.json", "/../../etc/passwd", "/tmp/%2e%2e/index.json", "/tmp/a%0d%0ab", "/index.json", "http://elsewhere.example/tmp/x"} {
			fmt.Fprintf(w, `<D:response><D:href>%s</D:href><D:propstat><D:prop><D:getcontentlength>1</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>`, href)
		}
		io.WriteString(w, `</D:multistatus>`)
		return true
	})
	r := dav.Repository{Name: "r", URL: hostile.URL, Username: srv.User, Password: dav.NewSecret(srv.Password)}
	opt := syncOpts(t, makeSource(t), key, r)
	if rep, err := Sync(ctx, opt); err != nil || rep.Failed() {
		t.Fatalf("sync: %+v %v", rep, err)
	}
	opt.Full = true
	if rep, err := Sync(ctx, opt); err != nil || rep.Failed() {
		t.Fatalf("sync --full: %+v %v", rep, err)
	}
	hostile.mu.Lock()
	for _, line := range hostile.seen {
		if strings.HasPrefix(line, "DELETE") && !strings.HasPrefix(line, "DELETE /lease.json") {
			t.Errorf("sent %s", line)
		}
	}
	hostile.mu.Unlock()
	w, _ := dav.Open(repoOf(srv, "r", 0), 4)
	if v := Verify(ctx, repoOf(srv, "r", 0), w, VerifyOptions{Keys: []minisign.PublicKey{pub}}); !v.OK {
		t.Fatalf("the repository is damaged: %+v", v)
	}
}

// verify --deep reads the bytes: a flipped byte that keeps size and mtime (bit rot) is found
// although drepo serve's digest cache still vouches for the old bytes; the cheap
// ServerDigest mode trusts that cache, as documented.
func TestDeepVerifyDownloadsDespiteDigestCache(t *testing.T) {
	ctx := context.Background()
	key, pub := testKeys(t)
	srv := davtest.StartDrepo(t, davtest.DrepoOptions{})
	r := repoOf(srv, "r", 0)
	if rep, err := Sync(ctx, syncOpts(t, makeSource(t), key, r)); err != nil || rep.Failed() {
		t.Fatalf("sync: %+v %v", rep, err)
	}
	w, _ := dav.Open(r, 4)
	keys := []minisign.PublicKey{pub}
	if v := Verify(ctx, r, w, VerifyOptions{Keys: keys, Deep: true, ServerDigest: true}); !v.OK || v.Deep != "server digest" {
		t.Fatalf("digest verify (fills the cache): %+v", v)
	}
	var victim string
	for p := range diskFiles(t, srv.Root) {
		if fi, _ := os.Stat(filepath.Join(srv.Root, p)); strings.HasPrefix(p, "blobs/") && fi.Size() == 300000 {
			victim = filepath.Join(srv.Root, p)
		}
	}
	fi, _ := os.Stat(victim)
	f, _ := os.OpenFile(victim, os.O_RDWR, 0)
	f.WriteAt([]byte{0x55}, 4242)
	f.Close()
	os.Chtimes(victim, fi.ModTime(), fi.ModTime())

	v := Verify(ctx, r, w, VerifyOptions{Keys: keys, Deep: true})
	if v.OK || len(v.Problems) != 1 || v.Problems[0].Kind != "content" || v.Deep != "download" {
		t.Fatalf("--deep after bit rot: %+v", v)
	}
	if v := Verify(ctx, r, w, VerifyOptions{Keys: keys, Deep: true, ServerDigest: true}); !v.OK {
		t.Fatalf("--server-digest was expected to trust the cache (documented): %+v", v)
	}
}
