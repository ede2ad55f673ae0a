package peer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"aead.dev/minisign"
	"golang.org/x/sys/unix"

	"github.com/drepo-dev/drepo/manifests"
)

// smallDisk mounts a tmpfs of size bytes at a new folder for the test (root only: it
// fails under CI=true without root, skips elsewhere).
func smallDisk(t *testing.T, dir string, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the disk-full tests mount a tmpfs: run as root")
		}
		t.Skip("the disk-full tests mount a tmpfs: run as root")
	}
	if dir == "" {
		dir = t.TempDir()
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// A full disk is the device's own failure: a fetch that does not fit is refused before a
// blob is downloaded ("needs X, Y free on MOUNT"); a disk that fills during the download
// ends the fetch at once without blaming a source or asking the next; a full disk keeps
// the index and trust state accepted before.
func TestFetchOnAFullDisk(t *testing.T) {
	w := newWorld(t)
	w.publish("small", "1", map[string][]byte{"f": randBytes(testChunk, 96)})
	w.publish("big", "1", map[string][]byte{"f": randBytes(16<<20, 97)})
	w.publish("mid", "1", map[string][]byte{"f": randBytes(3<<20, 98)})
	disk := smallDisk(t, "", "8m")
	st, err := OpenStore(filepath.Join(disk, "store"))
	if err != nil {
		t.Fatal(err)
	}
	second := source(t, "second", w.srv.URL, 0)
	fetch := func(app string) (*FetchReport, error) {
		return Fetch(context.Background(), FetchOptions{Store: st, Sources: []Source{source(t, "origin", w.srv.URL, 1), second},
			Keys: []minisign.PublicKey{w.pub}, App: app, Version: "1"})
	}
	if _, err := fetch("small"); err != nil {
		t.Fatal(err)
	}
	rep, err := fetch("big")
	if !errors.Is(err, ErrLocal) || !strings.Contains(err.Error(), "big@1 needs 2") || !strings.Contains(err.Error(), "free on "+disk) {
		t.Fatalf("a fetch that does not fit: %v", err)
	}
	if rep.Downloaded != 0 {
		t.Fatalf("downloaded %d bytes of a fetch that cannot fit", rep.Downloaded)
	}
	// the disk fills during the download: partial/ is a smaller disk of its own
	smallDisk(t, filepath.Join(st.Dir(), "partial"), "1m")
	rep, err = fetch("mid")
	if !errors.Is(err, ErrLocal) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("a disk that fills: %v", err)
	}
	for _, s := range rep.Sources {
		if len(s.Errors) > 0 || s.Banned {
			t.Fatalf("a source was blamed for the device's disk: %+v", s)
		}
		if s.Name == "second" && s.Bytes > 0 {
			t.Fatal("the next source was asked after a local error")
		}
	}
	// a full disk: the next index cannot be stored; the one accepted before stays
	unix.Unmount(filepath.Join(st.Dir(), "partial"), unix.MNT_DETACH)
	before, _ := st.Index()
	trustBefore, _ := os.ReadFile(filepath.Join(st.Dir(), "trust.json"))
	filler, _ := os.Create(filepath.Join(disk, "filler"))
	for {
		if _, err := filler.Write(make([]byte, 64<<10)); err != nil {
			break
		}
	}
	filler.Close()
	w.publish("small", "2", map[string][]byte{"f": randBytes(testChunk, 99)})
	if _, err := Fetch(context.Background(), FetchOptions{Store: st, Sources: []Source{source(t, "origin", w.srv.URL, 1)},
		Keys: []minisign.PublicKey{w.pub}, App: "small", Version: "2"}); !errors.Is(err, ErrLocal) {
		t.Fatalf("a fetch on a full disk: %v", err)
	}
	after, _ := st.Index()
	trustAfter, _ := os.ReadFile(filepath.Join(st.Dir(), "trust.json"))
	if string(after) != string(before) || string(trustAfter) != string(trustBefore) {
		t.Fatal("a full disk changed the accepted index or trust state")
	}
	if _, err := manifests.DecodeIndex(after); err != nil {
		t.Fatalf("the index kept: %v", err)
	}
}
