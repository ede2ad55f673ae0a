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
