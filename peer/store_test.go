package peer

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
)

// Symlinks planted in the store change nothing outside it: a partial blob linked to
// another file, a complete blob linked to a decoy of the right size and a state file
// linked to /dev/zero are each replaced, not followed; the fetch lays out the right bytes.
func TestStoreFollowsNoPlantedSymlink(t *testing.T) {
	w := newWorld(t)
	data := randBytes(5*testChunk+3, 71)
	w.publish("app", "1", map[string][]byte{"f": data})
	h := manifests.SumBytes(data)
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	decoy := filepath.Join(outside, "decoy")
	os.WriteFile(victim, []byte("precious"), 0o644)
	os.WriteFile(decoy, bytes.Repeat([]byte{'x'}, len(data)), 0o644)
	for name, plant := range map[string]func(st *Store){
		"partial -> another file": func(st *Store) { os.Symlink(victim, st.partialPath(h)) },
		"blob -> a decoy":         func(st *Store) { os.Symlink(decoy, st.BlobPath(h)) },
		"state -> /dev/zero": func(st *Store) {
			os.Symlink("/dev/zero", st.partialPath(h)+".state")
		},
	} {
		t.Run(name, func(t *testing.T) {
			st := newStore(t)
			plant(st)
			out := filepath.Join(t.TempDir(), "out")
			_, err := Fetch(context.Background(), FetchOptions{Store: st, Sources: []Source{source(t, "origin", w.srv.URL, 0)},
				Keys: []minisign.PublicKey{w.pub}, App: "app", Version: "1", Out: out})
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(out, "f")); !bytes.Equal(b, data) {
				t.Fatal("--out holds the wrong bytes")
			}
			if b, _ := os.ReadFile(victim); string(b) != "precious" {
				t.Fatal("the file a planted link pointed at was written")
			}
			if b, _ := os.ReadFile(decoy); !bytes.Equal(b, bytes.Repeat([]byte{'x'}, len(data))) {
				t.Fatal("the decoy changed")
			}
			if fi, err := os.Lstat(st.BlobPath(h)); err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("the blob is not a regular file: %v", err)
			}
		})
	}
}

// A complete blob altered on disk (same size) is caught before --out and before it is
// served: the fetch hashes it again, removes it and brings it back; the peer server does
// not serve it meanwhile; store verify finds it too.
func TestStoreCatchesAnAlteredBlob(t *testing.T) {
	w := newWorld(t)
	data := randBytes(4*testChunk+9, 72)
	w.publish("app", "1", map[string][]byte{"f": data})
	h := manifests.SumBytes(data)
	st := newStore(t)
	if _, err := w.fetch(st, "app", "1", source(t, "origin", w.srv.URL, 0)); err != nil {
		t.Fatal(err)
	}
	alter := func() {
		os.Chmod(st.BlobPath(h), 0o644)
		f, err := os.OpenFile(st.BlobPath(h), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte{data[100] ^ 1}, 100)
		f.Close()
		os.Chtimes(st.BlobPath(h), time.Time{}, time.Now().Add(time.Second)) // whatever the clock's resolution
	}
	alter()
	url, _ := daemon(t, st, 1, nil, nil)
	if resp, _ := get(t, url+"v1/blobs/sha256/"+h.String(), ""); resp.StatusCode != 404 {
		t.Fatalf("the altered blob was served: %d", resp.StatusCode)
	}
	out := filepath.Join(t.TempDir(), "out")
	rep, err := Fetch(context.Background(), FetchOptions{Store: st, Sources: []Source{source(t, "origin", w.srv.URL, 0)},
		Keys: []minisign.PublicKey{w.pub}, App: "app", Version: "1", Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "f")); !bytes.Equal(b, data) {
		t.Fatal("--out holds the altered bytes")
	}
	if rep.Downloaded != int64(len(data)) {
		t.Fatalf("downloaded %d bytes, want the blob again (%d)", rep.Downloaded, len(data))
	}
	if resp, body := get(t, url+"v1/blobs/sha256/"+h.String(), ""); resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("the blob fetched again is not served: %d", resp.StatusCode)
	}
	// store verify: a blob intact passes, an altered one is removed
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if vr, err := st.Verify(context.Background(), log); err != nil || vr.Bad() || vr.Blobs != 2 {
		t.Fatalf("verify of an intact store: %+v %v", vr, err)
	}
	os.Remove(filepath.Join(out, "f")) // the layout's link shares the blob's inode
	alter()
	vr, err := st.Verify(context.Background(), log)
	if err != nil || len(vr.Removed) != 1 || vr.Removed[0] != h {
		t.Fatalf("verify of an altered blob: %+v %v", vr, err)
	}
	if _, err := os.Lstat(st.BlobPath(h)); err == nil {
		t.Fatal("the altered blob is still there")
	}
}

// A partial blob is announced only while a fetch holds it: one left by a fetch that
// failed (or was killed: the lock goes with the process) is not, so no device waits for it.
func TestStalePartialIsNotAnnounced(t *testing.T) {
	data := randBytes(4*testChunk, 73)
	st, p, h := partialStore(t, data, testChunk, 2)
	r := &Responder{Server: &Server{Store: st}, Instance: 9}
	ask := EncodeQuery(Query{Instance: 1, Kind: KindBlob, Blob: h})
	if r.Answer(ask, "127.0.0.1", time.Now()) == nil {
		t.Fatal("a partial a fetch holds is not announced")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(heldTTL) // what discovery answers is looked at again
	if a := r.Answer(ask, "127.0.0.2", time.Now()); a != nil {
		t.Fatal("a partial nobody fetches is announced")
	}
	// the next fetch resumes it
	p2, err := st.OpenPartial(h, int64(len(data)), testChunk)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if got := p2.State().Count(); got != 2 {
		t.Fatalf("resumed %d verified chunks, want 2", got)
	}
	time.Sleep(heldTTL)
	if r.Answer(ask, "127.0.0.3", time.Now()) == nil {
		t.Fatal("a resumed partial is not announced")
	}
}

// The store is the device's: its folders are 0700, its records 0600; blobs are
// read-only (0444: --out links them into the app's folder).
func TestStoreModes(t *testing.T) {
	w := newWorld(t)
	data := randBytes(2*testChunk, 74)
	w.publish("app", "1", map[string][]byte{"f": data})
	dir := filepath.Join(t.TempDir(), "store")
	os.MkdirAll(dir, 0o755) // an admin's folder: narrowed
	st, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.fetch(st, "app", "1", source(t, "origin", w.srv.URL, 0)); err != nil {
		t.Fatal(err)
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		want := os.FileMode(storeFileMode)
		switch {
		case fi.IsDir():
			want = storeDirMode
		case filepath.Dir(rel) == filepath.Join("blobs", "sha256") || filepath.Dir(rel) == "manifests":
			want = blobMode
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", rel, fi.Mode().Perm(), want)
		}
		return nil
	})
	// a folder of the store that is a symlink is refused
	other := t.TempDir()
	os.RemoveAll(filepath.Join(dir, "partial"))
	os.Symlink(other, filepath.Join(dir, "partial"))
	if _, err := OpenStore(dir); err == nil {
		t.Fatal("a store whose partial/ is a symlink opened")
	}
}

// What a layout killed while building --out left beside it (its links) is removed by the
// next run.
func TestFetchRemovesDebrisOfAKilledLayout(t *testing.T) {
	w := newWorld(t)
	w.publish("app", "1", map[string][]byte{"f": randBytes(testChunk, 75)})
	parent := t.TempDir()
	out := filepath.Join(parent, "app")
	debris := filepath.Join(parent, manifests.TempPrefix+"out-app-0123456789abcdef")
	os.MkdirAll(filepath.Join(debris, "lib"), 0o755)
	os.WriteFile(filepath.Join(debris, "lib", "big"), randBytes(testChunk, 76), 0o644)
	other := filepath.Join(parent, manifests.TempPrefix+"out-other-0123456789abcdef")
	os.MkdirAll(other, 0o755)
	if _, err := Fetch(context.Background(), FetchOptions{Store: newStore(t), Sources: []Source{source(t, "origin", w.srv.URL, 0)},
		Keys: []minisign.PublicKey{w.pub}, App: "app", Version: "1", Out: out}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(debris); err == nil {
		t.Fatal("the debris of a killed layout survived the next run")
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatal("the layout of another folder was removed")
	}
}

// /metrics says when the last fetch ended and how, and which app versions the store holds.
func TestDeviceMetrics(t *testing.T) {
	w := newWorld(t)
	w.publish("app", "1", map[string][]byte{"f": randBytes(testChunk, 77)})
	st := newStore(t)
	if _, err := w.fetch(st, "app", "1", source(t, "origin", w.srv.URL, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.fetch(st, "app", "2", source(t, "origin", w.srv.URL, 0)); err == nil {
		t.Fatal("app@2 is not published")
	}
	url, _ := daemon(t, st, 1, nil, nil)
	_, body := get(t, url+"metrics", "")
	for _, want := range []string{`drepo_fetch_last_timestamp_seconds{result="failed"}`, "drepo_fetch_last_success_timestamp_seconds ",
		"drepo_fetch_last_duration_seconds ", `drepo_store_app_version{app="app",state="complete",version="1"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
}
