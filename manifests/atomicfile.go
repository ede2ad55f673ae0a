package manifests

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// AtomicFile writes a file so that readers see either the old content or the whole new one:
// a temporary file in the same folder, then fsync, rename over the target, fsync the folder.
// It lives here, at the bottom of the package arrows, because every side writes files this way.
type AtomicFile struct {
	*os.File
	target string
	done   bool
}

// CreateAtomic starts writing target. The temporary name starts with ".drepo-tmp-" so that
// servers and scanners can recognise and skip debris of a crash.
func CreateAtomic(target string, perm os.FileMode) (*AtomicFile, error) {
	f, err := os.CreateTemp(filepath.Dir(target), TempPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("manifests: create temporary for %s: %w", target, err)
	}
	if err := f.Chmod(perm); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, fmt.Errorf("manifests: chmod %s: %w", f.Name(), err)
	}
	return &AtomicFile{File: f, target: target}, nil
}

// TempPrefix starts the name of every temporary file drepo writes.
const TempPrefix = ".drepo-tmp-"

// Commit makes the written content durable and visible under the target name.
func (a *AtomicFile) Commit() error {
	if a.done {
		return fmt.Errorf("manifests: commit %s: already finished", a.target)
	}
	a.done = true
	tmp := a.Name()
	if err := a.Sync(); err != nil {
		_ = a.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("manifests: fsync %s: %w", a.target, err)
	}
	if err := a.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("manifests: close %s: %w", a.target, err)
	}
	if err := os.Rename(tmp, a.target); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("manifests: rename into %s: %w", a.target, err)
	}
	return SyncDir(filepath.Dir(a.target))
}

// Abort discards the temporary file; safe to call after Commit (then it does nothing), so
// callers can `defer a.Abort()`.
func (a *AtomicFile) Abort() {
	if a.done {
		return
	}
	a.done = true
	_ = a.Close()
	_ = os.Remove(a.Name())
}

// SyncDir fsyncs a folder so a rename or create in it survives a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("manifests: open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("manifests: fsync dir %s: %w", dir, err)
	}
	return nil
}

// WriteFileAtomic writes data to path atomically and durably.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeAtomic(path, data, perm, (*AtomicFile).Commit)
}

func writeAtomic(path string, data []byte, perm os.FileMode, commit func(*AtomicFile) error) error {
	a, err := CreateAtomic(path, perm)
	if err != nil {
		return err
	}
	defer a.Abort()
	if _, err := a.Write(data); err != nil {
		return fmt.Errorf("manifests: write %s: %w", path, err)
	}
	return commit(a)
}

// CommitNew is Commit that refuses to replace an existing target (fs.ErrExist): the file
// is hard-linked into place, which fails atomically if the name is taken.
func (a *AtomicFile) CommitNew() error {
	if a.done {
		return fmt.Errorf("manifests: commit %s: already finished", a.target)
	}
	a.done = true
	tmp := a.Name()
	defer os.Remove(tmp)
	if err := a.Sync(); err != nil {
		_ = a.Close()
		return fmt.Errorf("manifests: fsync %s: %w", a.target, err)
	}
	if err := a.Close(); err != nil {
		return fmt.Errorf("manifests: close %s: %w", a.target, err)
	}
	if err := os.Link(tmp, a.target); err != nil {
		return fmt.Errorf("manifests: create %s: %w", a.target, err)
	}
	return SyncDir(filepath.Dir(a.target))
}

// WriteFileNew writes a secret file (mode 0600) and a public file (0644) as a pair, refusing
// to overwrite either; if the second cannot be created the first is removed again.
func WriteFileNew(secretPath, publicPath string, secret, public []byte) error {
	for _, p := range []string{secretPath, publicPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("manifests: %s already exists; not overwriting it: %w", p, fs.ErrExist)
		}
	}
	if err := writeAtomic(secretPath, secret, 0o600, (*AtomicFile).CommitNew); err != nil {
		return err
	}
	if err := writeAtomic(publicPath, public, 0o644, (*AtomicFile).CommitNew); err != nil {
		_ = os.Remove(secretPath)
		return err
	}
	return nil
}
