package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

func TestServeRefusesBadSetup(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	t.Setenv("PW", "secret-pw")
	if code, _, errs := drepo(t, "htpasswd", "--password-env", "PW", users, "admin"); code != 0 {
		t.Fatalf("htpasswd: %d %s", code, errs)
	}
	if b, _ := os.ReadFile(users); !bytes.HasPrefix(b, []byte("admin:$2a$")) || bytes.Contains(b, []byte("secret-pw")) {
		t.Fatalf("htpasswd file: %q", b)
	}
	cert, key, _ := davtest.GenerateCert(t, dir, "127.0.0.1")
	missing := filepath.Join(dir, "nope.pem")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--root", dir}, "no htpasswd"},
		{[]string{"serve", "--root", filepath.Join(dir, "missing"), "--htpasswd", users}, "missing"},
		{[]string{"serve", "--root", dir, "--htpasswd", users, "--listen", "127.0.0.1:0", "--tls-cert", missing, "--tls-key", key}, missing},
		{[]string{"serve", "--root", dir, "--htpasswd", users, "--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", missing}, missing},
		{[]string{"serve", "--root", dir, "--htpasswd", users, "--max-upload", "lots"}, "max-upload"},
	}
	for _, c := range cases {
		code, _, errs := drepo(t, c.args...)
		if code != exitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("drepo %v: exit %d, stderr %q; want exit 2 naming %q", c.args, code, errs, c.want)
		}
	}
}

// TestServeRunsAndStops runs the serve command itself, uploads through it, and stops it the
// way SIGTERM does (the context ends): it must exit 0.
func TestServeRunsAndStops(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users")
	t.Setenv("PW", "pw")
	if code, _, _ := drepo(t, "htpasswd", "--password-env", "PW", users, "u"); code != 0 {
		t.Fatal("htpasswd failed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out, errb bytes.Buffer
	go func() {
		done <- run(ctx, []string{"drepo", "serve", "--root", root, "--htpasswd", users, "--listen", addr, "--grace", "1s"}, &out, &errb)
	}()
	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r, err := http.Get(base + "/-/health"); err == nil && r.StatusCode == 200 {
			r.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not come up: %s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	req, _ := http.NewRequest("PUT", base+"/f", strings.NewReader("hello"))
	req.SetBasicAuth("u", "pw")
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %v %v", r, err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "f")); string(b) != "hello" {
		t.Fatalf("file: %q", b)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "method=PUT") || strings.Contains(errb.String(), "pw\"") {
		t.Fatalf("access log: %s", errb.String())
	}
}
