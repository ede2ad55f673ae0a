package peer

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/drepo-dev/drepo/manifests"
)

// The whole-file hash fed from download buffers: a chunk hashed from memory that turns out
// wrong is wound back, chunks that were already held are read from the file, and the sum
// is the file's SHA-256 either way.
func TestWholeHashWindsBackWrongChunks(t *testing.T) {
	data := randBytes(6*testChunk+777, 7)
	h := manifests.SumBytes(data)
	st := newStore(t)
	p, err := st.OpenPartial(h, int64(len(data)), testChunk)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	chunk := func(i int) (int64, []byte) {
		off := int64(i) * testChunk
		return off, data[off:min(off+testChunk, int64(len(data)))]
	}
	put := func(i int) { // a chunk held before the download: written and verified
		off, b := chunk(i)
		if err := p.writePiece(b, off); err != nil {
			t.Fatal(err)
		}
		if err := p.Verified(i); err != nil {
			t.Fatal(err)
		}
	}
	w := newWholeHash(p)
	put(0)
	put(1)
	// chunk 2 arrives in two pieces: the gap (0, 1) is read from the file first
	off, b := chunk(2)
	half := len(b) / 2
	if err := w.piece(2, true, off, b[:half]); err != nil {
		t.Fatal(err)
	}
	if err := w.piece(2, false, off+int64(half), b[half:]); err != nil {
		t.Fatal(err)
	}
	put(2)
	// chunk 3 arrives wrong and is never verified; chunk 4 starts hashing behind it
	off, b = chunk(3)
	bad := bytes.Clone(b)
	bad[10] ^= 1
	if err := w.piece(3, true, off, bad); err != nil {
		t.Fatal(err)
	}
	off4, b4 := chunk(4)
	if err := w.piece(4, true, off4, b4[:100]); err != nil {
		t.Fatal(err)
	}
	if err := w.settle(); err != nil {
		t.Fatal(err)
	}
	if w.pos != 3*testChunk {
		t.Fatalf("after settle the hash stands at %d, want the start of chunk 3 (%d)", w.pos, 3*testChunk)
	}
	// the next source sends 3 right; 4, 5 and 6 come some other way (copied, resumed)
	off, b = chunk(3)
	if err := w.piece(3, true, off, b); err != nil {
		t.Fatal(err)
	}
	for i := 3; i < 7; i++ {
		put(i)
	}
	sum, err := w.sum(int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(data); sum != want {
		t.Fatalf("whole hash %x, want %x", sum, want)
	}
	// a piece that does not follow what was hashed, before a gap that is not verified, is
	// left for the file
	w2 := newWholeHash(p)
	w2.pos = 0
	p.mu.Lock()
	p.st.bits[0] &^= 1 << 1 // chunk 1 unverified again
	p.mu.Unlock()
	off, b = chunk(2)
	if err := w2.piece(2, true, off, b); err != nil {
		t.Fatal(err)
	}
	if w2.pos != 0 {
		t.Fatalf("a piece past an unverified gap was hashed (pos %d)", w2.pos)
	}
}
