package manifests

import (
	"errors"
	"io"
	"runtime"
	"slices"
	"sync"
)

// Where a unit of a new file came from in its base. Both files are cut at the same
// content-defined anchors (a gear hash of the 64 bytes before a position with its low 12
// bits zero: about one per 4 KiB), each anchor's hash its fingerprint; the base offset most
// of a unit's anchors point at is where its window of the base starts, so an insertion
// near the start moves the windows with the content.

// anchorMask makes an anchor about every 4 KiB of content.
const anchorMask = 1<<12 - 1

// gear is a table of random 64-bit values for the content-defined anchors (a gear hash:
// h = h<<1 + gear[b], which after 64 bytes depends on those 64 bytes only), fixed so sync
// and every device cut at the same places.
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

// gearBefore is the gear hash of the (up to) 64 bytes of b before lo: where a pass that
// starts at lo picks up to find the hashes a pass over all of b finds.
func gearBefore(b []byte, lo int) uint64 {
	var h uint64
	for _, x := range b[max(lo-64, 0):lo] {
		h = h<<1 + gear[x]
	}
	return h
}

// anchor is a content-defined position and the fingerprint of the bytes before it.
type anchor struct {
	fp  uint64
	off int64
}

// baseIndex is the anchors of a base, sorted by fingerprint: about 16 bytes per 4 KiB of
// base (8 MiB for 2 GiB).
type baseIndex []anchor

// indexBase finds the base's anchors, its sections on up to workers cores: a section is
// read from 64 bytes before its start, so each anchor's hash is the one a single pass over
// the whole file gives.
func indexBase(base io.ReaderAt, size int64, workers int) (baseIndex, error) {
	const minSection = 32 << 20
	n := int64(max(min(int64(workers), size/minSection), 1))
	section := (size + n - 1) / n
	parts := make([]baseIndex, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			start := i * section
			end := min(start+section, size)
			lead := min(start, 64)
			buf := make([]byte, 1<<20)
			var h uint64
			for off := start - lead; off < end; {
				m, err := base.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
				for j, b := range buf[:m] {
					h = h<<1 + gear[b]
					if h&anchorMask == 0 && off+int64(j) >= start {
						parts[i] = append(parts[i], anchor{fp: h, off: off + int64(j) + 1})
					}
				}
				off += int64(m)
				if err != nil && !(errors.Is(err, io.EOF) && off == end) {
					if errors.Is(err, io.EOF) {
						err = io.ErrUnexpectedEOF
					}
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	idx := slices.Concat(parts...)
	slices.SortFunc(idx, func(a, b anchor) int {
		switch {
		case a.fp < b.fp:
			return -1
		case a.fp > b.fp:
			return 1
		}
		return 0
	})
	return idx, nil
}

// locate is where in the base the unit whose anchors are as (offsets within the unit)
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

// workersFor is how many units encode at once: one per core, at most 8.
func workersFor() int { return max(min(runtime.GOMAXPROCS(0), 8), 1) }
