package webdavsrv_test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// COPY or MOVE of a folder or file onto itself, however spelled, or into itself, is refused
// and changes nothing.
func TestCopyMoveOntoOrIntoItself(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	c := newClient(t, s)
	c.want(http.StatusCreated, "MKCOL", "v/", "")
	c.want(http.StatusCreated, "PUT", "v/file", "content")
	c.want(http.StatusCreated, "PUT", "a", "abc")
	host := strings.TrimSuffix(s.URL, "/")
	for _, m := range []string{"COPY", "MOVE"} {
		for _, tc := range []struct{ src, dst string }{
			{"v/", host + "/v"}, {"v", host + "/v/"}, {"v/", host + "/v/sub"}, {"v", host + "/./v/../v/x"},
			{"a", host + "/a"}, {"a", host + "/a/x"}, {"v/file", host + "/v//file"},
		} {
			resp, body := c.do(m, tc.src, nil, true, "Destination", tc.dst)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s → %s: %d %s, want 403", m, tc.src, tc.dst, resp.StatusCode, body)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(s.Root, "v", "file")); err != nil || string(b) != "content" {
		t.Fatalf("v/file after the refused requests: %q %v", b, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root, "v")); len(ents) != 1 {
		t.Fatalf("v holds %d entries, want 1", len(ents))
	}
	// a COPY elsewhere still works
	c.want(http.StatusCreated, "COPY", "v/", "", "Destination", host+"/w/")
}

// startPut opens a raw connection and sends a PUT's headers and the first bytes of its body,
// then leaves it open; the caller closes it.
func startPut(t *testing.T, s *davtest.Server, path string, declared int, sent string, hdr ...string) net.Conn {
	t.Helper()
	u, _ := url.Parse(s.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte(s.User + ":" + s.Password))
	fmt.Fprintf(conn, "PUT /%s HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\nContent-Length: %d\r\n", path, u.Host, auth, declared)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(conn, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	fmt.Fprintf(conn, "\r\n%s", sent)
	return conn
}

// A conditional PUT whose body stalls holds no lock over other conditional PUTs, and the
// server cuts its body after BodyStall without applying it. (The same file answers 423
// meanwhile: x/net/webdav locks a resource for the length of a write to it.)
func TestConditionalPutBodyHoldsNoLock(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{BodyStall: time.Second})
	stalled := startPut(t, s, "lease.json", 10_000_000, "0123456789", "If-None-Match", "*")
	defer stalled.Close()
	c := newClient(t, s)
	// another writer's conditional PUT on another file is not blocked
	c.want(http.StatusCreated, "PUT", "other.json", "x", "If-None-Match", "*")
	// the stalled upload is cut by the server, and never replaces the lease
	stalled.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(stalled), nil)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the server did not cut the stalled body")
	}
	if _, err := os.Stat(filepath.Join(s.Root, "lease.json")); err == nil {
		t.Fatal("the cut upload was applied")
	}
	c.want(http.StatusCreated, "PUT", "lease.json", "mine", "If-None-Match", "*")
}

// An anonymous PROPFIND that declares a body and sends one byte is cut after BodyStall.
func TestStalledPropfindBodyIsCut(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{AnonymousRead: true, BodyStall: time.Second})
	u, _ := url.Parse(s.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PROPFIND / HTTP/1.1\r\nHost: %s\r\nDepth: 1\r\nContent-Length: 1048576\r\n\r\n<", u.Host)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the server held the connection of a stalled PROPFIND body")
	}
}

// A LOCK with a huge owner is refused; PROPFIND naming too many properties is refused.
func TestLockOwnerAndPropfindPropsBounded(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	c := newClient(t, s)
	owner := strings.Repeat("x", 50_000)
	body := `<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>` + owner + `</D:owner></D:lockinfo>`
	if r, _ := c.do("LOCK", "l", strings.NewReader(body), true, "Timeout", "Infinite"); r.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("LOCK with a 50 KB owner: %d, want 413", r.StatusCode)
	}
	var props strings.Builder
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&props, "<D:p%d/>", i)
	}
	pf := `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>` + props.String() + `</D:prop></D:propfind>`
	if r, _ := c.do("PROPFIND", "", strings.NewReader(pf), true, "Depth", "1"); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("PROPFIND of 1000 properties: %d, want 400", r.StatusCode)
	}
}

// Upload temporaries a killed server left are removed when the next one starts; a fresh
// one (a live upload of another server on the same root) is kept.
func TestDebrisRemovedAtStart(t *testing.T) {
	root := t.TempDir()
	old := filepath.Join(root, "blobs", ".drepo-tmp-0123456789abcdef")
	fresh := filepath.Join(root, ".drepo-tmp-fedcba9876543210")
	os.MkdirAll(filepath.Dir(old), 0o755)
	os.WriteFile(old, []byte("half an upload"), 0o644)
	os.WriteFile(fresh, []byte("in progress"), 0o644)
	past := time.Now().Add(-time.Hour)
	os.Chtimes(old, past, past)
	davtest.StartDrepo(t, davtest.DrepoOptions{Root: root})
	if _, err := os.Stat(old); err == nil {
		t.Fatal("stale temporary kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatal("a fresh temporary was removed")
	}
}
