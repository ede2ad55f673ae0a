package manifests

import (
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// A packed blob is a file compressed chunk by chunk: one zstd frame per chunk, in order, so
// a device reads any run of chunks with one ranged GET (the frames' sizes are in the
// manifest) and verifies each chunk, decompressed, against the manifest's chunk hash like a
// raw one. A repository keeps it beside the file's blob when it saves at least a tenth;
// devices without a delta's base read it from repositories (the WAN), peers serve the raw
// file (a LAN's bytes are cheap, and a chain passes chunks on as they arrive).

// Packed names a file's packed blob.
type Packed struct {
	Blob   Hash    `json:"blob"`
	Frames []int64 `json:"frames"` // each chunk's frame size, in order
}

// Size is the packed blob's size.
func (p *Packed) Size() int64 {
	var n int64
	for _, f := range p.Frames {
		n += f
	}
	return n
}

// Offset is where chunk i's frame starts.
func (p *Packed) Offset(i int) int64 {
	var n int64
	for _, f := range p.Frames[:i] {
		n += f
	}
	return n
}

// PackedWorth: a packed blob is kept when it is at most this part of the file.
const PackedWorth = 0.9

// maxFrame bounds one chunk's frame (zstd's worst case for a chunk, and some).
func maxFrame(chunkSize int64) int64 { return chunkSize + chunkSize/128 + 1<<16 }

func validPacked(schema string, f File, chunkSize int64) error {
	if f.Packed == nil {
		return nil
	}
	if schema != ManifestSchemaDeltas {
		return fmt.Errorf("manifests: manifest: %q: packed in a %s manifest: %w", f.Path, schema, ErrInvalid)
	}
	if f.Packed.Blob.IsZero() || int64(len(f.Packed.Frames)) != NumChunks(f.Size, chunkSize) {
		return fmt.Errorf("manifests: manifest: %q: packed: a frame per chunk and a name: %w", f.Path, ErrInvalid)
	}
	for _, n := range f.Packed.Frames {
		if n <= 0 || n > maxFrame(chunkSize) {
			return fmt.Errorf("manifests: manifest: %q: packed: a frame of %d bytes: %w", f.Path, n, ErrInvalid)
		}
	}
	return nil
}

// Pack writes the packed form of r (size bytes in chunks of chunkSize) to w and returns
// its frame sizes; chunks are compressed on up to 8 cores, written in order. Memory: per
// core one chunk and its frame.
func Pack(w io.Writer, r io.ReaderAt, size, chunkSize int64) ([]int64, error) {
	n := NumChunks(size, chunkSize)
	frames := make([]int64, 0, n)
	err := inOrder(n, workersFor(), func(i int64) ([]byte, error) {
		return packChunk(r, i*chunkSize, min(chunkSize, size-i*chunkSize), chunkSize)
	}, func(_ int64, frame []byte) error {
		frames = append(frames, int64(len(frame)))
		_, err := w.Write(frame)
		return err
	})
	if err != nil {
		return nil, err
	}
	return frames, nil
}

// WorthPacking compresses up to 8 chunks spread over the file and reports whether they
// came out clearly smaller (below PackedWorth): a file that does not compress is found out
// for a fraction of packing it.
func WorthPacking(r io.ReaderAt, size, chunkSize int64) bool {
	n := NumChunks(size, chunkSize)
	var in, out int64
	for k := int64(0); k < min(n, 8); k++ {
		i := k * n / min(n, 8)
		frame, err := packChunk(r, i*chunkSize, min(chunkSize, size-i*chunkSize), chunkSize)
		if err != nil {
			return false
		}
		in += min(chunkSize, size-i*chunkSize)
		out += int64(len(frame))
	}
	return in > 0 && float64(out) < PackedWorth*float64(in)
}

// packChunk compresses the n bytes of r at off as one frame.
func packChunk(r io.ReaderAt, off, n, chunkSize int64) ([]byte, error) {
	c := make([]byte, n)
	if _, err := r.ReadAt(c, off); err != nil && !(errors.Is(err, io.EOF) && n > 0) {
		return nil, err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true),
		zstd.WithWindowSize(windowFor(int(chunkSize))))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(c, nil), nil
}

// Unpacker decompresses one chunk's frame at a time.
type Unpacker struct{ dec *zstd.Decoder }

// NewUnpacker makes an Unpacker for chunks of chunkSize (its memory bound).
func NewUnpacker(chunkSize int64) (*Unpacker, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(2*chunkSize+1<<20)),
		zstd.WithDecoderMaxWindow(uint64(windowFor(int(chunkSize)))))
	if err != nil {
		return nil, err
	}
	return &Unpacker{dec: dec}, nil
}

// Chunk decompresses frame into dst (want bytes exactly); a frame that does not give them is
// ErrCorrupt's kind: the caller treats it as wrong bytes from its source.
func (u *Unpacker) Chunk(dst, frame []byte, want int) ([]byte, error) {
	out, err := u.dec.DecodeAll(frame, dst[:0])
	if err != nil || len(out) != want {
		return nil, fmt.Errorf("manifests: packed chunk: %d bytes, want %d (%v): %w", len(out), want, err, ErrBadPacked)
	}
	return out, nil
}

// Close releases the decoder.
func (u *Unpacker) Close() { u.dec.Close() }

// ErrBadPacked: a packed chunk does not decompress to its size.
var ErrBadPacked = errors.New("packed chunk does not decompress")

// PackedSize is the size a packing of frames would have, for callers that only have them.
func PackedSize(frames []int64) int64 { return (&Packed{Frames: frames}).Size() }
