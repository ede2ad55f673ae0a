package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drepo-dev/drepo/mirror/dav"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// testKeys makes a signing key and its public key.
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

// makeSource writes apps into a source folder: files of varied sizes, one shared between
// versions (a blob stored once), and one larger than a chunk.
func makeSource(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	write := func(rel string, data []byte) {
		p := filepath.Join(src, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	shared := randBytes(70000, 9)
	write("base_system/12.7.4/image.bin", randBytes(5<<20+123, 1))
	write("base_system/12.7.4/lib/shared.so", shared)
	write("base_system/12.7.5/image.bin", randBytes(5<<20+7, 2))
	write("base_system/12.7.5/lib/shared.so", shared)
	write("firefox/128.0/firefox", randBytes(300000, 3))
	write("firefox/128.0/empty", nil)
	for i := 0; i < 12; i++ {
		write(fmt.Sprintf("tools/1.0/bin/t%02d", i), randBytes(1000+i*333, byte(20+i)))
	}
	return src
}

func repoOf(s *davtest.Server, name string, prio int) dav.Repository {
	return dav.Repository{Name: name, URL: s.URL, Priority: prio, Username: s.User, Password: dav.NewSecret(s.Password)}
}

// countingProxy forwards to a real server and counts requests.
type countingProxy struct {
	URL string
	n   atomic.Int64
}

func newCountingProxy(t *testing.T, s *davtest.Server) *countingProxy {
	target, _ := url.Parse(s.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	cp := &countingProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cp.n.Add(1)
		if d := r.Header.Get("Destination"); d != "" {
			r.Header.Set("Destination", strings.Replace(d, cp.URL, s.URL, 1))
		}
		r.Host = target.Host
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cp.URL = srv.URL + "/"
	return cp
}

// diskBlobs maps every file under a server's root (blobs and index) to its content hash.
func diskFiles(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if strings.HasPrefix(rel, "blobs/") || rel == dav.IndexName || rel == dav.SigName {
			b, _ := os.ReadFile(p)
			out[rel] = fmt.Sprintf("%x", sha256.Sum256(b))
		}
		return nil
	})
	return out
}

func syncOpts(t *testing.T, src string, key minisign.PrivateKey, repos ...dav.Repository) SyncOptions {
	return SyncOptions{Source: src, SigningKey: key, StateDir: filepath.Join(t.TempDir(), "state"), Repos: repos,
		ChunkSize: 1 << 20, Retry: dav.Retry{Attempts: 2, Base: 10e6}}
}

func TestSyncTwoRepositoriesAndNoop(t *testing.T) {
	ctx := context.Background()
	key, pub := testKeys(t)
	src := makeSource(t)
	srv, apache := davtest.StartDrepo(t, davtest.DrepoOptions{}), davtest.StartApache(t)
	pd, pa := newCountingProxy(t, srv), newCountingProxy(t, apache)
	rd := dav.Repository{Name: "main", URL: pd.URL, Priority: 10, Username: srv.User, Password: dav.NewSecret(srv.Password)}
	ra := dav.Repository{Name: "staging", URL: pa.URL, Priority: -1, Username: apache.User, Password: dav.NewSecret(apache.Password)}
	opt := syncOpts(t, src, key, rd, ra)

	rep, err := Sync(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() || !rep.Changed || rep.Serial != 1 || rep.Versions != 4 {
		t.Fatalf("first sync: %+v", rep)
	}
	for _, r := range rep.Repos {
		if r.Status != StatusUpdated || r.Uploaded != 4+2+1+2+12 { // manifests + distinct files
			t.Fatalf("%s: %+v", r.Name, r)
		}
	}
	fd, fa := diskFiles(t, srv.Root), diskFiles(t, apache.Root)
	if len(fd) != 4+2+1+2+12+2 || fmt.Sprint(fd) != fmt.Sprint(fa) {
		t.Fatalf("repositories differ:\n%v\n%v", fd, fa)
	}
	for _, r := range []dav.Repository{rd, ra} {
		w, _ := dav.Open(r, 4)
		v := Verify(ctx, r, w, VerifyOptions{Keys: []minisign.PublicKey{pub}, Deep: true, ServerDigest: true})
		if !v.OK || v.Error != "" || v.Blobs != 21 || v.Serial != 1 || len(v.Unreferenced) != 0 {
			t.Fatalf("verify --server-digest %s: %+v", r.Name, v)
		}
		want := map[string]string{"main": "server digest", "staging": "download"}[r.Name]
		if v.Deep != want {
			t.Errorf("%s: deep check by %q, want %q", r.Name, v.Deep, want)
		}
	}

	// nothing changed: at most 2 requests per repository, and nothing written
	pd.n.Store(0)
	pa.n.Store(0)
	rep, err = Sync(ctx, opt)
	if err != nil || rep.Failed() || rep.Changed || rep.Serial != 1 {
		t.Fatalf("no-op sync: %+v %v", rep, err)
	}
	if d, a := pd.n.Load(), pa.n.Load(); d > 2 || a > 2 {
		t.Fatalf("no-op sync made %d and %d requests, want at most 2 each", d, a)
	}
	if fmt.Sprint(diskFiles(t, srv.Root)) != fmt.Sprint(fd) {
		t.Fatal("no-op sync changed the repository")
	}

	// a new version: serial 2, only the new blobs go up
	if err := os.MkdirAll(filepath.Join(src, "firefox", "129.0"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "firefox", "129.0", "firefox"), randBytes(1234, 77), 0o755)
	rep, err = Sync(ctx, opt)
	if err != nil || rep.Failed() || rep.Serial != 2 {
		t.Fatalf("third sync: %+v %v", rep, err)
	}
	for _, r := range rep.Repos {
		if r.Uploaded != 2 {
			t.Errorf("%s uploaded %d blobs, want 2 (manifest and file)", r.Name, r.Uploaded)
		}
	}

	// lost local state: the serial still goes up, taken from the repositories' signed index
	opt.StateDir = filepath.Join(t.TempDir(), "fresh")
	os.MkdirAll(filepath.Join(src, "firefox", "130.0"), 0o755)
	os.WriteFile(filepath.Join(src, "firefox", "130.0", "extra"), []byte("x"), 0o644)
	rep, err = Sync(ctx, opt)
	if err != nil || rep.Failed() || rep.Serial != 3 {
		t.Fatalf("sync without state: %+v %v", rep, err)
	}

	// prune to one version per app: old blobs go
	opt.Keep = 1
	rep, err = Sync(ctx, opt)
	if err != nil || rep.Failed() {
		t.Fatalf("prune: %+v %v", rep, err)
	}
	for _, r := range rep.Repos {
		if r.Removed == 0 {
			t.Errorf("%s: prune removed nothing", r.Name)
		}
	}
	w, _ := dav.Open(ra, 4)
	v := Verify(ctx, ra, w, VerifyOptions{Keys: []minisign.PublicKey{pub}, Deep: true})
	if !v.OK || v.Versions != 3 || len(v.Unreferenced) != 0 {
		t.Fatalf("after prune: %+v", v)
	}
}

func TestVerifyFindsDamage(t *testing.T) {
	ctx := context.Background()
	key, pub := testKeys(t)
	src := makeSource(t)
	for _, s := range servers(t) {
		t.Run(s.Name, func(t *testing.T) {
			r := repoOf(s, s.Name, 0)
			if rep, err := Sync(ctx, syncOpts(t, src, key, r)); err != nil || rep.Failed() {
				t.Fatalf("sync: %+v %v", rep, err)
			}
			w, _ := dav.Open(r, 4)
			keys := []minisign.PublicKey{pub}
			// flip one byte of a blob on the server's disk
			var victim string
			for p := range diskFiles(t, s.Root) {
				if strings.HasPrefix(p, "blobs/") {
					if fi, _ := os.Stat(filepath.Join(s.Root, p)); fi.Size() == 300000 {
						victim = p
					}
				}
			}
			f, err := os.OpenFile(filepath.Join(s.Root, victim), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			f.ReadAt(b, 1000)
			b[0] ^= 0xff
			f.WriteAt(b, 1000)
			f.Close()
			if v := Verify(ctx, r, w, VerifyOptions{Keys: keys}); !v.OK {
				t.Fatalf("plain verify reads no bytes, yet failed: %+v", v.Problems)
			}
			v := Verify(ctx, r, w, VerifyOptions{Keys: keys, Deep: true})
			if v.OK || len(v.Problems) != 1 || v.Problems[0].Kind != "content" || v.Problems[0].Name != victim {
				t.Fatalf("deep verify after a flipped byte: %+v", v)
			}
			if !strings.Contains(v.Problems[0].Detail, "firefox@128.0 firefox") {
				t.Errorf("problem does not say where the blob is used: %s", v.Problems[0].Detail)
			}
			// delete another (a file's blob, not a manifest, whose loss would hide the
			// files it names): plain verify names it
			var gone string
			for p := range diskFiles(t, s.Root) {
				if fi, _ := os.Stat(filepath.Join(s.Root, p)); strings.HasPrefix(p, "blobs/") && fi.Size() == 70000 {
					gone = p
				}
			}
			os.Remove(filepath.Join(s.Root, gone))
			v = Verify(ctx, r, w, VerifyOptions{Keys: keys})
			if v.OK || len(v.Problems) != 1 || v.Problems[0].Kind != "missing" || v.Problems[0].Name != gone {
				t.Fatalf("verify after a deleted blob: %+v", v)
			}
			// deep verify reads bytes while it lists: it names both, the deleted one as
			// missing (its GET finds nothing), not as a failed run
			v = Verify(ctx, r, w, VerifyOptions{Keys: keys, Deep: true})
			kinds := map[string]string{}
			for _, p := range v.Problems {
				kinds[p.Name] = p.Kind
			}
			if v.OK || v.Error != "" || len(v.Problems) != 2 || kinds[victim] != "content" || kinds[gone] != "missing" {
				t.Fatalf("deep verify after a flip and a delete: %+v", v)
			}
			// a wrong key: the signature check fails
			_, other := testKeys(t)
			if v := Verify(ctx, r, w, VerifyOptions{Keys: []minisign.PublicKey{other}}); v.OK || v.Problems[0].Kind != "signature" {
				t.Fatalf("verify with a foreign key: %+v", v)
			}
			// sync --full repairs the missing blob (the flipped one keeps its size: only a
			// re-upload after removal fixes it)
			opt := syncOpts(t, src, key, r)
			opt.Full = true
			os.Remove(filepath.Join(s.Root, victim))
			if rep, err := Sync(ctx, opt); err != nil || rep.Failed() || rep.Repos[0].Uploaded != 2 {
				t.Fatalf("sync --full: %+v %v", rep, err)
			}
			if v := Verify(ctx, r, w, VerifyOptions{Keys: keys, Deep: true}); !v.OK {
				t.Fatalf("after repair: %+v", v.Problems)
			}
		})
	}
}

// TestSyncUploadsLargeFilesWhileHashing: a new file of StageMin bytes or more is read once,
// hashed and uploaded at the same time, then moved into place; nothing is left in tmp/.
func TestSyncUploadsLargeFilesWhileHashing(t *testing.T) {
	ctx := context.Background()
	key, pub := testKeys(t)
	src := t.TempDir()
	big := filepath.Join(src, "os", "1.0", "image.bin")
	os.MkdirAll(filepath.Dir(big), 0o755)
	if err := os.WriteFile(big, randBytes(StageMin+12345, 5), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "os", "1.0", "small"), []byte("small"), 0o644)
	srv, apache := davtest.StartDrepo(t, davtest.DrepoOptions{}), davtest.StartApache(t)
	opt := syncOpts(t, src, key, repoOf(srv, "main", 1), repoOf(apache, "staging", -1))
	rep, err := Sync(ctx, opt)
	if err != nil || rep.Failed() {
		t.Fatalf("sync: %+v %v", rep, err)
	}
	for i, s := range []*davtest.Server{srv, apache} {
		r := rep.Repos[i]
		if r.Uploaded != 3 || r.Staged != 1 {
			t.Errorf("%s: uploaded %d (want 3), while hashing %d (want 1)", r.Name, r.Uploaded, r.Staged)
		}
		if left, _ := filepath.Glob(filepath.Join(s.Root, "tmp", "*")); len(left) != 0 {
			t.Errorf("%s: left in tmp/: %v", r.Name, left)
		}
		w, _ := dav.Open(repoOf(s, r.Name, 0), 4)
		if v := Verify(ctx, repoOf(s, r.Name, 0), w, VerifyOptions{Keys: []minisign.PublicKey{pub}, Deep: true}); !v.OK {
			t.Fatalf("%s: verify --deep: %+v", r.Name, v)
		}
	}
	// touched but unchanged: hashed and uploaded again while hashing, then the index is
	// found unchanged; the staged copies are removed
	now := time.Now()
	os.Chtimes(big, now, now)
	rep, err = Sync(ctx, opt)
	if err != nil || rep.Failed() || rep.Changed {
		t.Fatalf("touched sync: %+v %v", rep, err)
	}
	for _, s := range []*davtest.Server{srv, apache} {
		if left, _ := filepath.Glob(filepath.Join(s.Root, "tmp", "*")); len(left) != 0 {
			t.Errorf("%s: staged copies left after an unchanged sync: %v", s.Name, left)
		}
		if _, err := os.Stat(filepath.Join(s.Root, dav.LeaseName)); err == nil {
			t.Errorf("%s: lease not released", s.Name)
		}
	}
}

func TestVerifyReportsExpiredIndex(t *testing.T) {
	ctx := context.Background()
	key, pub := testKeys(t)
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	w := remoteFor(t, s)
	past := time.Now().Add(-time.Hour)
	doc, err := (&manifests.Index{Serial: 1, Created: past.Add(-time.Hour), Expires: &past}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	sig := manifests.Sign(key, doc, time.Now())
	for name, b := range map[string][]byte{dav.IndexName: doc, dav.SigPath(doc): sig} {
		if err := w.Put(ctx, name, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	v := Verify(ctx, repoOf(s, "r", 0), w, VerifyOptions{Keys: []minisign.PublicKey{pub}})
	if v.OK || len(v.Problems) != 1 || !strings.Contains(v.Problems[0].Detail, "expired") {
		t.Fatalf("expired index: %+v", v)
	}
}

// A new chunk size applies to new versions only: a published version keeps its manifest
// (it is immutable), so changing chunk_size is not a change of every published version.
func TestSyncNewChunkSizeKeepsPublishedManifests(t *testing.T) {
	ctx := context.Background()
	key, _ := testKeys(t)
	src := makeSource(t)
	srv := davtest.StartDrepo(t, davtest.DrepoOptions{})
	opt := syncOpts(t, src, key, repoOf(srv, "main", 10))
	if rep, err := Sync(ctx, opt); err != nil || rep.Failed() {
		t.Fatalf("first sync: %+v %v", rep, err)
	}
	first, _ := os.ReadFile(filepath.Join(srv.Root, dav.IndexName))
	opt.ChunkSize = 256 << 10
	if rep, err := Sync(ctx, opt); err != nil || rep.Failed() {
		t.Fatalf("sync with another chunk size: %+v %v", rep, err)
	}
	again, _ := os.ReadFile(filepath.Join(srv.Root, dav.IndexName))
	x1, _ := manifests.DecodeIndex(first)
	x2, _ := manifests.DecodeIndex(again)
	if !slices.Equal(x1.Apps, x2.Apps) {
		t.Fatalf("published versions changed with the chunk size:\n%+v\n%+v", x1.Apps, x2.Apps)
	}
	// a new version gets the new chunk size
	if err := os.MkdirAll(filepath.Join(src, "newapp", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "newapp", "1", "f"), randBytes(600<<10, 9), 0o644)
	if rep, err := Sync(ctx, opt); err != nil || rep.Failed() {
		t.Fatalf("sync of a new version: %+v %v", rep, err)
	}
	third, _ := os.ReadFile(filepath.Join(srv.Root, dav.IndexName))
	x3, _ := manifests.DecodeIndex(third)
	e, ok := x3.Find("newapp", "1")
	if !ok {
		t.Fatal("the new version is not published")
	}
	doc, _ := os.ReadFile(filepath.Join(srv.Root, manifests.BlobPath(e.Manifest)))
	m, _ := manifests.DecodeManifest(doc)
	if m.ChunkSize != 256<<10 {
		t.Fatalf("the new version has chunk size %d, want %d", m.ChunkSize, 256<<10)
	}
	// a real change is still refused
	for _, e := range x1.Apps {
		p := filepath.Join(src, e.App, e.Version)
		ents, _ := os.ReadDir(p)
		os.WriteFile(filepath.Join(p, ents[0].Name()), []byte("changed"), 0o644)
		break
	}
	if _, err := Sync(ctx, opt); !errors.Is(err, ErrRepublish) {
		t.Fatalf("a changed published version: %v", err)
	}
}
