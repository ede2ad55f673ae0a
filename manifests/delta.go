package manifests

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"

	"github.com/klauspost/compress/zstd"
)

// A delta rebuilds a new blob from an old one (its base) that a device already holds: for
// each chunk of the new blob, a zstd frame compressed against a window of the base as a raw
// dictionary. The window is found by content, not by offset: both files are cut at the
// same content-defined anchors, and the base position most of a chunk's anchors point at
// centres its window, so an insertion near the start moves the windows with it. Every
// chunk is decoded alone from a bounded window of the base (deltaWindow), so encoding and
// applying take bounded memory whatever the file size, and a device verifies each chunk
// against the manifest as it comes, like a downloaded one. The README ("Deltas") has the
// figures that chose this over other methods.
//
//	delta:  magic "DRPX" (4) version 1 (1) chunk_size (8) size (8) base_size (8) chunks (4)
//	        then per chunk, in order: window_offset (8) window_length (4) frame_length (4) frame
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
}

const (
	deltaMagic   = "DRPX"
	deltaVersion = 1
	deltaHeader  = 4 + 1 + 8 + 8 + 8 + 4
	deltaRecord  = 8 + 4 + 4
	// deltaMargin: one unit is compressed against the base from deltaMargin before where
	// its content was found to deltaMargin after its end.
	deltaMargin = 256 << 10
	// deltaUnitBytes is about how much of the file one frame holds (unitFor).
	deltaUnitBytes = 4 << 20
	// anchorMask makes an anchor about every 4 KiB of content.
	anchorMask = 1<<12 - 1
)

// ErrBadDelta marks a delta that does not decode or does not rebuild what its manifest
// says (errors.Is): a device then downloads the chunks instead.
var ErrBadDelta = errors.New("manifests: delta does not apply")

// gear is a table of random 64-bit values for the content-defined anchors (a gear hash:
// h = h<<1 + gear[b]), fixed so sync and every device cut at the same places.
var gear = func() (g [256]uint64) {
	x := uint64(0x9E3779B97F4A7C15)
	for i := range g {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		g[i] = x
	}
	return g
}()

// anchor is a content-defined position and the fingerprint of the bytes after it.
type anchor struct {
	fp  uint64
	off int64
}

// anchors finds the anchors of r's bytes (offsets from base), reading in 1 MiB pieces: where
// the gear hash of the last 64 bytes has its low bits zero; the hash is the anchor's
// fingerprint, so an anchor is found and recognised in one pass.
func anchors(r io.Reader, base int64, fn func(anchor)) error {
	buf := make([]byte, 1<<20)
	var h uint64
	off := base
	for {
		n, err := io.ReadFull(r, buf)
		for i, b := range buf[:n] {
			h = h<<1 + gear[b]
			if h&anchorMask == 0 {
				fn(anchor{fp: h, off: off + int64(i) + 1})
			}
		}
		off += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// baseIndex is the anchors of a base, sorted by fingerprint: about 16 bytes per 4 KiB of
// base (8 MiB for 2 GiB).
type baseIndex []anchor

func indexBase(r io.Reader) (baseIndex, error) {
	var idx baseIndex
	err := anchors(r, 0, func(a anchor) { idx = append(idx, a) })
	slices.SortFunc(idx, func(a, b anchor) int {
		switch {
		case a.fp < b.fp:
			return -1
		case a.fp > b.fp:
			return 1
		}
		return 0
	})
	return idx, err
}

// locate is where in the base the chunk whose anchors are as (offsets within the chunk)
// most likely starts: the base offset most anchors vote for; ok false when none matched.
func (idx baseIndex) locate(as []anchor) (int64, bool) {
	votes := map[int64]int{}
	for _, a := range as {
		i, found := slices.BinarySearchFunc(idx, a.fp, func(x anchor, fp uint64) int {
			switch {
			case x.fp < fp:
				return -1
			case x.fp > fp:
				return 1
			}
			return 0
		})
		// a fingerprint seen many times in the base (zeros, padding) says little
		for j := i; found && j < len(idx) && idx[j].fp == a.fp && j-i < 4; j++ {
			votes[idx[j].off-a.off]++
		}
	}
	best, n := int64(0), 0
	for start, v := range votes {
		if v > n || (v == n && start < best) {
			best, n = start, v
		}
	}
	return best, n > 0
}

// EncodeDelta writes to w the delta that rebuilds the file newF (size bytes, in chunks of
// chunkSize) from base (baseSize bytes), its units encoded in parallel on up to 8 cores.
// Memory: the base's anchor index, and per core one unit (deltaUnitBytes) and its window.
func EncodeDelta(w io.Writer, base io.ReaderAt, baseSize int64, newF io.ReaderAt, size, chunkSize int64) error {
	if chunkSize < MinChunkSize || chunkSize > MaxChunkSize || size < 0 || size > MaxFileSize || baseSize < 0 || baseSize > MaxFileSize {
		return fmt.Errorf("manifests: delta: bad sizes: %w", ErrInvalid)
	}
	idx, err := indexBase(io.NewSectionReader(base, 0, baseSize))
	if err != nil {
		return err
	}
	unitSize := unitFor(chunkSize) * chunkSize
	n := NumChunks(size, chunkSize)
	hdr := make([]byte, deltaHeader)
	copy(hdr, deltaMagic)
	hdr[4] = deltaVersion
	binary.BigEndian.PutUint64(hdr[5:], uint64(chunkSize))
	binary.BigEndian.PutUint64(hdr[13:], uint64(size))
	binary.BigEndian.PutUint64(hdr[21:], uint64(baseSize))
	binary.BigEndian.PutUint32(hdr[29:], uint32(n))
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	// units are encoded in parallel (one per core), written in order
	units := (size + unitSize - 1) / unitSize
	workers := int64(max(min(runtime.GOMAXPROCS(0), 8), 1))
	type result struct {
		rec, frame []byte
		err        error
	}
	results := make([]chan result, units)
	for u := range results {
		results[u] = make(chan result, 1)
	}
	sem := make(chan struct{}, workers)
	go func() {
		for u := int64(0); u < units; u++ {
			sem <- struct{}{}
			go func() {
				rec, frame, err := encodeUnit(idx, base, baseSize, newF, size, u*unitSize, unitSize)
				results[u] <- result{rec, frame, err}
			}()
		}
	}()
	var firstErr error
	for u := range results {
		r := <-results[u]
		<-sem
		if firstErr != nil {
			continue
		}
		if firstErr = r.err; firstErr != nil {
			continue
		}
		if _, err := w.Write(r.rec); err != nil {
			firstErr = err
			continue
		}
		if _, err := w.Write(r.frame); err != nil {
			firstErr = err
		}
	}
	return firstErr
}

// encodeUnit encodes the unit of newF at off: its record and frame.
func encodeUnit(idx baseIndex, base io.ReaderAt, baseSize int64, newF io.ReaderAt, size, off, unitSize int64) ([]byte, []byte, error) {
	c := make([]byte, min(unitSize, size-off))
	if _, err := newF.ReadAt(c, off); err != nil && !(errors.Is(err, io.EOF) && len(c) > 0) {
		return nil, nil, err
	}
	var as []anchor
	_ = anchors(bytes.NewReader(c), 0, func(a anchor) { as = append(as, a) })
	start, ok := idx.locate(as)
	if !ok {
		start = off * baseSize / size // nothing matched: the same relative place
	}
	span := unitSize + 2*deltaMargin
	wOff := max(min(start-deltaMargin, baseSize-span), 0)
	wLen := min(span, baseSize-wOff)
	win := make([]byte, wLen)
	if _, err := base.ReadAt(win, wOff); err != nil && !(errors.Is(err, io.EOF)) {
		return nil, nil, err
	}
	opts := []zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(windowFor(int(span))), zstd.WithZeroFrames(true)}
	if len(win) > 0 {
		opts = append(opts, zstd.WithEncoderDictRaw(1, win))
	}
	enc, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		return nil, nil, err
	}
	frame := enc.EncodeAll(c, nil)
	enc.Close()
	rec := make([]byte, deltaRecord)
	binary.BigEndian.PutUint64(rec, uint64(wOff))
	binary.BigEndian.PutUint32(rec[8:], uint32(wLen))
	binary.BigEndian.PutUint32(rec[12:], uint32(len(frame)))
	return rec, frame, nil
}

// unitFor is how many chunks one zstd frame of a delta holds: about deltaUnitBytes, at
// least one chunk. Fewer, larger frames cost less (each frame primes the encoder with its
// window anew), and a device still verifies every chunk.
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
	ChunkSize, Size int64
	baseSize        int64
	chunks, next    int
	unit            []byte // the decoded unit the next chunks come from
	win, frame      []byte
}

// NewDeltaReader reads a delta's header from r and checks it against what the manifest
// says: the file's size and chunk size, the base's size.
func NewDeltaReader(r io.Reader, base io.ReaderAt, baseSize, size, chunkSize int64) (*DeltaReader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	hdr := make([]byte, deltaHeader)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadDelta, err)
	}
	if string(hdr[:4]) != deltaMagic || hdr[4] != deltaVersion {
		return nil, fmt.Errorf("%w: not a delta of version %d", ErrBadDelta, deltaVersion)
	}
	d := &DeltaReader{r: br, base: base, ChunkSize: int64(binary.BigEndian.Uint64(hdr[5:])), Size: int64(binary.BigEndian.Uint64(hdr[13:])),
		baseSize: int64(binary.BigEndian.Uint64(hdr[21:])), chunks: int(binary.BigEndian.Uint32(hdr[29:]))}
	if d.ChunkSize != chunkSize || d.Size != size || d.baseSize != baseSize || int64(d.chunks) != NumChunks(size, chunkSize) {
		return nil, fmt.Errorf("%w: made for another file or base", ErrBadDelta)
	}
	return d, nil
}

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

// readUnit decodes the next unit.
func (d *DeltaReader) readUnit() error {
	unitSize := unitFor(d.ChunkSize) * d.ChunkSize
	start := int64(d.next) * d.ChunkSize
	want := min(unitSize, d.Size-start)
	rec := make([]byte, deltaRecord)
	if _, err := io.ReadFull(d.r, rec); err != nil {
		return fmt.Errorf("%w: chunk %d: %v", ErrBadDelta, d.next, err)
	}
	wOff, wLen, fLen := int64(binary.BigEndian.Uint64(rec)), int64(binary.BigEndian.Uint32(rec[8:])), int64(binary.BigEndian.Uint32(rec[12:]))
	if wOff < 0 || wLen > unitSize+2*deltaMargin || wOff+wLen > d.baseSize || fLen > 2*unitSize+(1<<16) {
		return fmt.Errorf("%w: chunk %d: window or frame out of bounds", ErrBadDelta, d.next)
	}
	if int64(cap(d.frame)) < fLen {
		d.frame = make([]byte, fLen)
	}
	frame := d.frame[:fLen]
	if _, err := io.ReadFull(d.r, frame); err != nil {
		return fmt.Errorf("%w: chunk %d: %v", ErrBadDelta, d.next, err)
	}
	if int64(cap(d.win)) < wLen {
		d.win = make([]byte, wLen)
	}
	win := d.win[:wLen]
	if _, err := d.base.ReadAt(win, wOff); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	opts := []zstd.DOption{zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(3 * (unitSize + 2*deltaMargin))),
		zstd.WithDecoderMaxWindow(uint64(windowFor(int(unitSize + 2*deltaMargin))))}
	if wLen > 0 {
		opts = append(opts, zstd.WithDecoderDictRaw(1, win))
	}
	dec, err := zstd.NewReader(nil, opts...)
	if err != nil {
		return err
	}
	defer dec.Close()
	out, err := dec.DecodeAll(frame, make([]byte, 0, want))
	if err != nil || int64(len(out)) != want {
		return fmt.Errorf("%w: chunk %d: a unit of %d bytes, want %d (%v)", ErrBadDelta, d.next, len(out), want, err)
	}
	d.unit = out
	return nil
}
