package manifests

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// A delta rebuilds a new blob from an old one (its base) that a device already holds, unit
// by unit (about 4 MiB of the new blob each): a unit is rebuilt from a window of the base,
// found by content (delta_locate.go), by operations that copy the window's bytes, add small
// differences to them, or insert new bytes (delta_align.go). Every unit is decoded alone
// from its bounded window, so encoding and applying take bounded memory whatever the file
// size, and a device verifies each chunk against the manifest as it comes, like a
// downloaded one. The README ("Deltas") has the figures that chose this over compressing
// each unit against its window as a zstd dictionary.
//
//	delta:  magic "DRPX" (4) version 2 (1) chunk_size (8) size (8) base_size (8) chunks (4)
//	        then per unit, in order: window_offset (8) window_length (4) and three streams
//	        (ops, diff, extra), each raw_length (4) frame_length (4) frame (zstd; none when
//	        raw_length is 0)
//
// All integers are big-endian. A delta is a blob like any other: named by its SHA-256, it
// is verified whole before it is used, and it is trusted only through the manifest that
// names it (Delta).

// Delta is a delta of a file's blob from an older blob (File.Deltas).
type Delta struct {
	From     Hash  `json:"from"`      // the base: a blob of an earlier version
	FromSize int64 `json:"from_size"` // its size
	Blob     Hash  `json:"blob"`      // the delta's own blob
	Size     int64 `json:"size"`      // the delta's size
	// Chunks are the SHA-256 of each chunk of the delta's blob (the manifest's chunk
	// size), so a delta travels like a file: from several sources at once, and from a
	// peer while the peer is still downloading it.
	Chunks []Hash `json:"chunks"`
}

const (
	deltaMagic = "DRPX"
	// DeltaVersion is the delta format sync writes and devices read; a delta of another
	// version is refused (ErrBadDelta) and the device downloads the chunks instead.
	DeltaVersion = 2
	deltaHeader  = 4 + 1 + 8 + 8 + 8 + 4
	deltaRecord  = 8 + 4
	streamHeader = 4 + 4
	// deltaMargin: a unit's window of the base runs from deltaMargin before where its
	// content was found to deltaMargin after its end.
	deltaMargin = 256 << 10
	// deltaUnitBytes is about how much of the file one unit holds (unitFor).
	deltaUnitBytes = 4 << 20
)

// ErrBadDelta marks a delta that does not decode or does not rebuild what its manifest
// says (errors.Is): a device then downloads the chunks instead.
var ErrBadDelta = errors.New("manifests: delta does not apply")

// EncodeDelta writes to w the delta that rebuilds the file newF (size bytes, in chunks of
// chunkSize) from base (baseSize bytes), its units encoded in parallel on up to 8 cores.
// Memory: the base's anchor index, and per core one unit (deltaUnitBytes), its window and
// its streams.
func EncodeDelta(w io.Writer, base io.ReaderAt, baseSize int64, newF io.ReaderAt, size, chunkSize int64) error {
	if chunkSize < MinChunkSize || chunkSize > MaxChunkSize || size < 0 || size > MaxFileSize || baseSize < 0 || baseSize > MaxFileSize {
		return fmt.Errorf("manifests: delta: bad sizes: %w", ErrInvalid)
	}
	workers := workersFor()
	idx, err := indexBase(base, baseSize, workers)
	if err != nil {
		return err
	}
	unitSize := unitFor(chunkSize) * chunkSize
	n := NumChunks(size, chunkSize)
	hdr := make([]byte, deltaHeader)
	copy(hdr, deltaMagic)
	hdr[4] = DeltaVersion
	binary.BigEndian.PutUint64(hdr[5:], uint64(chunkSize))
	binary.BigEndian.PutUint64(hdr[13:], uint64(size))
	binary.BigEndian.PutUint64(hdr[21:], uint64(baseSize))
	binary.BigEndian.PutUint32(hdr[29:], uint32(n))
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(workers),
		zstd.WithWindowSize(windowFor(int(min(unitSize, size+64)))), zstd.WithZeroFrames(true))
	if err != nil {
		return err
	}
	defer enc.Close()
	// units are encoded in parallel (one per worker, each with its own buffers), written in
	// order; a worker whose unit is done goes on to the next while an earlier one is still
	// being encoded, so up to 4 units per worker may be in flight (a unit's output is small).
	// inOrder returns only when no unit is encoding any more: enc is closed after it.
	free := make(chan *aligner, workers)
	for range workers {
		free <- newAligner()
	}
	return inOrder((size+unitSize-1)/unitSize, 4*workers, func(u int64) ([]byte, error) {
		a := <-free
		defer func() { free <- a }()
		return a.encodeUnit(enc, idx, base, baseSize, newF, size, u*unitSize, unitSize)
	}, func(_ int64, out []byte) error {
		_, err := w.Write(out)
		return err
	})
}

// encodeUnit encodes the unit of newF at off: its record and streams.
func (a *aligner) encodeUnit(enc *zstd.Encoder, idx baseIndex, base io.ReaderAt, baseSize int64, newF io.ReaderAt, size, off, unitSize int64) ([]byte, error) {
	c := grow(&a.unit, int(min(unitSize, size-off)))
	if _, err := newF.ReadAt(c, off); err != nil && !(errors.Is(err, io.EOF) && len(c) > 0) {
		return nil, err
	}
	start, ok := idx.locate(a.anchors(c))
	if !ok {
		start = off * baseSize / size // nothing matched: the same relative place
	}
	span := unitSize + 2*deltaMargin
	wOff := max(min(start-deltaMargin, baseSize-span), 0)
	win := grow(&a.win, int(min(span, baseSize-wOff)))
	if _, err := base.ReadAt(win, wOff); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	a.align(win, c, int(start-wOff))
	if len(a.ops) > len(c)+64 {
		// a pathological unit: its bytes as they are
		a.ops, a.diff, a.ext, a.prevEnd = a.ops[:0], a.diff[:0], a.ext[:0], 0
		a.op(0, 0, c, 0)
	}
	out := make([]byte, deltaRecord, deltaRecord+len(a.ops)+len(a.diff)/4+len(a.ext)+3*streamHeader)
	binary.BigEndian.PutUint64(out, uint64(wOff))
	binary.BigEndian.PutUint32(out[8:], uint32(len(win)))
	for _, s := range [][]byte{a.ops, a.diff, a.ext} {
		at := len(out)
		out = append(out, make([]byte, streamHeader)...)
		if len(s) > 0 {
			out = enc.EncodeAll(s, out)
		}
		binary.BigEndian.PutUint32(out[at:], uint32(len(s)))
		binary.BigEndian.PutUint32(out[at+4:], uint32(len(out)-at-streamHeader))
	}
	return out, nil
}

// grow returns (*b)[:n], reallocating *b when it is too small.
func grow(b *[]byte, n int) []byte {
	if cap(*b) < n {
		*b = make([]byte, n)
	}
	return (*b)[:n]
}

// unitFor is how many chunks one unit of a delta holds: about deltaUnitBytes, at least one
// chunk. Larger units cost less (each indexes its window anew) and find more (their
// windows overlap less), and a device still verifies every chunk.
func unitFor(chunkSize int64) int64 { return max(deltaUnitBytes/chunkSize, 1) }

// windowFor is the zstd window that reaches back over n bytes (a power of two).
func windowFor(n int) int {
	w := zstd.MinWindowSize
	for w < n && w < zstd.MaxWindowSize {
		w <<= 1
	}
	return w
}

// DeltaReader reads a delta's units in order and hands out their chunks, rebuilt from the
// base.
type DeltaReader struct {
	r               *bufio.Reader
	base            io.ReaderAt
	dec             *zstd.Decoder
	ChunkSize, Size int64
	baseSize        int64
	chunks, next    int
	unit            []byte // what is left of the decoded unit the next chunks come from
	out, win, frame []byte
	streams         [3][]byte
}

// NewDeltaReader reads a delta's header from r and checks it against what the manifest
// says: the file's size and chunk size, the base's size. Close releases it.
func NewDeltaReader(r io.Reader, base io.ReaderAt, baseSize, size, chunkSize int64) (*DeltaReader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	hdr := make([]byte, deltaHeader)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadDelta, err)
	}
	if string(hdr[:4]) != deltaMagic || hdr[4] != DeltaVersion {
		return nil, fmt.Errorf("%w: not a delta of version %d", ErrBadDelta, DeltaVersion)
	}
	d := &DeltaReader{r: br, base: base, ChunkSize: int64(binary.BigEndian.Uint64(hdr[5:])), Size: int64(binary.BigEndian.Uint64(hdr[13:])),
		baseSize: int64(binary.BigEndian.Uint64(hdr[21:])), chunks: int(binary.BigEndian.Uint32(hdr[29:]))}
	if d.ChunkSize != chunkSize || d.Size != size || d.baseSize != baseSize || int64(d.chunks) != NumChunks(size, chunkSize) {
		return nil, fmt.Errorf("%w: made for another file or base", ErrBadDelta)
	}
	unitSize := unitFor(chunkSize) * chunkSize
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(unitSize+64)),
		zstd.WithDecoderMaxWindow(uint64(windowFor(int(unitSize+64)))))
	if err != nil {
		return nil, err
	}
	d.dec = dec
	return d, nil
}

// Close releases the reader's decoder.
func (d *DeltaReader) Close() { d.dec.Close() }

// Next returns the next rebuilt chunk and its index (valid until the next call); io.EOF
// after the last. The caller checks it against the manifest's chunk hash.
func (d *DeltaReader) Next() (int, []byte, error) {
	if d.next == d.chunks {
		return 0, nil, io.EOF
	}
	if len(d.unit) == 0 {
		if err := d.readUnit(); err != nil {
			return 0, nil, err
		}
	}
	i := d.next
	n := min(d.ChunkSize, int64(len(d.unit)))
	c := d.unit[:n]
	d.unit = d.unit[n:]
	d.next++
	return i, c, nil
}

// readUnit decodes the next unit, every length checked against its bound before it is
// used: a window within the base and no larger than an encoder makes it, streams no
// longer than the unit (the ops a little more), frames no longer than what they hold.
func (d *DeltaReader) readUnit() error {
	unitSize := unitFor(d.ChunkSize) * d.ChunkSize
	start := int64(d.next) * d.ChunkSize
	want := min(unitSize, d.Size-start)
	rec := make([]byte, deltaRecord)
	if _, err := io.ReadFull(d.r, rec); err != nil {
		return fmt.Errorf("%w: chunk %d: %v", ErrBadDelta, d.next, err)
	}
	wOff, wLen := int64(binary.BigEndian.Uint64(rec)), int64(binary.BigEndian.Uint32(rec[8:]))
	if wOff < 0 || wLen > unitSize+2*deltaMargin || wOff > d.baseSize || wOff+wLen > d.baseSize {
		return fmt.Errorf("%w: chunk %d: window out of bounds", ErrBadDelta, d.next)
	}
	for i := range d.streams {
		sh := make([]byte, streamHeader)
		if _, err := io.ReadFull(d.r, sh); err != nil {
			return fmt.Errorf("%w: chunk %d: %v", ErrBadDelta, d.next, err)
		}
		raw, fLen := int64(binary.BigEndian.Uint32(sh)), int64(binary.BigEndian.Uint32(sh[4:]))
		if raw > want+64 || fLen > raw+raw/64+1024 || (raw == 0) != (fLen == 0) {
			return fmt.Errorf("%w: chunk %d: stream out of bounds", ErrBadDelta, d.next)
		}
		frame := grow(&d.frame, int(fLen))
		if _, err := io.ReadFull(d.r, frame); err != nil {
			return fmt.Errorf("%w: chunk %d: %v", ErrBadDelta, d.next, err)
		}
		s, err := d.dec.DecodeAll(frame, grow(&d.streams[i], int(raw))[:0])
		if err != nil || int64(len(s)) != raw {
			return fmt.Errorf("%w: chunk %d: a stream of %d bytes, want %d (%v)", ErrBadDelta, d.next, len(s), raw, err)
		}
		d.streams[i] = s
	}
	win := grow(&d.win, int(wLen))
	if _, err := d.base.ReadAt(win, wOff); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	out, err := applyAligned(win, d.streams[0], d.streams[1], d.streams[2], int(want), grow(&d.out, int(want))[:0])
	if err != nil {
		return fmt.Errorf("%w (chunk %d)", err, d.next)
	}
	d.out, d.unit = out, out
	return nil
}
