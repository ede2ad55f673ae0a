package mirror

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror/dav"
)

// blobSource is where a blob's bytes come from: a source file, a document in memory
// (manifests), or another repository (promote: checked against the hash as they pass).
type blobSource struct {
	size int64
	path string
	data []byte
	from dav.Reader
	// cached: path is a delta or packed blob in state_dir, named by its hash (no source
	// file to check); delta: it is a delta
	cached, delta bool
}

// blobPlan is every blob the new index references, largest first (so parallel uploads
// finish together).
type blobPlan struct {
	blobs    map[manifests.Hash]blobSource
	order    []manifests.Hash
	cache    *HashCache
	deltasOf map[manifests.Hash][]manifests.Delta // a file's blob → its deltas
	packedOf map[manifests.Hash]manifests.Hash    // a packed blob → its file's blob
}

func newBlobPlan(versions []*Version, cache *HashCache, deltas deltaStore, packs packStore) *blobPlan {
	p := &blobPlan{blobs: map[manifests.Hash]blobSource{}, cache: cache, deltasOf: map[manifests.Hash][]manifests.Delta{},
		packedOf: map[manifests.Hash]manifests.Hash{}}
	for _, v := range versions {
		p.add(v.Hash, blobSource{size: int64(len(v.Doc)), data: v.Doc})
		for _, f := range v.Manifest.Files {
			p.add(f.SHA256, blobSource{size: f.Size, path: filepath.Join(v.Dir, filepath.FromSlash(f.Path))})
			if len(f.Deltas) > 0 {
				p.deltasOf[f.SHA256] = f.Deltas
			}
			for _, d := range f.Deltas {
				p.add(d.Blob, blobSource{size: d.Size, path: deltas.blobPath(d.Blob), cached: true, delta: true})
			}
			if f.Packed != nil {
				p.add(f.Packed.Blob, blobSource{size: f.Packed.Size(), path: packs.blobPath(f.Packed.Blob), cached: true})
				p.packedOf[f.Packed.Blob] = f.SHA256
			}
		}
	}
	p.sortLargestFirst()
	return p
}

// add puts blob h in the plan once.
func (p *blobPlan) add(h manifests.Hash, s blobSource) {
	if _, ok := p.blobs[h]; !ok {
		p.blobs[h] = s
		p.order = append(p.order, h)
	}
}

// sortLargestFirst orders the plan largest blob first.
func (p *blobPlan) sortLargestFirst() {
	slices.SortStableFunc(p.order, func(a, b manifests.Hash) int {
		sa, sb := p.blobs[a].size, p.blobs[b].size
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
}

// errSourceChanged: a source file changed after it was hashed; uploading it would publish
// bytes that do not match their name. Not retried: the next sync hashes it again.
var errSourceChanged = errors.New("source file changed since it was hashed; run sync again")

// checkSource verifies that a source file is still the one that was hashed (size, mtime
// and inode as the hash cache recorded them); a delta in state_dir, named by its hash and
// written once, by its size.
func (p *blobPlan) checkSource(src blobSource) error {
	fi, err := os.Stat(src.path)
	if err != nil {
		return fmt.Errorf("mirror: %s: %w", src.path, err)
	}
	if src.cached {
		if fi.Size() != src.size {
			return fmt.Errorf("mirror: %s: %w", src.path, errSourceChanged)
		}
		return nil
	}
	if _, ok := p.cache.lookup(src.path, fi); !ok || fi.Size() != src.size {
		return fmt.Errorf("mirror: %s: %w", src.path, errSourceChanged)
	}
	return nil
}

// parseBlobName returns the hash of a file under blobs/sha256/, if its path is
// blobs/sha256/<h[0:2]>/<h>.
func parseBlobName(name string) (manifests.Hash, bool) {
	h, err := manifests.ParseHash(filepath.Base(name))
	if err != nil || manifests.BlobPath(h) != name {
		return manifests.Hash{}, false
	}
	return h, true
}
