package peer

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror/dav"
)

// chunkLoc is where the store already holds a chunk: in a complete blob.
type chunkLoc struct {
	path   string
	off, n int64
}

// chunkIndex maps every chunk hash of every complete blob the stored manifests name to
// where it is, so an update copies the chunks it shares with installed versions instead of
// downloading them.
func chunkIndex(s *Store) (map[manifests.Hash]chunkLoc, error) {
	hs, err := s.Manifests()
	if err != nil {
		return nil, err
	}
	out := map[manifests.Hash]chunkLoc{}
	for _, h := range hs {
		m, _, err := s.Manifest(h)
		if err != nil {
			continue
		}
		for _, fl := range m.Files {
			if !s.HasBlob(fl.SHA256, fl.Size) {
				continue
			}
			for i, c := range fl.Chunks {
				off := int64(i) * m.ChunkSize
				out[c] = chunkLoc{path: s.BlobPath(fl.SHA256), off: off, n: min(m.ChunkSize, fl.Size-off)}
			}
		}
	}
	return out, nil
}

// copyBuf is the size of one read or write when a chunk is copied from another blob.
const copyBuf = 1 << 20

// blob makes the store hold file's blob: already there, or resumed from its verified chunks,
// chunks found elsewhere in the store copied, the rest downloaded, then the whole file
// checked and moved under its name.
func (f *fetcher) blob(ctx context.Context, fl manifests.File, chunkSize int64, delta bool) error {
	s := f.opt.Store
	held := s.HasBlob(fl.SHA256, fl.Size)
	if !held {
		// a blob whose file is not the one verified (altered, or from an older store) is
		// hashed again: kept if it still matches, removed and fetched again if not
		var err error
		if held, err = s.recheck(fl.SHA256, fl.Size); err != nil {
			return err
		}
	}
	if held {
		if !delta {
			f.rep.AlreadyHeld += fl.Size
		}
		return nil
	}
	if fl.Size == 0 {
		if fl.SHA256 != manifests.SumBytes(nil) {
			return fmt.Errorf("peer: %s: an empty file named %s: %w", fl.Path, fl.SHA256, ErrBadManifest)
		}
		if err := manifests.WriteFileAtomic(s.BlobPath(fl.SHA256), nil, blobMode); err != nil {
			return err
		}
		return s.markVerified(fl.SHA256)
	}
	p, err := s.OpenPartial(fl.SHA256, fl.Size, chunkSize)
	if err != nil {
		return err
	}
	finished := false
	defer func() {
		if !finished {
			if err := p.Close(); err != nil {
				f.log.Warn("could not record the verified chunks", "blob", fl.SHA256, "err", err)
			}
		}
	}()
	st := p.State()
	if !delta {
		f.rep.AlreadyHeld += st.VerifiedBytes()
	}
	f.progress(st.VerifiedBytes(), delta)
	n := st.Chunks()
	// chunks held elsewhere in the store: copied, and checked like any other
	for i := range n {
		if st.Has(i) {
			continue
		}
		loc, ok := f.chunks[fl.Chunks[i]]
		if !ok {
			continue
		}
		off, l := st.ChunkRange(i)
		if loc.n != l {
			continue
		}
		if err := copyLocal(p, loc, off, fl.Chunks[i]); err != nil {
			f.log.Warn("a chunk held in the store did not copy; downloading it", "chunk", fl.Chunks[i], "err", err)
			continue
		}
		if err := p.Verified(i); err != nil {
			return err
		}
		if !delta {
			f.rep.ReusedLocal += l
		}
		f.progress(l, delta)
	}
	if len(fl.Deltas) > 0 && !p.State().Complete() {
		if err := f.applyDeltas(ctx, p, fl, chunkSize); err != nil {
			return err
		}
	}
	bw := &blobWant{p: p, delta: delta}
	stuck, triedBase := 0, false
	for i := 0; i < n; {
		st = p.State()
		if st.Has(i) {
			i++
			continue
		}
		j := i
		for j < n && !st.Has(j) {
			j++
		}
		before := st.Count()
		if err := f.run(ctx, bw, fl, i, j); err != nil {
			// a repository that holds a delta and its base instead of the file (deltas_only):
			// the base comes whole, then the delta rebuilds the file
			if !triedBase && len(fl.Deltas) > 0 && errors.Is(err, ErrNoSource) {
				triedBase = true
				if f.baseThenDelta(ctx, p, fl, chunkSize) == nil {
					continue
				}
			}
			return err
		}
		// the run's helper may have left part of the range missing (its source failed):
		// look at the range again rather than step over it
		if p.State().Count() == before {
			if stuck++; stuck == 3 {
				return fmt.Errorf("peer: %s (blob %s): chunks %d..%d stay missing: %w", fl.Path, fl.SHA256, i, j-1, ErrNoSource)
			}
		} else {
			stuck = 0
		}
	}
	finished = true
	return p.Finish()
}

// copyLocal copies a chunk held in another blob into the partial blob at off, checking
// that it still hashes to want.
func copyLocal(p *Partial, loc chunkLoc, off int64, want manifests.Hash) error {
	src, err := openNoFollow(loc.path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer src.Close()
	h := sha256.New()
	w := io.NewOffsetWriter(p.f, off)
	if _, err := io.CopyBuffer(io.MultiWriter(w, h), io.NewSectionReader(src, loc.off, loc.n), make([]byte, copyBuf)); err != nil {
		return err
	}
	if manifests.Hash(h.Sum(nil)) != want {
		return fmt.Errorf("peer: %s: %w", loc.path, dav.ErrCorrupt)
	}
	return nil
}

// run downloads chunks [a, b) of fl, trying the sources in order from where the last one
// stopped; a chunk is marked only once it hashed to the manifest's chunk hash. Beside it,
// a helper (help) may take the tail of the range from a complete peer with a free slot, so
// one blob comes from two sources at once; run returns when both are done.
func (f *fetcher) run(ctx context.Context, bw *blobWant, fl manifests.File, a, b int) error {
	q := Query{Kind: KindBlob, Blob: fl.SHA256}
	lim := newRunLimit(a, b)
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	var helper sync.WaitGroup
	if g := f.lanGroup(); g != nil && b-a >= helpMinChunks {
		helper.Add(1)
		go func() { defer helper.Done(); f.help(hctx, g, bw, q, fl, lim) }()
	}
	err := f.each(ctx, q, fmt.Sprintf("%s (blob %s)", fl.Path, fl.SHA256), bw, func(s Source) error {
		err := f.tryRun(ctx, s, bw, q, fl, &a, lim, true)
		if err != nil && !errors.Is(err, errLeft) {
			f.sourceFailed(s, fl.Path, err)
		}
		return err
	})
	if err != nil {
		hcancel()
	}
	lim.done()
	helper.Wait() // its chunks are written or left missing for the next round
	return err
}

// tryRun reads chunks *a up to lim's end from one source with one ranged GET through the
// download pipeline (pipeline.go), and leaves *a at the first chunk of them not verified.
// lim's end may be lowered meanwhile (a helper took the tail); the transfer then stops at
// it. With watch, watchLeave ends the transfer when the policy finds a much faster peer.
func (f *fetcher) tryRun(ctx context.Context, s Source, bw *blobWant, q Query, fl manifests.File, a *int, lim *runLimit, watch bool) (err error) {
	p := bw.p
	st := p.State()
	b := lim.end()
	start, _ := st.ChunkRange(*a)
	lastOff, lastN := st.ChunkRange(b - 1)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	began := time.Now()
	var got atomic.Int64 // bytes of verified chunks this transfer delivered
	if g := f.lanGroup(); g != nil && s.Kind == KindPeer {
		// from before the request: a peer that never answers is cut by the budget too
		gctx, gstop := context.WithCancel(ctx)
		var w sync.WaitGroup
		w.Add(1)
		go func() { defer w.Done(); f.guard(gctx, g.policy(), s, began, got.Load, cancel) }()
		defer func() { gstop(); w.Wait() }()
	}
	// from a repository (the WAN), the packed chunks where the manifest lists them
	packed := fl.Packed
	if s.Kind != KindRepository || st.ChunkSize > maxPackedChunk || f.packedFailed(s) {
		packed = nil
	}
	name, length := s.BlobName(fl.SHA256), lastOff+lastN-start
	if packed != nil {
		name, start, length = s.BlobName(packed.Blob), packed.Offset(*a), packed.Offset(b)-packed.Offset(*a)
	}
	rc, err := s.Reader.Open(ctx, name, start, length)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errFloor) {
			return cause
		}
		return err
	}
	defer rc.Close()
	body := f.throttled(ctx, s, rc)
	var unpack *unpacker
	if packed != nil {
		if unpack, err = newUnpacker(body, packed, st.ChunkSize); err != nil {
			return err
		}
		defer unpack.close()
		defer func() { f.addPacked(unpack.read) }()
	}
	rep := f.report(s)
	lim.source.Store(s.instance)
	f.log.Debug("transfer", "source", s.Name, "blob", fl.SHA256, "from_chunk", *a, "to_chunk", b)
	defer func() {
		f.log.Debug("transfer ended", "source", s.Name, "verified_bytes", got.Load(), "seconds", time.Since(began).Seconds(), "err", err)
	}()
	if g := f.lanGroup(); g != nil && watch {
		wctx, wstop := context.WithCancel(ctx)
		var w sync.WaitGroup
		w.Add(1)
		go func() { defer w.Done(); f.watchLeave(wctx, g, s, q, bw, began, got.Load, cancel) }()
		defer func() { wstop(); w.Wait() }()
	}
	pl := newPipeline(p, fl.Chunks, func(err error) { cancel(err) }, func(n int64) {
		got.Add(n)
		lim.got.Add(n)
		f.count(rep, n, bw.delta)
		f.progress(n, bw.delta)
	})
	defer func() {
		perr := pl.close()
		if perr != nil {
			err = perr // a wrong chunk or a failed write says more than the read it cut
		}
		if cause := context.Cause(ctx); (errors.Is(cause, errLeft) || errors.Is(cause, errFloor)) && !errors.Is(err, dav.ErrCorrupt) {
			err = cause
		}
		for end := lim.end(); *a < end && p.has(*a); {
			*a++
		}
		if d := time.Since(began); d >= time.Second {
			f.lan.rate(s.instance, float64(got.Load())/d.Seconds())
		}
	}()
	for i := *a; lim.take(i); i++ {
		off, n := st.ChunkRange(i)
		src := body
		if unpack != nil {
			if src, err = unpack.chunk(i, n); err != nil {
				f.markPackedFailed(s)
				return err
			}
		}
		for done := int64(0); done < n; {
			buf := pl.buffer(ctx)
			if buf == nil {
				return context.Cause(ctx)
			}
			buf = buf[:min(int64(len(buf)), n-done)]
			k, err := io.ReadFull(src, buf)
			if err != nil {
				pl.release(buf)
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					return fmt.Errorf("body ended after %d of chunk %d's %d bytes: %w", done+int64(k), i, n, io.ErrUnexpectedEOF)
				}
				return err
			}
			pc := &piece{buf: buf, off: off + done, chunk: i, start: done == 0}
			done += int64(k)
			pc.end = done == n
			pl.send(pc)
		}
	}
	return nil
}

// errFloor ends a transfer from a peer that ran below Policy.Floor, or that delivered
// nothing while the fetch's budget for such peers ran out: not a failure of the peer,
// which is asked again later (known slow: last).
var errFloor = errors.New("a peer delivered below the floor")

// guard runs beside a transfer from the peer s, once a second: it cuts the transfer
// (errFloor) when its verified rate over the last Policy.FloorWindow falls below
// Policy.Floor, or when it has delivered nothing yet and the time it took would spend
// the fetch's budget for peers that never delivered (unless s delivered before). So a
// dripping or hanging peer costs seconds, and wrong bytes show within a chunk.
func (f *fetcher) guard(ctx context.Context, pol Policy, s Source, began time.Time, got func() int64, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	marks := []Mark{{At: began}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now, n := time.Now(), got()
		marks = append(marks, Mark{At: now, Bytes: n})
		for len(marks) > 1 && now.Sub(marks[1].At) >= pol.FloorWindow {
			marks = marks[1:]
		}
		need := f.need()
		need.Wasted += now.Sub(began)
		switch {
		case pol.BelowFloor(now, marks[0], n):
			rate := float64(n-marks[0].Bytes) / now.Sub(marks[0].At).Seconds()
			f.lan.rate(s.instance, max(rate, 1)) // known slow: ranked last
			cancel(fmt.Errorf("%w: %s delivered %d B/s (floor %d B/s)", errFloor, s.Name, int64(rate), int64(pol.Floor)))
			return
		case n == 0 && pol.Spent(need) && !f.lan.isProven(s):
			cancel(fmt.Errorf("%w: %s delivered nothing in %s, and peers that never delivered had their time", errFloor, s.Name, now.Sub(began).Round(time.Second)))
			return
		}
	}
}

// throttled is a body read from s under the fetch's limit for its kind of source
// (FetchOptions.RepoLimit, PeerLimit).
func (f *fetcher) throttled(ctx context.Context, s Source, r io.Reader) io.Reader {
	if s.Kind == KindPeer {
		return dav.Throttle(ctx, r, f.opt.PeerLimit)
	}
	return dav.Throttle(ctx, r, f.opt.RepoLimit)
}
