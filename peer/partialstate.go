package peer

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/drepo-dev/drepo/manifests"
)

// PartialState is what the store keeps beside a partial blob: its size, chunk size and which
// chunks are verified. A bit is set only after the chunk's bytes were verified and made
// durable, so a crash can only lose progress, never claim unverified bytes.
type PartialState struct {
	Size      int64
	ChunkSize int64
	bits      []byte
}

// ErrBadState marks a state file that does not decode; the partial blob is started again.
var ErrBadState = errors.New("peer: partial state is damaged")

// partialMagic starts a state file; the byte after it is the format version.
const partialMagic = "DRPP"

// NewPartialState describes an empty partial blob.
func NewPartialState(size, chunkSize int64) (PartialState, error) {
	if size < 0 || size > manifests.MaxFileSize || chunkSize < manifests.MinChunkSize || chunkSize > manifests.MaxChunkSize {
		return PartialState{}, fmt.Errorf("peer: partial blob of %d bytes in chunks of %d: %w", size, chunkSize, ErrBadState)
	}
	n := manifests.NumChunks(size, chunkSize)
	return PartialState{Size: size, ChunkSize: chunkSize, bits: make([]byte, (n+7)/8)}, nil
}

// Chunks is how many chunks the blob has.
func (p PartialState) Chunks() int { return int(manifests.NumChunks(p.Size, p.ChunkSize)) }

// Has reports whether chunk i is verified.
func (p PartialState) Has(i int) bool { return p.bits[i/8]&(1<<(i%8)) != 0 }

// Set marks chunk i verified.
func (p *PartialState) Set(i int) { p.bits[i/8] |= 1 << (i % 8) }

// Count is how many chunks are verified.
func (p PartialState) Count() int {
	n := 0
	for i := range p.Chunks() {
		if p.Has(i) {
			n++
		}
	}
	return n
}

// Complete reports whether every chunk is verified.
func (p PartialState) Complete() bool { return p.Count() == p.Chunks() }

// ChunkRange is the byte range of chunk i.
func (p PartialState) ChunkRange(i int) (off, n int64) {
	off = int64(i) * p.ChunkSize
	return off, min(p.ChunkSize, p.Size-off)
}

// VerifiedBytes is how many bytes lie in verified chunks.
func (p PartialState) VerifiedBytes() int64 {
	var n int64
	for i := range p.Chunks() {
		if p.Has(i) {
			_, l := p.ChunkRange(i)
			n += l
		}
	}
	return n
}

// VerifiedPrefix is how many bytes from the start are verified without a gap: what can be
// served of a blob still arriving.
func (p PartialState) VerifiedPrefix() int64 {
	var n int64
	for i := range p.Chunks() {
		if !p.Has(i) {
			break
		}
		_, l := p.ChunkRange(i)
		n += l
	}
	return n
}

// Encode writes the state: magic, version 1, size and chunk size (big-endian uint64), the
// bitmap, and a SHA-256 of all that, so a torn or altered file is refused.
func (p PartialState) Encode() []byte {
	var b bytes.Buffer
	b.WriteString(partialMagic)
	b.WriteByte(1)
	_ = binary.Write(&b, binary.BigEndian, uint64(p.Size))
	_ = binary.Write(&b, binary.BigEndian, uint64(p.ChunkSize))
	b.Write(p.bits)
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

// DecodePartialState reads a state file strictly: magic, version, bounds, exact length,
// no bits past the last chunk, checksum.
func DecodePartialState(b []byte) (PartialState, error) {
	const head = len(partialMagic) + 1 + 16
	if len(b) < head+sha256.Size || string(b[:4]) != partialMagic || b[4] != 1 {
		return PartialState{}, fmt.Errorf("peer: state header: %w", ErrBadState)
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if want := sha256.Sum256(body); !bytes.Equal(sum, want[:]) {
		return PartialState{}, fmt.Errorf("peer: state checksum: %w", ErrBadState)
	}
	size := binary.BigEndian.Uint64(b[5:13])
	chunk := binary.BigEndian.Uint64(b[13:21])
	if size > manifests.MaxFileSize || chunk > manifests.MaxChunkSize {
		return PartialState{}, fmt.Errorf("peer: state bounds: %w", ErrBadState)
	}
	p, err := NewPartialState(int64(size), int64(chunk))
	if err != nil {
		return PartialState{}, err
	}
	bits := body[head:]
	if len(bits) != len(p.bits) {
		return PartialState{}, fmt.Errorf("peer: state bitmap of %d bytes, want %d: %w", len(bits), len(p.bits), ErrBadState)
	}
	copy(p.bits, bits)
	if n := p.Chunks(); n%8 != 0 && p.bits[len(p.bits)-1]>>(n%8) != 0 {
		return PartialState{}, fmt.Errorf("peer: state bits past the last chunk: %w", ErrBadState)
	}
	return p, nil
}
