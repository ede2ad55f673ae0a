package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drepo-dev/drepo/mirror/dav"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// servers starts every kind of WebDAV server the suite runs against: the embedded one and
// Apache mod_dav (restic's habit: one suite, every backend).
func servers(t *testing.T) []*davtest.Server {
	return []*davtest.Server{davtest.StartDrepo(t, davtest.DrepoOptions{}), davtest.StartApache(t)}
}

func remoteFor(t *testing.T, s *davtest.Server) *dav.WebDAV {
	t.Helper()
	w, err := dav.Open(dav.Repository{Name: s.Name, URL: s.URL, Username: s.User, Password: dav.NewSecret(s.Password)}, 4)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func randBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

func TestRemoteSuite(t *testing.T) {
	for _, s := range servers(t) {
		t.Run(s.Name, func(t *testing.T) {
			ctx := context.Background()
			w := remoteFor(t, s)
			data := randBytes(3<<20+11, 1)
			if err := w.Put(ctx, "a/b/c/blob", bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			if err := w.Put(ctx, "a/empty", bytes.NewReader(nil), 0); err != nil {
				t.Fatal(err)
			}
			fi, err := w.Stat(ctx, "a/b/c/blob")
			if err != nil || fi.Size != int64(len(data)) || fi.IsDir {
				t.Fatalf("Stat: %+v %v", fi, err)
			}
			if _, err := w.Stat(ctx, "a/missing"); !errors.Is(err, dav.ErrNotFound) {
				t.Fatalf("Stat missing: %v", err)
			}
			rc, err := w.Open(ctx, "a/b/c/blob", 1000, 5000)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, data[1000:6000]) {
				t.Fatalf("Open range: %d bytes", len(got))
			}
			rc, err = w.Open(ctx, "a/b/c/blob", 3<<20, -1)
			if err != nil {
				t.Fatal(err)
			}
			got, _ = io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, data[3<<20:]) {
				t.Fatalf("Open to end: %d bytes", len(got))
			}
			if _, err := w.Open(ctx, "a/nope", 0, -1); !errors.Is(err, dav.ErrNotFound) {
				t.Fatalf("Open missing: %v", err)
			}
			ents, err := w.List(ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name)
			}
			slices.Sort(names)
			if strings.Join(names, ",") != "a/b,a/empty" {
				t.Fatalf("List: %v", names)
			}
			var walked []string
			if err := dav.WalkAll(ctx, w, "a", func(fi dav.FileInfo) error { walked = append(walked, fi.Name); return nil }); err != nil {
				t.Fatal(err)
			}
			slices.Sort(walked)
			if strings.Join(walked, ",") != "a/b/c/blob,a/empty" {
				t.Fatalf("Walk: %v", walked)
			}
			if err := w.Move(ctx, "a/empty", "z/moved"); err != nil {
				t.Fatal(err)
			}
			if err := w.Put(ctx, "z/target", strings.NewReader("old"), 3); err != nil {
				t.Fatal(err)
			}
			if err := w.Move(ctx, "a/b/c/blob", "z/target"); err != nil {
				t.Fatalf("Move over an existing file: %v", err)
			}
			if fi, err := w.Stat(ctx, "z/target"); err != nil || fi.Size != int64(len(data)) {
				t.Fatalf("after Move: %+v %v", fi, err)
			}
			sum, size, ok, err := w.Digest(ctx, "z/target")
			if err != nil || size != int64(len(data)) {
				t.Fatalf("Digest: %v size %d", err, size)
			}
			if s.Name == "drepo" && (!ok || sum != manifests.Hash(sha256.Sum256(data))) {
				t.Fatalf("drepo serve gave no or a wrong Repr-Digest")
			}
			if s.Name == "apache" && ok {
				t.Fatalf("Apache sent a Repr-Digest?")
			}
			if err := w.Remove(ctx, "z"); err != nil {
				t.Fatal(err)
			}
			if err := w.Remove(ctx, "z"); err != nil {
				t.Fatalf("Remove of a missing name: %v", err)
			}
			if _, err := w.Stat(ctx, "z/target"); !errors.Is(err, dav.ErrNotFound) {
				t.Fatalf("after Remove: %v", err)
			}
			if err := w.PutIf(ctx, "lease", []byte("one"), ""); err != nil {
				t.Fatal(err)
			}
			if err := w.PutIf(ctx, "lease", []byte("two"), ""); !errors.Is(err, dav.ErrPrecondition) {
				t.Fatalf("PutIf over an existing file: %v", err)
			}
			bad, err := dav.Open(dav.Repository{Name: s.Name, URL: s.URL, Username: s.User, Password: dav.NewSecret("wrong")}, 1)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bad.Stat(ctx, "lease"); !errors.Is(err, dav.ErrUnauthorized) {
				t.Fatalf("wrong password: %v", err)
			}
		})
	}
}

func TestLease(t *testing.T) {
	ctx := context.Background()
	for _, s := range servers(t) {
		t.Run(s.Name, func(t *testing.T) {
			w := remoteFor(t, s)
			log := discardLogger()
			l, err := acquireLease(ctx, w, time.Hour, log)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := acquireLease(ctx, w, time.Hour, log); !errors.Is(err, ErrLeaseHeld) {
				t.Fatalf("second lease: %v", err)
			}
			if err := l.renew(ctx); err != nil {
				t.Fatalf("renew: %v", err)
			}
			l2, err := acquireLease(ctx, w, 0, log) // stale at once: taken over
			if err != nil {
				t.Fatalf("stale takeover: %v", err)
			}
			if err := l.renew(ctx); !errors.Is(err, ErrLeaseHeld) {
				t.Fatalf("the old holder renewed a lease it lost: %v", err)
			}
			l2.release(ctx)
			if _, err := w.Stat(ctx, dav.LeaseName); !errors.Is(err, dav.ErrNotFound) {
				t.Fatalf("lease not released: %v", err)
			}
			// a lease of a process that died on this host is taken over at once
			dead := exec.Command("true")
			if err := dead.Run(); err != nil {
				t.Fatal(err)
			}
			host, _ := os.Hostname()
			b, _ := json.Marshal(leaseDoc{ID: "x", Holder: "dead", Host: host, PID: dead.Process.Pid, Created: time.Now(), Renewed: time.Now()})
			if err := w.PutIf(ctx, dav.LeaseName, b, ""); err != nil {
				t.Fatal(err)
			}
			if _, err := acquireLease(ctx, w, time.Hour, log); err != nil {
				t.Fatalf("lease of a dead process: %v", err)
			}
		})
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Some servers ignore Range and send the whole file with 200; Open then skips to the offset
// and cuts the body to the length. A 206 that starts elsewhere is refused.
func TestOpenRangeIgnored(t *testing.T) {
	data := randBytes(200<<10, 7)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/wrong") {
			w.Header().Set("Content-Range", "bytes 0-9/10")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[:10])
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data) // whatever Range said
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	w, err := dav.Open(dav.Repository{Name: "plain", URL: "http://" + l.Addr().String() + "/repo/"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct{ off, n int64 }{{0, -1}, {1000, 5000}, {70 << 10, -1}, {0, 1}, {5, 0}} {
		rc, err := w.Open(ctx, "blob", c.off, c.n)
		if err != nil {
			t.Fatalf("Open(%d, %d): %v", c.off, c.n, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		want := data[c.off:]
		if c.n >= 0 {
			want = want[:c.n]
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Open(%d, %d): %d bytes, want %d (%v)", c.off, c.n, len(got), len(want), err)
		}
	}
	if _, err := w.Open(ctx, "wrong", 5, 5); err == nil || !strings.Contains(err.Error(), "Content-Range") {
		t.Fatalf("a 206 from the wrong offset gave %v", err)
	}
}
