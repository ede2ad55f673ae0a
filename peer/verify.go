package peer

import (
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/drepo-dev/drepo/manifests"
)

// VerifyReport is what Store.Verify found.
type VerifyReport struct {
	Blobs int   `json:"blobs_checked"`
	Bytes int64 `json:"bytes_checked"`
	// Removed are complete blobs that no longer hashed to their names (removed: the next
	// fetch brings them again).
	Removed []manifests.Hash `json:"removed_blobs"`
	// ChunksDropped counts verified chunks of partial blobs that no longer matched the
	// manifest (marked missing again).
	ChunksDropped int `json:"partial_chunks_dropped"`
}

// Bad reports whether anything in the store was found damaged.
func (r *VerifyReport) Bad() bool { return len(r.Removed) > 0 || r.ChunksDropped > 0 }

// Verify hashes every complete blob in the store again, under the store's lock: a blob
// that still hashes to its name gets a new identity record (Store.intact); one that does
// not is removed. The verified chunks of every partial blob a stored manifest describes
// are hashed too, and those that no longer match are marked missing. A store that was
// altered on disk (or a disk that rots) is so repaired before the device serves it on.
func (s *Store) Verify(ctx context.Context, log *slog.Logger) (*VerifyReport, error) {
	if err := s.Lock(ctx, log); err != nil {
		return nil, err
	}
	defer s.Unlock()
	rep := &VerifyReport{}
	ents, err := os.ReadDir(filepath.Join(s.dir, "blobs", "sha256"))
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		h, err := manifests.ParseHash(e.Name())
		if err != nil {
			continue
		}
		fi, err := os.Lstat(s.BlobPath(h))
		if err != nil {
			continue
		}
		rep.Blobs++
		rep.Bytes += fi.Size()
		if held, err := s.recheck(h, fi.Size()); err != nil {
			return rep, err
		} else if !held {
			rep.Removed = append(rep.Removed, h)
			log.Warn("a blob no longer hashes to its name; removed (the next fetch brings it again)", "blob", h)
		}
	}
	chunks := map[manifests.Hash][]manifests.Hash{}
	var chunkSize = map[manifests.Hash]int64{}
	hs, _ := s.Manifests()
	for _, mh := range hs {
		if m, _, err := s.Manifest(mh); err == nil {
			for _, fl := range m.Files {
				chunks[fl.SHA256], chunkSize[fl.SHA256] = fl.Chunks, m.ChunkSize
			}
		}
	}
	for _, h := range s.partialHashes() {
		cs, ok := chunks[h]
		st, err := s.partialState(h)
		if !ok || err != nil || st.ChunkSize != chunkSize[h] || len(cs) != st.Chunks() {
			continue
		}
		f, err := openNoFollow(s.partialPath(h), os.O_RDONLY, 0)
		if err != nil {
			continue
		}
		dropped := 0
		for i := range st.Chunks() {
			if !st.Has(i) {
				continue
			}
			off, n := st.ChunkRange(i)
			d := sha256.New()
			if _, err := io.Copy(d, io.NewSectionReader(f, off, n)); err != nil || manifests.Hash(d.Sum(nil)) != cs[i] {
				st.bits[i/8] &^= 1 << (i % 8)
				dropped++
			}
			rep.Bytes += n
		}
		f.Close()
		if dropped > 0 {
			rep.ChunksDropped += dropped
			log.Warn("verified chunks of a partial blob no longer match; marked missing", "blob", h, "chunks", dropped)
			if err := manifests.WriteFileAtomic(s.partialPath(h)+".state", st.Encode(), storeFileMode); err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
}
