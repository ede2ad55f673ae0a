package mirror

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// The caches of deltas and packed blobs hold what the source's versions use, no more: a
// version deleted from the source takes its deltas and packed blobs with it at the next
// sync, and so do records of another format or chunk size and the debris of a killed
// build; a build younger than an hour is left alone (another sync may be writing it), and
// a dry run removes nothing.
func TestSyncPrunesUnusedCaches(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	key, _ := testKeys(t)
	src := t.TempDir()
	text := bytes.Repeat([]byte("a line of a compressible image, as an OS image is\n"), 60000) // ~3 MiB
	for v := 1; v <= 3; v++ {
		img := slices.Clone(text)
		copy(img[v*100000:], fmt.Sprintf("version %d changed this", v))
		p := filepath.Join(src, "os", fmt.Sprint(v), "image.bin")
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, img, 0o644)
	}
	opt := syncOpts(t, src, key, repoOf(s, "r", 1))
	opt.DeltaVersions, opt.Pack = 2, true
	sync := func(dry bool) {
		t.Helper()
		o := opt
		o.DryRun = dry
		if rep, err := Sync(context.Background(), o); err != nil || rep.Failed() {
			t.Fatalf("sync: %+v %v", rep, err)
		}
	}
	sync(false)
	deltas, packed := filepath.Join(opt.StateDir, "deltas"), filepath.Join(opt.StateDir, "packed")
	list := func(dir string) []string {
		var names []string
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	records := func(names []string, substr string) int {
		n := 0
		for _, name := range names {
			if strings.Contains(name, substr) {
				n++
			}
		}
		return n
	}
	if n := records(list(deltas), "-from-"); n != 3 {
		t.Fatalf("%d delta records after the first sync, want 3 (1→2, 1→3, 2→3): %v", n, list(deltas))
	}
	if n := records(list(packed), "of-"); n != 3 {
		t.Fatalf("%d packing records, want 3: %v", n, list(packed))
	}
	// debris: a record of an older format, an old temporary, a fresh one
	os.WriteFile(filepath.Join(deltas, "from-old-to-old"), []byte("skip\n"), 0o600)
	old := filepath.Join(deltas, manifests.TempPrefix+"old")
	os.WriteFile(old, []byte("half a delta"), 0o600)
	os.Chtimes(old, time.Now().Add(-2*time.Hour), time.Now().Add(-2*time.Hour))
	fresh := filepath.Join(packed, manifests.TempPrefix+"fresh")
	os.WriteFile(fresh, []byte("half a packing"), 0o600)

	os.RemoveAll(filepath.Join(src, "os", "1"))
	before := list(deltas)
	sync(true)
	if !slices.Equal(list(deltas), before) {
		t.Fatalf("a dry run removed cache files: %v, then %v", before, list(deltas))
	}
	sync(false)
	after := list(deltas)
	if n := records(after, "-from-"); n != 1 {
		t.Fatalf("delta records after version 1 left: %v, want only 2→3", after)
	}
	if slices.Contains(after, "from-old-to-old") || slices.Contains(after, manifests.TempPrefix+"old") {
		t.Fatalf("debris kept: %v", after)
	}
	if len(after) != 2 {
		t.Fatalf("the delta cache holds %v, want the 2→3 record and its blob", after)
	}
	if n := records(list(packed), "of-"); n != 2 || len(list(packed)) != 5 {
		t.Fatalf("the packed cache after version 1 left: %v, want 2 records, their 2 blobs and the fresh build", list(packed))
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("a fresh build was removed: %v", err)
	}
	// what is left is what a sync needs: nothing is built again
	rep, err := Sync(context.Background(), opt)
	if err != nil || rep.DeltasBuilt != 0 {
		t.Fatalf("the next sync built %d deltas (%v)", rep.DeltasBuilt, err)
	}
}
