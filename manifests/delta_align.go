package manifests

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
)

// An aligned unit (delta version 2) rebuilds a unit of the new file from its window of the
// base as a list of operations, each "copy window bytes, add differences to the next ones,
// then insert new bytes": a rebuilt binary is mostly its old self with addresses and
// offsets changed here and there, so along a good alignment most bytes are equal and the
// differences are small repeated values, which compress to almost nothing, and the rest is
// new bytes. Finding the alignments costs about one pass over the unit and part of its
// window (matches are looked up at content-defined points, and only where the current
// alignment stops holding), which is what makes it several times cheaper than compressing
// the unit against the window as a dictionary, and it is smaller on rebuilt binaries
// (README, "Deltas").
//
//	op:     uvarint copy, uvarint diff, uvarint extra, varint (zigzag) where the op's
//	        window bytes start, less where the previous op's ended
//
// An op copies copy bytes of the window, adds the next diff bytes of the diff stream to
// the window's next diff bytes, and inserts the next extra bytes of the extra stream. The
// three streams are compressed apart (delta.go) because they compress best alone.

const (
	// fineMask makes a match point about every 32 bytes of content.
	fineMask = 1<<5 - 1
	// probe is how many bytes before a match point must be equal to call it a match.
	probe = 32
	// alignTableBits sizes the table of the window's match points (8 bytes each).
	alignTableBits = 17
)

// aligner finds a unit's operations against its window; one per worker, reused.
type aligner struct {
	// table holds, by the hash of the bytes before a window match point, the last and the
	// first such point (+1; 0 none), side by side so one cache line answers both
	table          [][2]int32
	points         []anchor
	pieces         []piece
	ilo, ihi       int  // the part of the window in table
	start, d       int  // the op being built starts at c[start], aligned by d
	aligned        bool // (c[k] pairs with win[k+d]), if aligned
	unit, win      []byte
	ops, diff, ext []byte
	prevEnd        int // end of the previous op's diff in the window
}

func newAligner() *aligner { return &aligner{table: make([][2]int32, 1<<alignTableBits)} }

func slot(h uint64) uint64 { return (h * 0x9E3779B97F4A7C15) >> (64 - alignTableBits) }

// matchLen is how many leading bytes a and b share.
func matchLen(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		if x := binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:]); x != 0 {
			return i + bits.TrailingZeros64(x)/8
		}
	}
	for ; i < n && a[i] == b[i]; i++ {
	}
	return i
}

// anchors finds anchors of c (a.points; offsets after the byte that makes one), which
// locate the unit in its base: where the gear hash of the bytes before has its low 12
// bits zero. A unit of more than 1 MiB is sampled: 16 stretches of 32 KiB spread over it
// (about 128 anchors) vote as well as all of them, for an eighth of the pass.
func (a *aligner) anchors(c []byte) []anchor {
	const stretches, stretch = 16, 32 << 10
	a.points = a.points[:0]
	if len(c) <= 1<<20 {
		a.anchorsIn(c, 0, len(c))
		return a.points
	}
	for k := range stretches {
		lo := k * len(c) / stretches
		a.anchorsIn(c, lo, lo+stretch)
	}
	return a.points
}

// anchorsIn appends the anchors of c[lo:hi] to a.points, the hash started 64 bytes before
// lo so each is the one a pass over the whole unit gives.
func (a *aligner) anchorsIn(c []byte, lo, hi int) {
	h := gearBefore(c, lo)
	for i, b := range c[lo:hi] {
		h = h<<1 + gear[b]
		if h&anchorMask == 0 {
			a.points = append(a.points, anchor{fp: h, off: int64(lo + i + 1)})
		}
	}
}

// align computes the operations that rebuild c from win, given the guess that c[0] is
// win[guess] (out of range: no guess), into a.ops, a.diff and a.ext. It checks the current
// alignment every probe bytes, and only where it no longer mostly holds does it find the
// match points there (where the gear hash of the bytes before has its low 5 bits zero)
// and look each up in the window's.
func (a *aligner) align(win, c []byte, guess int) {
	a.ops, a.ext, a.prevEnd = a.ops[:0], a.ext[:0], 0
	if cap(a.diff) < len(c) {
		a.diff = make([]byte, 0, len(c))
	}
	a.diff = a.diff[:0]
	clear(a.table)
	a.ilo, a.ihi = 0, 0
	// the op being built starts at c[start], aligned with win by d (c[k] pairs with win[k+d])
	a.start, a.d = 0, guess
	a.aligned = guess >= 0 && guess < len(win)
	var h uint64 // the gear hash of the bytes before c[hAt]
	hAt := -1
	for q := probe; q <= len(c); q += probe {
		if o := q + a.d; a.aligned && o >= probe && o <= len(win) && mostlyEqual(c[q-probe:q], win[o-probe:o]) {
			continue
		}
		lo := q - probe
		if hAt != lo {
			h = gearBefore(c, lo)
		}
		for i, b := range c[lo:q] {
			h = h<<1 + gear[b]
			if h&fineMask == 0 && lo+i+1 >= probe {
				a.try(win, c, lo+i+1, h, guess)
			}
		}
		hAt = q
	}
	a.emit(win, c, a.start, len(c), a.d, a.aligned, -len(win)-len(c)-1)
}

// try looks the match point at c[q] (its hash fp) up in the window and switches to the
// alignment it gives when that pays: its exact match is more than 8 bytes longer than the
// bytes the current alignment gets right over the same span.
func (a *aligner) try(win, c []byte, q int, fp uint64, guess int) {
	d := a.d
	if o := q + d; a.aligned && o >= probe && o <= len(win) && mostlyEqual(c[q-probe:q], win[o-probe:o]) {
		return
	}
	center := q + guess
	if a.aligned {
		center = q + d
	}
	a.indexWindow(win, center-lookAround, center+lookAround)
	// the last and the first window point with this fingerprint: the longer exact match,
	// of two as long the one with more window after it (in repetitive content the last
	// runs out of window at once, and switching again and again cost the most)
	cand, l := -1, 0
	for _, t := range a.table[slot(fp)] {
		p := int(t) - 1
		if p < probe || p == cand || !bytes.Equal(c[q-probe:q], win[p-probe:p]) {
			continue
		}
		m := probe + matchLen(c[q:min(len(c), q+256)], win[p:])
		if m > l || (m == l && p < cand) {
			cand, l = p, m
		}
	}
	if cand < 0 {
		return
	}
	nd := cand - q
	if a.aligned && nd == d {
		return
	}
	if a.aligned && l <= equalBytes(c[q-probe:q-probe+l], win, q-probe+d)+8 {
		return
	}
	// switch to nd where its exact match begins (looked for at most maxBack back: in
	// repetitive content many alignments match all the way back, and going there on every
	// switch made the walk quadratic)
	b0 := q - probe
	lim := max(a.start, b0-maxBack)
	for b0 > lim && b0+nd > 0 && c[b0-1] == win[b0-1+nd] {
		b0--
	}
	a.start = a.emit(win, c, a.start, b0, d, a.aligned, nd)
	a.d, a.aligned = nd, true
}

// maxBack bounds how far back a new alignment's start is looked for.
const maxBack = 64 << 10

// mostlyEqual reports whether at least 3/4 of the probe bytes of x and y are equal: an
// alignment that still holds that well is not worth a look for another.
func mostlyEqual(x, y []byte) bool {
	const lo7 = 0x7f7f7f7f7f7f7f7f
	n := 0
	for k := 0; k < probe; k += 8 {
		v := binary.LittleEndian.Uint64(x[k:]) ^ binary.LittleEndian.Uint64(y[k:])
		z := ^((v&lo7 + lo7) | v | lo7) // the high bit of each zero byte
		n += bits.OnesCount64(z)
	}
	return n >= probe*3/4
}

// lookAround is how far from where the current alignment puts a position the window is
// looked in for another: the window is indexed only as far as lookups need it (a unit
// that stays aligned indexes none of it).
const lookAround = 2 * deltaMargin

// indexWindow puts the match points of win[lo:hi] in the table, as far as they are not
// there yet; the part indexed stays one interval.
func (a *aligner) indexWindow(win []byte, lo, hi int) {
	lo, hi = max(lo, 0), min(hi, len(win))
	switch {
	case lo >= hi:
	case a.ilo >= a.ihi:
		a.index(win, lo, hi)
		a.ilo, a.ihi = lo, hi
	default:
		if lo < a.ilo {
			a.index(win, lo, a.ilo)
			a.ilo = lo
		}
		if hi > a.ihi {
			a.index(win, a.ihi, hi)
			a.ihi = hi
		}
	}
}

// index puts the match points of win[lo:hi] in the table; the hash starts 64 bytes
// before lo, so each is the one a pass over the whole window gives.
func (a *aligner) index(win []byte, lo, hi int) {
	h := gearBefore(win, lo)
	for i, b := range win[lo:hi] {
		h = h<<1 + gear[b]
		if h&fineMask == 0 {
			e := &a.table[slot(h)]
			e[0] = int32(lo + i + 2)
			if e[1] == 0 {
				e[1] = e[0]
			}
		}
	}
}

// equalBytes is how many bytes of s equal win's from o on (out of win: unequal).
func equalBytes(s, win []byte, o int) int {
	n := 0
	for k, b := range s {
		if j := o + k; j >= 0 && j < len(win) && win[j] == b {
			n++
		}
	}
	return n
}

// backward is how far back from c[end] (down to start, at most maxBack) the alignment d
// pays, as forward.
func backward(win, c []byte, start, end, d int) int {
	s, best, n := 0, 0, 0
	for k := end - 1; k >= max(start, end-maxBack); k-- {
		j := k + d
		if j < 0 || j >= len(win) {
			break
		}
		if win[j] == c[k] {
			s++
		} else {
			s--
		}
		if s > best {
			best, n = s, end-k
		}
	}
	return n
}

const hi = 0x8080808080808080

// byteWise appends a-b (sub) or a+b byte by byte, mod 256, to dst, eight bytes at a time
// (the high bit of each byte apart, so no carry or borrow crosses into the next).
func byteWise(dst, a, b []byte, sub bool) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, len(a))...)
	out := dst[n:]
	k := 0
	for ; k+8 <= len(a); k += 8 {
		x, y := binary.LittleEndian.Uint64(a[k:]), binary.LittleEndian.Uint64(b[k:])
		r := ((x &^ hi) + (y &^ hi)) ^ ((x ^ y) & hi)
		if sub {
			r = ((x | hi) - (y &^ hi)) ^ ((x ^ ^y) & hi)
		}
		binary.LittleEndian.PutUint64(out[k:], r)
	}
	for ; k < len(a); k++ {
		if sub {
			out[k] = a[k] - b[k]
		} else {
			out[k] = a[k] + b[k]
		}
	}
	return dst
}

// emit ends the op that began at c[start] under alignment d (if aligned) where the next,
// aligned by nd, begins at c[end] at the latest: d's part runs forward as far as it pays
// (each equal byte +1, each unequal -1: the best-scoring prefix), nd's reaches back over
// what is left as far as it pays, and the bytes between are extra. d's part is cut in one
// pass into pieces: a run of equal bytes (copied), then the bytes up to the next run of at
// least minRun (diffs). It returns where the next op begins.
func (a *aligner) emit(win, c []byte, start, end, d int, aligned bool, nd int) int {
	a.pieces = a.pieces[:0]
	lenf := 0
	if aligned && start+d >= 0 && start+d < len(win) {
		x, y := c[start:min(end, len(win)-d)], win[start+d:]
		score, best := 0, 0
		for i := 0; i < len(x) && best-score < len(x)-i; {
			cp := matchLen(x[i:], y[i:])
			j := i + cp
			if score += cp; score > best {
				best, lenf = score, j
			}
			k := j
			for k < len(x) {
				if x[k] != y[k] {
					k++
					score--
					continue
				}
				r := matchLen(x[k:min(len(x), k+minRun)], y[k:])
				if r >= minRun {
					break
				}
				k += r
				if score += r; score > best {
					best, lenf = score, k
				}
			}
			a.pieces = append(a.pieces, piece{i, cp, k - j})
			i = k
		}
	}
	lenb := backward(win, c, start+lenf, end, nd)
	extra := c[start+lenf : end-lenb]
	n := 0
	for _, p := range a.pieces {
		if p.at < lenf {
			n++
		}
	}
	if n == 0 && len(extra) > 0 {
		a.op(0, 0, extra, a.prevEnd)
	}
	for _, p := range a.pieces[:n] {
		cp := min(p.copy, lenf-p.at)
		dl := min(p.diff, lenf-p.at-cp)
		at := start + p.at + cp
		a.diff = byteWise(a.diff, c[at:at+dl], win[at+d:at+d+dl], true)
		var ext []byte
		if n--; n == 0 {
			ext = extra
		}
		a.op(cp, dl, ext, start+p.at+d)
	}
	return end - lenb
}

// piece is a part of an op's aligned bytes, from at: copy equal bytes, then diff others.
type piece struct{ at, copy, diff int }

// minRun is the shortest run of equal bytes an aligned part copies rather than diffs.
const minRun = 16

// op appends the op "copy cp bytes of the window from o, add the next dl diff bytes to its
// next dl, then insert ext".
func (a *aligner) op(cp, dl int, ext []byte, o int) {
	a.ops = binary.AppendUvarint(a.ops, uint64(cp))
	a.ops = binary.AppendUvarint(a.ops, uint64(dl))
	a.ops = binary.AppendUvarint(a.ops, uint64(len(ext)))
	a.ops = binary.AppendVarint(a.ops, int64(o-a.prevEnd))
	a.ext = append(a.ext, ext...)
	a.prevEnd = o + cp + dl
}

// applyAligned rebuilds a unit of want bytes from win and its ops, diff and extra streams,
// checking every operation against the bounds.
func applyAligned(win, ops, diff, ext []byte, want int, out []byte) ([]byte, error) {
	prevEnd := 0
	for len(ops) > 0 {
		var f [3]uint64
		for i := range f {
			v, n := binary.Uvarint(ops)
			if n <= 0 {
				return nil, fmt.Errorf("%w: bad operation", ErrBadDelta)
			}
			f[i], ops = v, ops[n:]
		}
		rel, n := binary.Varint(ops)
		if n <= 0 {
			return nil, fmt.Errorf("%w: bad operation", ErrBadDelta)
		}
		ops = ops[n:]
		cp, dl, el := f[0], f[1], f[2]
		if cp > uint64(want) || dl > uint64(len(diff)) || el > uint64(len(ext)) || uint64(len(out))+cp+dl+el > uint64(want) ||
			rel < -int64(len(win)) || rel > int64(len(win)) {
			return nil, fmt.Errorf("%w: operation out of bounds", ErrBadDelta)
		}
		o := int64(prevEnd) + rel
		if o < 0 || o+int64(cp+dl) > int64(len(win)) {
			return nil, fmt.Errorf("%w: operation out of the window", ErrBadDelta)
		}
		out = append(out, win[o:o+int64(cp)]...)
		out = byteWise(out, win[o+int64(cp):o+int64(cp+dl)], diff[:dl], false)
		diff = diff[dl:]
		out = append(out, ext[:el]...)
		ext = ext[el:]
		prevEnd = int(o) + int(cp+dl)
	}
	if len(out) != want || len(diff) != 0 || len(ext) != 0 {
		return nil, fmt.Errorf("%w: operations rebuild %d bytes, want %d", ErrBadDelta, len(out), want)
	}
	return out, nil
}
