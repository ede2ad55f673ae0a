package mirror

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/drepo-dev/drepo/mirror/dav"

	"github.com/drepo-dev/drepo/manifests"
)

// MaxSerial is the highest index serial sync signs: a serial above it (2^53, the largest
// integer every JSON reader holds exactly) is refused rather than wrapped past, since a device
// that accepted it could never accept another.
const MaxSerial = 1 << 53

// state is what sync keeps on the admin's machine between runs: the hash cache, the last
// signed index (so an unchanged source re-uses the same signed bytes and serial) and the
// highest serial ever signed or seen (so no serial is signed twice).
type state struct {
	dir string
}

func (s state) cachePath() string  { return filepath.Join(s.dir, "hashcache.json") }
func (s state) serialPath() string { return filepath.Join(s.dir, "serial") }

// lastIndex returns the last index and signature sync signed, or nil.
func (s state) lastIndex() (doc, sig []byte) {
	doc, err1 := os.ReadFile(filepath.Join(s.dir, dav.IndexName))
	sig, err2 := os.ReadFile(filepath.Join(s.dir, dav.SigName))
	if err1 != nil || err2 != nil {
		return nil, nil
	}
	return doc, sig
}

// saveIndex records a newly signed index before it is pushed anywhere, so a crash after
// pushing never re-uses its serial for other content.
func (s state) saveIndex(doc, sig []byte) error {
	if err := ensureStateDir(s.dir); err != nil {
		return err
	}
	if err := manifests.WriteFileAtomic(filepath.Join(s.dir, dav.SigName), sig, 0o644); err != nil {
		return err
	}
	return manifests.WriteFileAtomic(filepath.Join(s.dir, dav.IndexName), doc, 0o644)
}

// serial returns the highest serial recorded as signed or seen; ok is false when the state
// holds no record (a new or lost state_dir).
func (s state) serial() (n uint64, ok bool, err error) {
	b, err := os.ReadFile(s.serialPath())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("mirror: state: %w", err)
	}
	n, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("mirror: state %s: not a serial: %w", s.serialPath(), err)
	}
	return n, true, nil
}

// raiseSerial records n as signed or seen, if it is above the recorded one.
func (s state) raiseSerial(n uint64) error {
	cur, ok, err := s.serial()
	if err != nil {
		return err
	}
	if ok && cur >= n {
		return nil
	}
	if err := ensureStateDir(s.dir); err != nil {
		return err
	}
	return manifests.WriteFileAtomic(s.serialPath(), []byte(strconv.FormatUint(n, 10)+"\n"), 0o644)
}

// DefaultStateDir is where sync keeps its state when the config names none:
// $XDG_CACHE_HOME/drepo or ~/.cache/drepo. Without either it is an error to rely on it
// (ensureStateDir refuses a shared folder it does not own).
func DefaultStateDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "drepo")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("drepo-state-%d", os.Getuid()))
}

// ensureStateDir creates dir (0700 when new) and refuses one owned by another user: state
// decides serials, and a folder another user can write could make sync repeat one.
func ensureStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("mirror: state dir: %w", err)
	}
	return checkOwner(dir)
}
