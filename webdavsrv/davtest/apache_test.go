package davtest

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestApache checks the helper gives a working, authenticated mod_dav: PUT, GET, PROPFIND,
// MKCOL, 401 without credentials, and the file lands under Root.
func TestApache(t *testing.T) {
	s := StartApache(t)
	do := func(method, path, body string, auth bool, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		if auth {
			req.SetBasicAuth(s.User, s.Password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if r, _ := do("GET", "", "", false); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d, want 401", r.StatusCode)
	}
	if r, _ := do("MKCOL", "sub/", "", true); r.StatusCode != http.StatusCreated {
		t.Fatalf("MKCOL: %d", r.StatusCode)
	}
	if r, _ := do("PUT", "sub/hello.txt", "hello", true); r.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d", r.StatusCode)
	}
	if r, body := do("GET", "sub/hello.txt", "", true); r.StatusCode != 200 || body != "hello" {
		t.Fatalf("GET: %d %q", r.StatusCode, body)
	}
	if r, body := do("PROPFIND", "sub/", "", true, "Depth", "1"); r.StatusCode != 207 || !strings.Contains(body, "hello.txt") {
		t.Fatalf("PROPFIND: %d %s", r.StatusCode, body)
	}
	if b, err := os.ReadFile(filepath.Join(s.Root, "sub", "hello.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("file not under Root: %v %q", err, b)
	}
}
