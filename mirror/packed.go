package mirror

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/drepo-dev/drepo/manifests"
)

// Packed blobs (manifests.Packed): sync packs each file of the versions it publishes chunk
// by chunk, once (kept in state_dir/packed/ by the file's hash, like deltas), and lists the
// packed blob in the manifest when it is at most manifests.PackedWorth of the file. A
// device without a delta's base then reads the packed chunks from a repository.

// packStore is the cache of packed blobs in state_dir/packed.
type packStore struct {
	dir  string
	used *cacheUse // what this sync's versions use of it
}

func (p packStore) blobPath(h manifests.Hash) string { return filepath.Join(p.dir, h.String()) }

// recordPath names the record of a file's packing at a chunk size (a frame per chunk: a
// new chunk size packs the file again).
func (p packStore) recordPath(file manifests.Hash, chunkSize int64) string {
	return filepath.Join(p.dir, fmt.Sprintf("of-%s-%d", file, chunkSize))
}

// get returns the packing recorded for file at chunkSize; skip when it was not worth it.
func (p packStore) get(file manifests.Hash, chunkSize int64) (pk *manifests.Packed, skip, ok bool) {
	p.used.add(p.recordPath(file, chunkSize))
	b, err := manifests.ReadBounded(p.recordPath(file, chunkSize), 16<<20, true)
	if err != nil {
		return nil, false, false
	}
	f := strings.Fields(string(b))
	if len(f) == 1 && f[0] == "skip" {
		return nil, true, true
	}
	if len(f) < 1 {
		return nil, false, false
	}
	h, err := manifests.ParseHash(f[0])
	if err != nil {
		return nil, false, false
	}
	pk = &manifests.Packed{Blob: h}
	for _, s := range f[1:] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, false, false
		}
		pk.Frames = append(pk.Frames, n)
	}
	if fi, err := os.Stat(p.blobPath(h)); err != nil || fi.Size() != pk.Size() {
		return nil, false, false
	}
	p.used.add(p.blobPath(h))
	return pk, false, true
}

// build packs the file at path (blob file, size bytes) and records it.
func (p packStore) build(file manifests.Hash, path string, size, chunkSize int64) (*manifests.Packed, error) {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return nil, err
	}
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if !manifests.WorthPacking(src, size, chunkSize) {
		// a sample of its chunks does not compress (media, compressed images): not packed,
		// and not compressed whole to find that out
		return nil, manifests.WriteFileAtomic(p.recordPath(file, chunkSize), []byte("skip\n"), 0o600)
	}
	tmp, err := manifests.CreateAtomic(filepath.Join(p.dir, "building"), 0o600)
	if err != nil {
		return nil, err
	}
	defer tmp.Abort()
	h := sha256.New()
	frames, err := manifests.Pack(io.MultiWriter(tmp, h), src, size, chunkSize)
	if err != nil {
		return nil, err
	}
	if float64(manifests.PackedSize(frames)) > manifests.PackedWorth*float64(size) {
		return nil, manifests.WriteFileAtomic(p.recordPath(file, chunkSize), []byte("skip\n"), 0o600)
	}
	sum := manifests.Hash(h.Sum(nil))
	if err := tmp.Commit(); err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(p.dir, "building"), p.blobPath(sum)); err != nil {
		return nil, err
	}
	p.used.add(p.blobPath(sum))
	var rec strings.Builder
	rec.WriteString(sum.String())
	for _, n := range frames {
		fmt.Fprintf(&rec, " %d", n)
	}
	rec.WriteString("\n")
	if err := manifests.WriteFileAtomic(p.recordPath(file, chunkSize), []byte(rec.String()), 0o600); err != nil {
		return nil, err
	}
	return &manifests.Packed{Blob: sum, Frames: frames}, nil
}

// addPacked gives the files of versions their packed blobs (building what the cache
// lacks, unless a dry run); manifests that change are encoded again.
func addPacked(ctx context.Context, versions []*Version, cache packStore, build bool) error {
	for _, v := range versions {
		changed := false
		for i := range v.Manifest.Files {
			f := &v.Manifest.Files[i]
			if f.Size < 2*manifests.MinChunkSize || ctx.Err() != nil {
				continue
			}
			pk, skip, ok := cache.get(f.SHA256, v.Manifest.ChunkSize)
			if !ok && build {
				var err error
				if pk, err = cache.build(f.SHA256, filepath.Join(v.Dir, filepath.FromSlash(f.Path)), f.Size, v.Manifest.ChunkSize); err != nil {
					return fmt.Errorf("mirror: packing %s@%s %s: %w", v.Manifest.App, v.Manifest.Version, f.Path, err)
				}
				skip = pk == nil
			}
			if !skip && pk != nil && int64(len(pk.Frames)) == manifests.NumChunks(f.Size, v.Manifest.ChunkSize) {
				f.Packed = pk
				changed = true
			}
		}
		if changed {
			doc, err := v.Manifest.Encode()
			if err != nil {
				return err
			}
			v.Doc, v.Hash = doc, manifests.SumBytes(doc)
		}
	}
	return ctx.Err()
}
