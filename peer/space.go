package peer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/drepo-dev/drepo/manifests"
)

// A device's own disk is not a source: a full disk, a quota, a read-only or failing
// filesystem ends a fetch at once with what it is, instead of sending it to the next
// repository. Before any blob is downloaded, the fetch checks that what it still needs
// fits (spaceNeeded), having read only the index and the manifest.

// ErrLocal marks a failure of the device's own storage (errors.Is).
var ErrLocal = errors.New("the device's own storage failed")

// localErr reports whether err is the device's storage failing: no space, over quota,
// read-only, or an I/O error.
func localErr(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EROFS) ||
		errors.Is(err, syscall.EIO) || errors.Is(err, ErrLocal)
}

// asLocal marks err as the device's storage failing (once).
func asLocal(err error) error {
	if errors.Is(err, ErrLocal) {
		return err
	}
	return fmt.Errorf("%w: %w (no source is at fault; free space or fix the disk, then run again)", ErrLocal, err)
}

// spaceNeeded is what the fetch of m still writes: on the store's filesystem, the blobs it
// does not hold less the chunks verified in their partial blobs; on out's, the files that
// are copied (executables, and every file when out is on another filesystem than the
// store, where a hard link cannot go).
func spaceNeeded(s *Store, m *manifests.Manifest, out string) (store, outBytes int64) {
	seen := map[manifests.Hash]bool{}
	partial, _ := s.PartialBlobs()
	for _, fl := range m.Files {
		if seen[fl.SHA256] || s.HasBlob(fl.SHA256, fl.Size) {
			continue
		}
		seen[fl.SHA256] = true
		need := fl.Size
		if st, ok := partial[fl.SHA256]; ok && st.Size == fl.Size && st.ChunkSize == m.ChunkSize {
			need -= st.VerifiedBytes()
		}
		store += need
	}
	if out == "" {
		return store, 0
	}
	other := !sameFS(s.Dir(), existingParent(out))
	for _, fl := range m.Files {
		if fl.Executable || other {
			outBytes += fl.Size
		}
	}
	return store, outBytes
}

// spaceMargin is kept free beyond what a fetch needs: the state files, the manifest, the
// index and the filesystem's own bookkeeping.
const spaceMargin = 4 << 20

// checkSpace refuses a fetch that does not fit: "needs X, Y free on MOUNT".
func checkSpace(s *Store, m *manifests.Manifest, out string) error {
	store, outBytes := spaceNeeded(s, m, out)
	type need struct {
		dir   string
		bytes int64
	}
	needs := []need{{s.Dir(), store}}
	if outBytes > 0 {
		if dir := existingParent(out); sameFS(dir, s.Dir()) {
			needs[0].bytes += outBytes
		} else {
			needs = append(needs, need{dir, outBytes})
		}
	}
	for _, n := range needs {
		if n.bytes == 0 {
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(n.dir, &st); err != nil {
			return nil // no answer: the writes will tell
		}
		free := int64(st.Bavail) * st.Bsize
		if n.bytes+spaceMargin > free {
			return asLocal(fmt.Errorf("%s@%s needs %s, %s free on %s: %w", m.App, m.Version, sizeText(n.bytes+spaceMargin), sizeText(free), mountOf(n.dir), syscall.ENOSPC))
		}
	}
	return nil
}

// existingParent is p, or its nearest folder that exists.
func existingParent(p string) string {
	p = filepath.Clean(p)
	for {
		if _, err := os.Stat(p); err == nil || p == filepath.Dir(p) {
			return p
		}
		p = filepath.Dir(p)
	}
}

// sameFS reports whether a and b are on one filesystem.
func sameFS(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	if err1 != nil || err2 != nil {
		return false
	}
	sa, ok1 := fa.Sys().(*syscall.Stat_t)
	sb, ok2 := fb.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Dev == sb.Dev
}

// mountOf is the mount point of the filesystem that holds dir: its highest parent on the
// same device.
func mountOf(dir string) string {
	dir, _ = filepath.Abs(dir)
	for {
		up := filepath.Dir(dir)
		if up == dir || !sameFS(up, dir) {
			return dir
		}
		dir = up
	}
}

// sizeText is a size for people: bytes, KB, MB or GB (decimal, one place).
func sizeText(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f KB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d bytes", n)
}
