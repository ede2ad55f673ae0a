package webdavsrv_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drepo-dev/drepo/webdavsrv"
	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

type client struct {
	t    *testing.T
	s    *davtest.Server
	http *http.Client
}

func newClient(t *testing.T, s *davtest.Server) *client {
	return &client{t: t, s: s, http: &http.Client{}}
}

// do sends one request; auth=false sends no credentials. hdr is name, value pairs.
func (c *client) do(method, path string, body io.Reader, auth bool, hdr ...string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.s.URL+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if auth {
		req.SetBasicAuth(c.s.User, c.s.Password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (c *client) want(code int, method, path, body string, hdr ...string) string {
	c.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	resp, got := c.do(method, path, r, true, hdr...)
	if resp.StatusCode != code {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, code, got)
	}
	return got
}

// rawStatus sends a request line as typed, bypassing Go's client path cleaning.
func rawStatus(t *testing.T, s *davtest.Server, reqLine string) int {
	t.Helper()
	u, _ := url.Parse(s.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	auth := base64.StdEncoding.EncodeToString([]byte(s.User + ":" + s.Password))
	fmt.Fprintf(conn, "%s HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\nConnection: close\r\n\r\n", reqLine, u.Host, auth)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestPathEscapesRefused(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	c := newClient(t, s)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("top secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(s.Root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(s.Root, "filelink")); err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(s.Root, outside)
	for _, line := range []string{
		"GET /../../../../../../" + strings.TrimPrefix(outside, "/") + "/secret",
		"GET /%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/" + strings.TrimPrefix(outside, "/") + "/secret",
		"GET /%2E%2E%2F%2E%2E%2F" + url.PathEscape(rel) + "/secret",
		"GET /link/secret",
		"GET /filelink",
		"PUT /link/planted",
		"PROPFIND /link/",
		"DELETE /link/secret",
	} {
		if code := rawStatus(t, s, line); code < 400 {
			t.Errorf("%s: status %d, want a refusal", line, code)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "planted")); err == nil {
		t.Fatal("a PUT through a symlink wrote outside the root")
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "top secret" {
		t.Fatal("file outside the root changed")
	}
	c.want(http.StatusCreated, "PUT", "inside", "x")
	c.want(http.StatusForbidden, "MOVE", "inside", "", "Destination", s.URL+"link/moved")
	listing := c.want(207, "PROPFIND", "", "", "Depth", "1")
	if strings.Contains(listing, "link") {
		t.Errorf("PROPFIND lists symlinks that lead out of the root:\n%s", listing)
	}
}

func TestAuth(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	c := newClient(t, s)
	for _, m := range []string{"GET", "PUT", "PROPFIND", "DELETE", "MKCOL"} {
		if r, _ := c.do(m, "x", nil, false); r.StatusCode != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s without credentials: %d", m, r.StatusCode)
		}
	}
	req, _ := http.NewRequest("PUT", s.URL+"x", strings.NewReader("x"))
	req.SetBasicAuth(s.User, "wrong")
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %v %v", r, err)
	}
	// repeated good requests hit the credential cache; all must still pass
	for i := 0; i < 5; i++ {
		c.want(http.StatusCreated, "PUT", fmt.Sprintf("f%d", i), "data")
	}
	if r, _ := c.do("GET", "-/health", nil, false); r.StatusCode != 200 {
		t.Fatalf("health without credentials: %d", r.StatusCode)
	}

	anon := davtest.StartDrepo(t, davtest.DrepoOptions{AnonymousRead: true})
	ac := newClient(t, anon)
	ac.want(http.StatusCreated, "PUT", "pub", "public")
	if r, body := ac.do("GET", "pub", nil, false); r.StatusCode != 200 || body != "public" {
		t.Fatalf("anonymous GET: %d", r.StatusCode)
	}
	if r, _ := ac.do("PROPFIND", "", nil, false, "Depth", "1"); r.StatusCode != 207 {
		t.Fatalf("anonymous PROPFIND: %d", r.StatusCode)
	}
	for _, m := range []string{"PUT", "DELETE", "MKCOL", "PROPPATCH"} {
		if r, _ := ac.do(m, "pub", strings.NewReader("x"), false); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous %s: %d, want 401", m, r.StatusCode)
		}
	}
}

func TestAccessLogHasNoSecrets(t *testing.T) {
	var log strings.Builder
	s := davtest.StartDrepo(t, davtest.DrepoOptions{Log: &syncWriter{w: &log}})
	c := newClient(t, s)
	c.want(http.StatusCreated, "PUT", "a", "hello")
	c.do("GET", "a", nil, false)
	out := log.String()
	if !strings.Contains(out, "method=PUT") || !strings.Contains(out, "status=201") || !strings.Contains(out, "user=drepo") {
		t.Fatalf("access log lacks fields:\n%s", out)
	}
	if !strings.Contains(out, "bytes_in=5 ") {
		t.Fatalf("the PUT's line does not count the 5 bytes received:\n%s", out)
	}
	basic := base64.StdEncoding.EncodeToString([]byte(s.User + ":" + s.Password))
	if strings.Contains(out, s.Password) || strings.Contains(out, basic) {
		t.Fatal("access log contains credentials")
	}
}

type syncWriter struct {
	mu chan struct{}
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	if s.mu == nil {
		s.mu = make(chan struct{}, 1)
	}
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.w.Write(p)
}

func TestReprDigest(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	c := newClient(t, s)
	data := randomBytes(5<<20+3, 9)
	want := func(b []byte) string {
		sum := sha256.Sum256(b)
		return "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
	}
	c.want(http.StatusCreated, "PUT", "blob", string(data))
	for _, m := range []string{"HEAD", "GET"} {
		r, _ := c.do(m, "blob", nil, true, "Want-Repr-Digest", "sha-256=5")
		if got := r.Header.Get("Repr-Digest"); got != want(data) {
			t.Fatalf("%s after PUT: Repr-Digest %q, want %q", m, got, want(data))
		}
	}
	if r, _ := c.do("HEAD", "blob", nil, true); r.Header.Get("Repr-Digest") != "" {
		t.Fatal("Repr-Digest sent without being asked for")
	}
	if r, _ := c.do("HEAD", "blob", nil, true, "Want-Repr-Digest", "sha-256=0"); r.Header.Get("Repr-Digest") != "" {
		t.Fatal("Repr-Digest sent for preference 0")
	}
	// a file copied in by hand, then changed by hand: the digest follows the content
	hand := randomBytes(1<<20, 10)
	p := filepath.Join(s.Root, "by-hand")
	if err := os.WriteFile(p, hand, 0o644); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.do("HEAD", "by-hand", nil, true, "Want-Repr-Digest", "sha-256=1"); r.Header.Get("Repr-Digest") != want(hand) {
		t.Fatalf("hand-copied file: %q", r.Header.Get("Repr-Digest"))
	}
	if out, err := exec.Command("sha256sum", p).Output(); err == nil {
		sum := strings.Fields(string(out))[0]
		h := sha256.Sum256(hand)
		if sum != fmt.Sprintf("%x", h) {
			t.Fatal("sha256sum disagrees")
		}
	}
	hand[0] ^= 1
	if err := os.WriteFile(p, append(hand, 'x'), 0o644); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.do("HEAD", "by-hand", nil, true, "Want-Repr-Digest", "sha-256=1"); r.Header.Get("Repr-Digest") != want(append(hand, 'x')) {
		t.Fatal("digest not invalidated after the file changed")
	}
}

func TestRangeAndConditional(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	c := newClient(t, s)
	data := randomBytes(100000, 3)
	c.want(http.StatusCreated, "PUT", "r", string(data))
	r, body := c.do("GET", "r", nil, true, "Range", "bytes=10-19")
	if r.StatusCode != http.StatusPartialContent || body != string(data[10:20]) {
		t.Fatalf("Range: %d", r.StatusCode)
	}
	etag := r.Header.Get("ETag")
	if r, _ := c.do("GET", "r", nil, true, "If-None-Match", etag); r.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", r.StatusCode)
	}
	if r, body := c.do("GET", "r", nil, true, "Range", "bytes=0-0", "If-Range", `"stale"`); r.StatusCode != 200 || len(body) != len(data) {
		t.Fatalf("If-Range with a stale ETag: %d", r.StatusCode)
	}
	if r, _ := c.do("GET", "r", nil, true, "Range", "bytes=0-0", "If-Range", etag); r.StatusCode != http.StatusPartialContent {
		t.Fatalf("If-Range with the current ETag: %d", r.StatusCode)
	}
}

func TestMoveOverwriteDefaultsToT(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	c := newClient(t, s)
	c.want(http.StatusCreated, "PUT", "new", "new content")
	c.want(http.StatusCreated, "PUT", "index.json", "old content")
	c.want(http.StatusNoContent, "MOVE", "new", "", "Destination", s.URL+"index.json")
	if got := c.want(200, "GET", "index.json", ""); got != "new content" {
		t.Fatalf("after MOVE: %q", got)
	}
	c.want(http.StatusCreated, "PUT", "other", "other")
	c.want(http.StatusPreconditionFailed, "MOVE", "other", "", "Destination", s.URL+"index.json", "Overwrite", "F")
	c.want(http.StatusNoContent, "COPY", "other", "", "Destination", s.URL+"index.json")
	if got := c.want(200, "GET", "index.json", ""); got != "other" {
		t.Fatalf("after COPY: %q", got)
	}
}

func TestInternalFilesHidden(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	c := newClient(t, s)
	if err := os.WriteFile(filepath.Join(s.Root, ".drepo-tmp-leftover"), []byte("debris"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := c.want(207, "PROPFIND", "", "", "Depth", "1"); strings.Contains(got, ".drepo-") {
		t.Fatalf("PROPFIND shows internal files:\n%s", got)
	}
	c.want(http.StatusNotFound, "GET", ".drepo-tmp-leftover", "")
	c.want(http.StatusNotFound, "PUT", ".drepo-tmp-x", "x")
	c.want(http.StatusNotFound, "DELETE", ".drepo-tmp-leftover", "")
}

func TestLimitsAndDepth(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{MaxUpload: 1000, NoDepthInfinity: true})
	c := newClient(t, s)
	c.want(http.StatusCreated, "PUT", "small", strings.Repeat("x", 1000))
	c.want(http.StatusRequestEntityTooLarge, "PUT", "big", strings.Repeat("x", 1001))
	// a chunked body (no Content-Length) over the limit
	pr, pw := io.Pipe()
	go func() { pw.Write([]byte(strings.Repeat("y", 5000))); pw.Close() }()
	if r, _ := c.do("PUT", "chunked", pr, true); r.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked over the limit: %d", r.StatusCode)
	}
	c.want(http.StatusNotFound, "GET", "chunked", "")
	c.want(http.StatusForbidden, "PROPFIND", "", "", "Depth", "infinity")
	c.want(207, "PROPFIND", "", "", "Depth", "1")
	big := `<?xml version="1.0"?><propfind xmlns="DAV:"><prop>` + strings.Repeat("<getetag/>", 200000) + `</prop></propfind>`
	c.want(http.StatusRequestEntityTooLarge, "PROPFIND", "", big, "Depth", "0")
	c.want(http.StatusBadRequest, "PROPFIND", "", `<propfind xmlns="DAV:"><prop><bar:foo xmlns:bar=""/></prop></propfind>`, "Depth", "0")
	c.want(http.StatusBadRequest, "PROPFIND", "", `<propfind xmlns="DAV:"><prop><x:foo/></prop></propfind>`, "Depth", "0")
	c.want(http.StatusBadRequest, "PROPFIND", "", `<propfind xmlns="DAV:">`, "Depth", "0")

	open := davtest.StartDrepo(t, davtest.DrepoOptions{})
	newClient(t, open).want(207, "PROPFIND", "", "", "Depth", "infinity")
}

// TestInterruptedPutKeepsOldFile kills curl in the middle of a 1 GiB PUT: the old file must
// stay intact and no temporary file may show, in PROPFIND, on GET or on disk once the
// server noticed the client is gone.
func TestInterruptedPutKeepsOldFile(t *testing.T) {
	curl := davtest.NeedTool(t, "curl")
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	c := newClient(t, s)
	c.want(http.StatusCreated, "PUT", "image.bin", "previous version")
	big := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil { // sparse: 1 GiB without using the disk
		t.Fatal(err)
	}
	f.Close()
	cmd := exec.Command(curl, "-sS", "-u", s.User+":"+s.Password, "--limit-rate", "50M", "-T", big, s.URL+"image.bin")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// wait until the upload is under way on the server's disk, then kill the client
	tmp := waitFor(t, 30*time.Second, func() string {
		m, _ := filepath.Glob(filepath.Join(s.Root, ".drepo-*"))
		for _, p := range m {
			if fi, err := os.Stat(p); err == nil && fi.Size() > 1<<20 {
				return p
			}
		}
		return ""
	})
	if got := c.want(207, "PROPFIND", "", "", "Depth", "1"); strings.Contains(got, ".drepo") {
		t.Fatalf("upload temporary visible in PROPFIND:\n%s", got)
	}
	if got := c.want(200, "GET", "image.bin", ""); got != "previous version" {
		t.Fatalf("during the upload GET returns %q", got)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	waitFor(t, 30*time.Second, func() string {
		if _, err := os.Stat(tmp); os.IsNotExist(err) {
			return "gone"
		}
		return ""
	})
	if got := c.want(200, "GET", "image.bin", ""); got != "previous version" {
		t.Fatalf("after the killed upload GET returns %q", got)
	}
	if m, _ := filepath.Glob(filepath.Join(s.Root, ".drepo-*")); len(m) != 0 {
		t.Fatalf("debris left: %v", m)
	}
}

// waitFor polls cond until it returns non-empty or limit passes (a bound, not a timing claim).
func waitFor(t *testing.T, limit time.Duration, cond func() string) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if v := cond(); v != "" {
			return v
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s", limit)
	return ""
}

func TestTLS(t *testing.T) {
	var pool *x509.CertPool
	s := davtest.StartDrepo(t, davtest.DrepoOptions{TLS: true, Pool: &pool})
	c := newClient(t, s)
	c.http = &http.Client{Transport: &http.Transport{TLSClientConfig: davtest.TLSClientConfig(pool)}}
	c.want(http.StatusCreated, "PUT", "tls", "over tls")
	if got := c.want(200, "GET", "tls", ""); got != "over tls" {
		t.Fatalf("GET over TLS: %q", got)
	}
	// a client that does not trust the certificate is refused by TLS itself
	if _, err := http.Get(s.URL + "tls"); err == nil {
		t.Fatal("untrusted certificate accepted")
	}
}

func TestBadTLSPairNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	cert, key, _ := davtest.GenerateCert(t, dir, "127.0.0.1")
	other, otherKey, _ := davtest.GenerateCert(t, dir, "localhost")
	_ = other
	missing := filepath.Join(dir, "missing.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ cert, key, name string }{
		{missing, key, missing}, {cert, missing, missing}, {garbage, key, garbage}, {cert, otherKey, otherKey},
	} {
		_, err := webdavsrv.LoadTLS(c.cert, c.key)
		if err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("LoadTLS(%s, %s) = %v, want an error naming %s", c.cert, c.key, err, c.name)
		}
		err = webdavsrv.ListenAndServe(context.Background(), http.NotFoundHandler(),
			webdavsrv.ListenOptions{Addr: "127.0.0.1:0", TLSCert: c.cert, TLSKey: c.key}, discardLog())
		if err == nil {
			t.Errorf("server started with a bad pair %s / %s", c.cert, c.key)
		}
	}
}

func TestConditionalPut(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	c := newClient(t, s)
	c.want(http.StatusCreated, "PUT", "lease", "mine", "If-None-Match", "*")
	c.want(http.StatusPreconditionFailed, "PUT", "lease", "theirs", "If-None-Match", "*")
	r, _ := c.do("HEAD", "lease", nil, true)
	tag := r.Header.Get("ETag")
	c.want(http.StatusPreconditionFailed, "PUT", "lease", "theirs", "If-Match", `"not-it"`)
	c.want(http.StatusCreated, "PUT", "lease", "renewed", "If-Match", tag)
	c.want(http.StatusPreconditionFailed, "PUT", "nothing-here", "x", "If-Match", "*")
	if got := c.want(200, "GET", "lease", ""); got != "renewed" {
		t.Fatalf("lease: %q", got)
	}
}
