package peer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/drepo-dev/drepo/manifests"
)

// blobView is the reading side of one blob in the store, whether complete or still
// arriving: fetch (another process) writes a partial blob and its state file, and moves
// the file under its final name when every chunk is verified. blobView is the one place
// that reads that protocol: which chunks are verified, waiting for the next one, and
// "finished meanwhile" (the partial gone because it is complete). The server's status,
// serving and discovery answers all go through it.
type blobView struct {
	s        *Store
	h        manifests.Hash
	st       PartialState // verified chunks (all, when complete)
	complete bool
	active   bool // a fetch holds the partial (Store.fetching)
}

// errNotHeld: the store holds nothing of the blob (or only a stale, empty partial).
var errNotHeld = errors.New("peer: blob not held")

// errAltered: a complete blob is not the file that was verified (Store.intact).
var errAltered = errors.New("peer: the blob on disk is not the one verified (altered since); run drepo store verify")

// view reads what the store holds of blob h: a complete blob, or a partial one with its
// verified chunks. A complete blob's chunks are those of the default size (for serving).
func (s *Store) view(h manifests.Hash) (*blobView, error) {
	if fi, err := os.Lstat(s.BlobPath(h)); err == nil && fi.Mode().IsRegular() {
		if !s.intact(h, fi) {
			return nil, errAltered
		}
		return &blobView{s: s, h: h, st: completeState(fi.Size()), complete: true}, nil
	}
	st, err := s.partialState(h)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// finished meanwhile: moved under its final name between the two looks
			return s.viewComplete(h)
		}
		return nil, fmt.Errorf("peer: partial %s: %w", h, err)
	}
	return &blobView{s: s, h: h, st: st, active: s.fetching(h)}, nil
}

func (s *Store) viewComplete(h manifests.Hash) (*blobView, error) {
	fi, err := os.Lstat(s.BlobPath(h))
	if err != nil || !fi.Mode().IsRegular() {
		return nil, errNotHeld
	}
	if !s.intact(h, fi) {
		return nil, errAltered
	}
	return &blobView{s: s, h: h, st: completeState(fi.Size()), complete: true}, nil
}

// completeState is the state of a blob held whole: chunks of the default size, every one
// verified.
func completeState(size int64) PartialState {
	st, _ := NewPartialState(size, manifests.DefaultChunkSize)
	for i := range st.Chunks() {
		st.Set(i)
	}
	return st
}

// held is what discovery announces: complete, or the verified bytes of a partial while a
// fetch holds it (from its first byte, so devices that start together can follow it). A
// partial left by a failed fetch is not announced: nobody would bring it further.
func (v *blobView) held() (complete bool, held int64, ok bool) {
	if v.complete {
		return true, v.st.Size, true
	}
	return false, v.st.VerifiedBytes(), v.active
}

// open opens the blob's file for reading: the partial, or the final one if it finished
// meanwhile (the same bytes, renamed).
func (v *blobView) open() (*os.File, error) {
	if !v.complete {
		f, err := openNoFollow(v.s.partialPath(v.h), os.O_RDONLY, 0)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
	}
	return openNoFollow(v.s.BlobPath(v.h), os.O_RDONLY, 0)
}

// has reports whether chunk i is verified as last read.
func (v *blobView) has(i int) bool { return v.complete || v.st.Has(i) }

// refresh reads the state again; a blob that finished meanwhile has every chunk.
func (v *blobView) refresh() {
	if v.complete {
		return
	}
	next, err := v.s.partialState(v.h)
	switch {
	case err == nil && next.Size == v.st.Size && next.ChunkSize == v.st.ChunkSize:
		v.st = next
	case errors.Is(err, fs.ErrNotExist):
		if fi, serr := os.Lstat(v.s.BlobPath(v.h)); serr == nil && fi.Mode().IsRegular() {
			v.complete = true
		}
	}
}

// wait waits up to max for chunk i to be verified, reading the state every statePoll; it
// returns false when max passed or ctx ended first.
func (v *blobView) wait(ctx context.Context, i int, max time.Duration) bool {
	deadline := time.Now().Add(max)
	for {
		if v.has(i) {
			return true
		}
		v.refresh()
		if v.has(i) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(statePoll):
		}
	}
}
