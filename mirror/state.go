package mirror

import (
	"os"
	"path/filepath"

	"github.com/drepo-dev/drepo/manifests"
)

// state is what sync keeps on the admin's machine between runs: the hash cache and the last
// signed index, so an unchanged source re-uses the same signed bytes (and serial).
type state struct {
	dir string
}

func (s state) cachePath() string { return filepath.Join(s.dir, "hashcache.json") }

// lastIndex returns the last index and signature sync signed, or nil.
func (s state) lastIndex() (doc, sig []byte) {
	doc, err1 := os.ReadFile(filepath.Join(s.dir, IndexName))
	sig, err2 := os.ReadFile(filepath.Join(s.dir, SigName))
	if err1 != nil || err2 != nil {
		return nil, nil
	}
	return doc, sig
}

// saveIndex records a newly signed index before it is pushed anywhere, so a crash after
// pushing never re-uses its serial for other content.
func (s state) saveIndex(doc, sig []byte) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	if err := manifests.WriteFileAtomic(filepath.Join(s.dir, SigName), sig, 0o644); err != nil {
		return err
	}
	return manifests.WriteFileAtomic(filepath.Join(s.dir, IndexName), doc, 0o644)
}

// DefaultStateDir is where sync keeps its state when the config names none.
func DefaultStateDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "drepo")
	}
	return filepath.Join(os.TempDir(), "drepo-state")
}
