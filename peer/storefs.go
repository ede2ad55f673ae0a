package peer

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/drepo-dev/drepo/manifests"
)

// How the store touches the filesystem. Another user or a planted link must not be able
// to steer a fetch: no file in the store is opened through a symlink (O_NOFOLLOW; a
// folder of the store must be a real folder), every file is read with a bound, the store's
// folders belong to the user running drepo and only that user may enter them (0700), and
// a complete blob is used only while it is the very file that was verified (intact).

// Modes of what the store writes: its folders and its own records are the device's
// business; blobs are read-only and readable by all, since --out links them into the
// app's folder (one inode) and every device on the LAN may read them anyway.
const (
	storeDirMode  = 0o700
	storeFileMode = 0o600
	blobMode      = 0o444
)

// openNoFollow opens path without following a symlink in its last element: a link planted
// where the store expects a file fails with ELOOP instead of reaching its target.
func openNoFollow(path string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, perm)
}

// readBounded reads a regular file of the store (no symlink followed) of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	return manifests.ReadBounded(path, max, true)
}

// checkStoreDir makes sure dir is a real folder (not a symlink, unless root: the store's
// own path is the admin's), belongs to this user and is closed to others: a wider mode of
// a folder this user owns is narrowed to 0700; one owned by another user is refused.
func checkStoreDir(dir string, root bool) error {
	stat := os.Lstat
	if root {
		stat = os.Stat
	}
	fi, err := stat(dir)
	if err != nil {
		return fmt.Errorf("peer: store: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("peer: store: %s is not a folder (a symlink?)", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("peer: store: %s belongs to uid %d, not to this user (%d)", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm() != storeDirMode {
		if err := os.Chmod(dir, storeDirMode); err != nil {
			return fmt.Errorf("peer: store: %w", err)
		}
	}
	return nil
}

// maxStateFile bounds a partial blob's state file: header, bitmap of the largest blob in
// the smallest chunks, checksum.
const maxStateFile = 64 + manifests.MaxFileSize/manifests.MinChunkSize/8 + sha256.Size

// fetching reports whether a fetch holds blob h's partial (it keeps a shared flock on the
// file while it works on it): only then is a partial announced. A lock is released with
// its process, so a killed fetch leaves no partial that looks alive.
func (s *Store) fetching(h manifests.Hash) bool {
	f, err := openNoFollow(s.partialPath(h), os.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return false
	}
	return errors.Is(err, unix.EWOULDBLOCK)
}

// identity is what a complete blob was when it was verified: its size, modification time
// and inode. A write to the file changes its mtime; a file put in its place, its inode.
func identity(fi fs.FileInfo) string {
	var ino, dev uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino, dev = st.Ino, uint64(st.Dev)
	}
	return fmt.Sprintf("%d %d %d %d\n", fi.Size(), fi.ModTime().UnixNano(), ino, dev)
}

func (s *Store) verifiedPath(h manifests.Hash) string {
	return filepath.Join(s.dir, "verified", h.String())
}

// markVerified records the identity of complete blob h, just verified.
func (s *Store) markVerified(h manifests.Hash) error {
	fi, err := os.Lstat(s.BlobPath(h))
	if err != nil {
		return fmt.Errorf("peer: blob %s: %w", h, err)
	}
	return manifests.WriteFileAtomic(s.verifiedPath(h), []byte(identity(fi)), storeFileMode)
}

// intact reports whether the complete blob h (fi, from Lstat) is the file that was
// verified: the same size, mtime and inode as recorded then.
func (s *Store) intact(h manifests.Hash, fi fs.FileInfo) bool {
	b, err := readBounded(s.verifiedPath(h), 128)
	return err == nil && string(b) == identity(fi)
}

// recheck hashes a complete blob whose identity is not the recorded one (or none is:
// a store from before the records), keeps it with a new record if it still hashes to its
// name and has the size, and removes it otherwise. It reports whether the blob is held.
func (s *Store) recheck(h manifests.Hash, size int64) (bool, error) {
	p := s.BlobPath(h)
	fi, err := os.Lstat(p)
	if err != nil {
		return false, nil
	}
	ok := false
	if fi.Mode().IsRegular() && fi.Size() == size {
		ok = hashesTo(p, h)
	}
	if ok {
		return true, s.markVerified(h)
	}
	_ = os.Remove(s.verifiedPath(h))
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("peer: blob %s is altered and cannot be removed: %w", h, err)
	}
	return false, nil
}

// hashesTo reports whether the file at p (no symlink followed) hashes to h.
func hashesTo(p string, h manifests.Hash) bool {
	f, err := openNoFollow(p, os.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	d := sha256.New()
	if _, err := io.CopyBuffer(d, f, make([]byte, copyBuf)); err != nil {
		return false
	}
	return manifests.Hash(d.Sum(nil)) == h
}

// cleanDebris removes what a killed run left in folder: temporary files of atomic writes,
// and the out folders a killed layout was building (tmp names starting with prefix).
func cleanDebris(folder, prefix string) {
	ents, err := os.ReadDir(folder)
	if err != nil {
		return
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			_ = os.RemoveAll(filepath.Join(folder, e.Name()))
		}
	}
}
