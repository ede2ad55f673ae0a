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
	fresh    bool // the state file was written within activeFetch: a fetch is at work
}

// errNotHeld: the store holds nothing of the blob (or only a stale, empty partial).
var errNotHeld = errors.New("peer: blob not held")

// view reads what the store holds of blob h: a complete blob, or a partial one with its
// verified chunks. A complete blob's chunks are those of the default size (for serving).
func (s *Store) view(h manifests.Hash) (*blobView, error) {
	if fi, err := os.Stat(s.BlobPath(h)); err == nil && fi.Mode().IsRegular() {
		return &blobView{s: s, h: h, st: completeState(fi.Size()), complete: true}, nil
	}
	fi, err := os.Stat(s.partialPath(h) + ".state")
	if err != nil {
		return nil, errNotHeld
	}
	st, err := s.partialState(h)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// finished meanwhile: moved under its final name between the two looks
			return s.viewComplete(h)
		}
		return nil, fmt.Errorf("peer: partial %s: %w", h, err)
	}
	return &blobView{s: s, h: h, st: st, fresh: time.Since(fi.ModTime()) <= activeFetch}, nil
}

func (s *Store) viewComplete(h manifests.Hash) (*blobView, error) {
	fi, err := os.Stat(s.BlobPath(h))
	if err != nil || !fi.Mode().IsRegular() {
		return nil, errNotHeld
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

// held is what discovery announces: complete, or the verified bytes of a partial. A
// partial with nothing verified counts only while its fetch is at work (its state written
// within activeFetch), so devices that start together can follow it, and a stale one left
// by a failed fetch is not announced.
func (v *blobView) held() (complete bool, held int64, ok bool) {
	if v.complete {
		return true, v.st.Size, true
	}
	n := v.st.VerifiedBytes()
	return false, n, n > 0 || v.fresh
}

// open opens the blob's file for reading: the partial, or the final one if it finished
// meanwhile (the same bytes, renamed).
func (v *blobView) open() (*os.File, error) {
	if !v.complete {
		f, err := os.Open(v.s.partialPath(v.h))
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
	}
	return os.Open(v.s.BlobPath(v.h))
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
		if fi, serr := os.Stat(v.s.BlobPath(v.h)); serr == nil && fi.Mode().IsRegular() {
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
