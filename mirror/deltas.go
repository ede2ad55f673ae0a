package mirror

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/drepo-dev/drepo/manifests"
)

// Deltas. For each file of a version whose path exists, with other bytes, in one of the
// DeltaVersions versions of the same app before it in the source folder, sync builds a
// delta from the old blob to the new one (manifests.EncodeDelta), publishes it as a blob
// and lists it in the new version's manifest, so a device holding the old version
// downloads the delta instead of the file. A delta not clearly smaller than the file
// (deltaWorth) is left out. Deltas are built once: their bytes are kept in
// state_dir/deltas/ by name, and a record of which pair made which delta lets the next
// sync list it again without rebuilding it.

// DefaultDeltaVersions is how many earlier versions of an app a file gets deltas from.
const DefaultDeltaVersions = 2

// deltaWorth: a delta is published only when it is at most this part of the file.
const deltaWorth = 0.5

// deltaStore is the cache of built deltas in state_dir/deltas.
type deltaStore struct {
	dir  string
	used *cacheUse // what this sync's versions use of it
}

func (d deltaStore) blobPath(h manifests.Hash) string { return filepath.Join(d.dir, h.String()) }

// recordPath names the record of the delta from one blob to another in the current delta
// format (a delta cached in an older one is built again).
func (d deltaStore) recordPath(from, to manifests.Hash) string {
	return filepath.Join(d.dir, fmt.Sprintf("v%d-from-%s-to-%s", manifests.DeltaVersion, from.String()[:32], to.String()[:32]))
}

// get returns the delta recorded for from → to at chunkSize if its bytes are still there;
// skip is set when the pair was tried and its delta was not worth publishing.
//
//	record: "<delta hash> <size> <base size> <new blob> <chunk size>" then one line per
//	        chunk hash of the delta, or "skip"
func (d deltaStore) get(from, to manifests.Hash, chunkSize int64) (delta manifests.Delta, skip, ok bool) {
	d.used.add(d.recordPath(from, to))
	b, err := manifests.ReadBounded(d.recordPath(from, to), maxDeltaRecord, true)
	if err != nil {
		return delta, false, false
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "skip" {
		return delta, true, true
	}
	f := strings.Fields(lines[0])
	if len(f) != 5 {
		return delta, false, false
	}
	h, err := manifests.ParseHash(f[0])
	if err != nil {
		return delta, false, false
	}
	var size, fromSize, cs int64
	if _, err := fmt.Sscan(f[1]+" "+f[2]+" "+f[4], &size, &fromSize, &cs); err != nil || cs != chunkSize ||
		int64(len(lines)-1) != manifests.NumChunks(size, chunkSize) {
		return delta, false, false // another chunk size: built again
	}
	chunks := make([]manifests.Hash, 0, len(lines)-1)
	for _, l := range lines[1:] {
		c, err := manifests.ParseHash(l)
		if err != nil {
			return delta, false, false
		}
		chunks = append(chunks, c)
	}
	if fi, err := os.Stat(d.blobPath(h)); err != nil || fi.Size() != size {
		return delta, false, false
	}
	d.used.add(d.blobPath(h))
	return manifests.Delta{From: from, FromSize: fromSize, Blob: h, Size: size, Chunks: chunks}, false, true
}

// maxDeltaRecord bounds a record: its chunk hashes go into a manifest, which is bounded.
const maxDeltaRecord = 256 + manifests.MaxManifestSize

// build makes the delta from the file at oldPath (blob from) to the file at newPath,
// keeps it in the cache and records it (or that it was not worth it).
func (d deltaStore) build(ctx context.Context, from manifests.Hash, oldPath string, to manifests.Hash, newPath string, chunkSize int64) (manifests.Delta, bool, error) {
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return manifests.Delta{}, false, err
	}
	oldF, err := os.Open(oldPath)
	if err != nil {
		return manifests.Delta{}, false, err
	}
	defer oldF.Close()
	newF, err := os.Open(newPath)
	if err != nil {
		return manifests.Delta{}, false, err
	}
	defer newF.Close()
	oi, err := oldF.Stat()
	if err != nil {
		return manifests.Delta{}, false, err
	}
	ni, err := newF.Stat()
	if err != nil {
		return manifests.Delta{}, false, err
	}
	building := filepath.Join(d.dir, "building")
	tmp, err := manifests.CreateAtomic(building, 0o600)
	if err != nil {
		return manifests.Delta{}, false, err
	}
	defer tmp.Abort()
	cw := &countWriter{w: tmp}
	if err := manifests.EncodeDelta(cw, oldF, oi.Size(), newF, ni.Size(), chunkSize); err != nil {
		return manifests.Delta{}, false, err
	}
	if ctx.Err() != nil {
		return manifests.Delta{}, false, ctx.Err()
	}
	if float64(cw.n) > deltaWorth*float64(ni.Size()) {
		tmp.Abort()
		return manifests.Delta{}, false, manifests.WriteFileAtomic(d.recordPath(from, to), []byte("skip\n"), 0o600)
	}
	if err := tmp.Commit(); err != nil {
		return manifests.Delta{}, false, err
	}
	// its name and chunk hashes: a delta is a few MiB, read again from the page cache
	sums, err := manifests.HashFile(ctx, building, chunkSize, nil)
	if err != nil {
		return manifests.Delta{}, false, err
	}
	if err := os.Rename(building, d.blobPath(sums.SHA256)); err != nil {
		return manifests.Delta{}, false, err
	}
	d.used.add(d.blobPath(sums.SHA256))
	var rec strings.Builder
	fmt.Fprintf(&rec, "%s %d %d %s %d\n", sums.SHA256, sums.Size, oi.Size(), to, chunkSize)
	for _, c := range sums.Chunks {
		fmt.Fprintf(&rec, "%s\n", c)
	}
	if err := manifests.WriteFileAtomic(d.recordPath(from, to), []byte(rec.String()), 0o600); err != nil {
		return manifests.Delta{}, false, err
	}
	return manifests.Delta{From: from, FromSize: oi.Size(), Blob: sums.SHA256, Size: sums.Size, Chunks: sums.Chunks}, true, nil
}

// countWriter counts what it passes on to w.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// deltasBuilt is how many deltas a sync built and how long that took.
type deltasBuilt struct {
	n    int
	took time.Duration
}

// addDeltas gives the files of every version in versions the deltas from the same path in
// up to k versions of its app before it (among all, the source's every version), building
// what the cache lacks; manifests that gain deltas are encoded again (v2).
func addDeltas(ctx context.Context, opt SyncOptions, all, versions []*Version, k int, cache deltaStore, build bool) (deltasBuilt, error) {
	var built deltasBuilt
	if k <= 0 {
		return built, nil
	}
	byApp := map[string][]*Version{}
	for _, v := range all {
		byApp[v.Manifest.App] = append(byApp[v.Manifest.App], v)
	}
	for _, list := range byApp {
		slices.SortFunc(list, func(a, b *Version) int { return manifests.CompareVersions(a.Manifest.Version, b.Manifest.Version) })
	}
	for _, v := range versions {
		list := byApp[v.Manifest.App]
		i := slices.Index(list, v)
		var bases []*Version
		for j := i - 1; j >= 0 && len(bases) < k; j-- {
			bases = append(bases, list[j])
		}
		changed := false
		for fi := range v.Manifest.Files {
			f := &v.Manifest.Files[fi]
			f.Deltas = nil
			for _, b := range bases {
				old := findFile(b.Manifest, f.Path)
				if old == nil || old.SHA256 == f.SHA256 || old.Size == 0 || f.Size < 2*manifests.MinChunkSize {
					continue
				}
				d, skip, ok := cache.get(old.SHA256, f.SHA256, v.Manifest.ChunkSize)
				if !ok && !build {
					continue // a dry run builds nothing
				}
				if !ok {
					var made bool
					var err error
					start := time.Now()
					d, made, err = cache.build(ctx, old.SHA256, filepath.Join(b.Dir, filepath.FromSlash(old.Path)), f.SHA256, filepath.Join(v.Dir, filepath.FromSlash(f.Path)), v.Manifest.ChunkSize)
					if err != nil {
						return built, fmt.Errorf("mirror: delta of %s from %s@%s: %w", f.Path, b.Manifest.App, b.Manifest.Version, err)
					}
					took := time.Since(start)
					built.n, built.took = built.n+1, built.took+took
					skip = !made
					if made {
						opt.Log.Info("built a delta", "app", v.Manifest.App, "version", v.Manifest.Version, "file", f.Path, "from", b.Manifest.Version,
							"bytes", d.Size, "of", f.Size, "took", took.Round(time.Millisecond))
					}
				}
				if !skip {
					f.Deltas = append(f.Deltas, d)
				}
			}
			changed = changed || len(f.Deltas) > 0
		}
		if changed {
			doc, err := v.Manifest.Encode()
			if err != nil {
				return built, err
			}
			v.Doc, v.Hash = doc, manifests.SumBytes(doc)
		}
	}
	return built, nil
}

// findFile is the file at path in m, nil if none.
func findFile(m *manifests.Manifest, path string) *manifests.File {
	i, ok := slices.BinarySearchFunc(m.Files, path, func(f manifests.File, p string) int { return strings.Compare(f.Path, p) })
	if !ok {
		return nil
	}
	return &m.Files[i]
}
