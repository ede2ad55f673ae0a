package peer

import (
	"crypto/sha256"
	"encoding"
	"fmt"
	"hash"
	"io"
)

// wholeHash computes a blob's SHA-256 in file order while the blob is fetched. Chunks that
// arrive over the network are hashed from the download's own buffers (piece), so the
// whole-file hash costs no second read of the file; chunks that were already there
// (resumed, copied from another blob) are read from the file (fromFile). A chunk hashed from
// memory is still unverified: the hash state at its start is kept (snapshot), and settle
// winds back to it when the chunk was not verified after all.
//
// One goroutine at a time uses a wholeHash: a download pipeline's whole stage while it
// runs, the blob's fetch between runs.
type wholeHash struct {
	p     *Partial
	h     hash.Hash
	pos   int64      // bytes hashed, from offset 0
	snaps []snapshot // hash state at the start of chunks hashed from memory, not yet known verified
	buf   []byte     // for fromFile
}

type snapshot struct {
	chunk int
	pos   int64
	state []byte
}

func newWholeHash(p *Partial) *wholeHash {
	return &wholeHash{p: p, h: sha256.New()}
}

// piece hashes b, the bytes at off of a chunk not yet verified, when the hash has reached
// off. A gap before off (chunks held before this download began) is read from the file
// first, when every chunk in it is verified; otherwise the piece is left for settle and
// sum to read from the file.
func (w *wholeHash) piece(chunk int, chunkStart bool, off int64, b []byte) error {
	if off > w.pos {
		if !chunkStart || !w.p.verifiedUpTo(w.pos, off) {
			return nil
		}
		if err := w.fromFile(off); err != nil {
			return err
		}
	}
	if off != w.pos {
		return nil
	}
	if chunkStart {
		state, err := w.h.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return err
		}
		w.prune()
		w.snaps = append(w.snaps, snapshot{chunk: chunk, pos: off, state: state})
	}
	w.h.Write(b)
	w.pos += int64(len(b))
	return nil
}

// prune drops the snapshots of chunks verified since: they will never be wound back to.
func (w *wholeHash) prune() {
	i := 0
	for i < len(w.snaps) && w.p.has(w.snaps[i].chunk) {
		i++
	}
	w.snaps = w.snaps[i:]
}

// settle winds the hash back to the start of the first chunk it hashed from memory that
// is not verified (the download stopped in or before it, or it hashed wrong).
func (w *wholeHash) settle() error {
	w.prune()
	if len(w.snaps) == 0 {
		return nil
	}
	s := w.snaps[0]
	w.snaps = nil
	if err := w.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(s.state); err != nil {
		return err
	}
	w.pos = s.pos
	return nil
}

// fromFile hashes the file from where the hash stands to end; the caller knows those bytes
// are verified.
func (w *wholeHash) fromFile(end int64) error {
	if w.buf == nil {
		w.buf = make([]byte, copyBuf)
	}
	n, err := io.CopyBuffer(w.h, io.NewSectionReader(w.p.f, w.pos, end-w.pos), w.buf)
	w.pos += n
	if err != nil {
		return fmt.Errorf("peer: reading %s: %w", w.p.path, err)
	}
	return nil
}

// sum finishes the hash once every chunk is verified: what the downloads did not hand it
// is read from the file.
func (w *wholeHash) sum(size int64) (h [sha256.Size]byte, err error) {
	if err := w.settle(); err != nil {
		return h, err
	}
	if err := w.fromFile(size); err != nil {
		return h, err
	}
	copy(h[:], w.h.Sum(nil))
	return h, nil
}
