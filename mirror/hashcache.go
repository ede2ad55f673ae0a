package mirror

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/drepo-dev/drepo/manifests"
)

// HashCache remembers the hashes of source files, keyed by path, size, mtime and inode,
// so a sync reads only files that changed since the last one. It is a small binary file
// (hashcache_codec.go), written atomically; losing it only costs a rehash.
type HashCache struct {
	path    string
	mu      sync.Mutex
	entries map[string]cacheEntry
	seen    map[string]bool // entries looked up or stored in this run
	dirty   bool
}

type cacheEntry struct {
	Size      int64
	MtimeNs   int64
	Inode     uint64
	ChunkSize int64
	SHA256    manifests.Hash
	Chunks    []manifests.Hash // nil when the one chunk is the whole file
}

// LoadHashCache reads the cache at path; a missing or unreadable file gives an empty cache
// (it only costs a rehash).
func LoadHashCache(path string) *HashCache {
	c := &HashCache{path: path, entries: map[string]cacheEntry{}, seen: map[string]bool{}}
	if b, err := os.ReadFile(path); err == nil {
		if m, err := decodeCache(b); err == nil {
			c.entries = m
		}
	}
	return c
}

func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// lookup returns the entry for path if it describes the file as fi shows it now (size,
// mtime, inode), and marks the entry as seen in this run.
func (c *HashCache) lookup(path string, fi fs.FileInfo) (cacheEntry, bool) {
	key, _ := filepath.Abs(path)
	c.mu.Lock()
	e, ok := c.entries[key]
	c.seen[key] = true
	c.mu.Unlock()
	return e, ok && e.Size == fi.Size() && e.MtimeNs == fi.ModTime().UnixNano() && e.Inode == inode(fi)
}

// known reports whether the cache holds sums for the file as it is now, at this chunk size.
func (c *HashCache) known(path string, fi fs.FileInfo, chunkSize int64) bool {
	e, ok := c.lookup(path, fi)
	return ok && e.ChunkSize == chunkSize
}

// store records the sums of the file as it was when read.
func (c *HashCache) store(path string, fi fs.FileInfo, chunkSize int64, s manifests.Sums) {
	key, _ := filepath.Abs(path)
	e := cacheEntry{Size: s.Size, MtimeNs: fi.ModTime().UnixNano(), Inode: inode(fi), ChunkSize: chunkSize, SHA256: s.SHA256}
	if len(s.Chunks) > 1 || (len(s.Chunks) == 1 && s.Chunks[0] != s.SHA256) {
		e.Chunks = s.Chunks
	}
	c.mu.Lock()
	c.entries[key] = e
	c.seen[key] = true
	c.dirty = true
	c.mu.Unlock()
}

// Hash is a manifests.BuildOptions.Hash: cached sums if the file is unchanged, else a fresh
// read (counted by onRead).
func (c *HashCache) Hash(onRead func(int)) func(ctx context.Context, path string, fi fs.FileInfo, chunkSize int64) (manifests.Sums, error) {
	return func(ctx context.Context, path string, fi fs.FileInfo, chunkSize int64) (manifests.Sums, error) {
		if e, ok := c.lookup(path, fi); ok && e.ChunkSize == chunkSize {
			chunks := e.Chunks
			if chunks == nil && e.Size > 0 {
				chunks = []manifests.Hash{e.SHA256}
			}
			if chunks == nil {
				chunks = []manifests.Hash{}
			}
			return manifests.Sums{Size: e.Size, SHA256: e.SHA256, Chunks: chunks}, nil
		}
		s, err := manifests.HashFile(ctx, path, chunkSize, onRead)
		if err != nil {
			return s, err
		}
		c.store(path, fi, chunkSize, s)
		return s, nil
	}
}

// Save writes the cache if it changed. With drop, entries of files this run did not see
// (deleted or moved since) are dropped: the scan visits every source file, so no syscall is
// needed. A run that refused to publish keeps them: its source may be an unmounted share.
func (c *HashCache) Save(drop bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range c.entries {
		if drop && !c.seen[p] {
			delete(c.entries, p)
			c.dirty = true
		}
	}
	if !c.dirty {
		return nil
	}
	b := encodeCache(c.entries)
	if err := ensureStateDir(filepath.Dir(c.path)); err != nil {
		return fmt.Errorf("mirror: hash cache: %w", err)
	}
	if err := manifests.WriteFileAtomic(c.path, b, 0o644); err != nil {
		return err
	}
	c.dirty = false
	return nil
}
