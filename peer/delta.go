package peer

import (
	"bytes"
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

// Deltas on the device. A file the manifest lists deltas for, whose base blob the store
// holds complete and intact, is rebuilt from the base and the delta: the delta blob is
// fetched like a file (chunk by chunk against the manifest's hashes, from peers or
// repositories, shared with the LAN while it downloads, and kept in the store), then
// applied chunk by chunk into the partial blob, each chunk checked against the manifest's chunk hash and recorded
// as verified, so a kill resumes. A delta that fails in any way leaves the chunks it did
// not rebuild missing: the download fills them as it would have without it.

// applyDeltas rebuilds what it can of fl in p from a delta whose base the store holds. It
// reports what it did; its failures are logged, not returned, except the device's own
// storage failing and the fetch being stopped.
func (f *fetcher) applyDeltas(ctx context.Context, p *Partial, fl manifests.File, chunkSize int64) error {
	s := f.opt.Store
	for _, d := range fl.Deltas {
		if p.State().Complete() {
			return nil
		}
		if !s.HasBlob(d.From, d.FromSize) {
			continue
		}
		if err := f.fetchDelta(ctx, fl, d, chunkSize); err != nil {
			if localErr(err) || ctx.Err() != nil {
				return err
			}
			f.log.Warn("the delta could not be fetched; downloading the chunks", "file", fl.Path, "err", err)
			continue
		}
		n, err := f.rebuild(p, fl, d, chunkSize)
		f.mu.Lock()
		f.rep.RebuiltFromDelta += n
		f.mu.Unlock()
		f.progress(n, false)
		if err != nil {
			if localErr(err) {
				return err
			}
			f.log.Warn("the delta did not apply; downloading the chunks it did not rebuild", "file", fl.Path, "delta", d.Blob, "err", err)
			continue
		}
		f.log.Debug("rebuilt from a delta", "file", fl.Path, "bytes", n, "delta_bytes", d.Size)
	}
	return nil
}

// baseThenDelta fetches the base of one of fl's deltas whole (a blob of an earlier
// version, verified against its name) and applies the deltas: how a device without the
// base gets a file a repository holds only as base and delta.
func (f *fetcher) baseThenDelta(ctx context.Context, p *Partial, fl manifests.File, chunkSize int64) error {
	var last error
	for _, d := range fl.Deltas {
		if err := f.fetchWhole(ctx, d.From, d.FromSize, "base of "+fl.Path); err != nil {
			last = err
			continue
		}
		return f.applyDeltas(ctx, p, fl, chunkSize)
	}
	return last
}

// rebuild applies the delta d (in the store) to its base into p; it returns the bytes of
// the chunks it verified.
func (f *fetcher) rebuild(p *Partial, fl manifests.File, d manifests.Delta, chunkSize int64) (int64, error) {
	s := f.opt.Store
	base, err := openNoFollow(s.BlobPath(d.From), os.O_RDONLY, 0)
	if err != nil {
		return 0, err
	}
	defer base.Close()
	delta, err := openNoFollow(s.BlobPath(d.Blob), os.O_RDONLY, 0)
	if err != nil {
		return 0, err
	}
	defer delta.Close()
	dr, err := manifests.NewDeltaReader(delta, base, d.FromSize, fl.Size, chunkSize)
	if err != nil {
		return 0, err
	}
	defer dr.Close()
	var done int64
	for {
		i, c, err := dr.Next()
		if errors.Is(err, io.EOF) {
			return done, nil
		}
		if err != nil {
			return done, err
		}
		if p.has(i) {
			continue
		}
		if manifests.SumBytes(c) != fl.Chunks[i] {
			return done, fmt.Errorf("%w: chunk %d does not match the manifest", manifests.ErrBadDelta, i)
		}
		off := int64(i) * chunkSize
		if _, err := p.WriteAt(c, off); err != nil {
			return done, err
		}
		if err := p.Verified(i); err != nil {
			return done, err
		}
		done += int64(len(c))
	}
}

// fetchDelta brings the delta d of fl into the store like a file of its own, chunk by chunk
// against the manifest's hashes: from several sources at once, and from a peer while the
// peer is still downloading it, so a LAN updating at once takes the delta from the WAN
// about once. Its bytes count as delta bytes.
func (f *fetcher) fetchDelta(ctx context.Context, fl manifests.File, d manifests.Delta, chunkSize int64) error {
	return f.blob(ctx, manifests.File{Path: fl.Path + " (delta)", Size: d.Size, SHA256: d.Blob, Chunks: d.Chunks}, chunkSize, true)
}

// fetchWhole brings blob h (size bytes) into the store whole, from the sources in order,
// verified against its name as it streams to disk; a blob the store holds is not fetched.
func (f *fetcher) fetchWhole(ctx context.Context, h manifests.Hash, size int64, what string) error {
	s := f.opt.Store
	if s.HasBlob(h, size) {
		return nil
	}
	return f.each(ctx, Query{Kind: KindBlob, Blob: h}, what, nil, func(src Source) error {
		err := f.fetchWholeFrom(ctx, src, h, size)
		if err != nil {
			f.sourceFailed(src, what, err)
		}
		return err
	})
}

func (f *fetcher) fetchWholeFrom(ctx context.Context, src Source, h manifests.Hash, size int64) (err error) {
	s := f.opt.Store
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var got atomic.Int64 // bytes received (the whole is verified at its end)
	if g := f.lanGroup(); g != nil && src.Kind == KindPeer {
		// a peer that drips or never answers is cut as in a transfer of chunks
		gctx, gstop := context.WithCancel(ctx)
		var w sync.WaitGroup
		w.Add(1)
		go func() { defer w.Done(); f.guard(gctx, g.policy(), src, time.Now(), got.Load, cancel) }()
		defer func() { gstop(); w.Wait() }()
		defer func() {
			if cause := context.Cause(ctx); errors.Is(cause, errFloor) {
				err = cause
			}
		}()
	}
	rc, err := src.Reader.Open(ctx, src.BlobName(h), 0, size)
	if err != nil {
		return err
	}
	defer rc.Close()
	body := io.TeeReader(f.throttled(ctx, src, rc), countTo(&got))
	out, err := manifests.CreateAtomic(s.BlobPath(h), blobMode)
	if err != nil {
		return asLocal(err)
	}
	defer out.Abort()
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, sum), io.LimitReader(body, size))
	if err != nil {
		if localErr(err) {
			return asLocal(err)
		}
		return err
	}
	if n != size {
		return fmt.Errorf("%s: %d of %d bytes: %w", h, n, size, io.ErrUnexpectedEOF)
	}
	if manifests.Hash(sum.Sum(nil)) != h {
		return fmt.Errorf("%s: %w", h, dav.ErrCorrupt)
	}
	if err := out.Commit(); err != nil {
		return asLocal(err)
	}
	f.mu.Lock()
	f.reportLocked(src).Bytes += size
	f.rep.Downloaded += size
	f.mu.Unlock()
	return s.markVerified(h)
}

// countTo is a writer that adds what passes to n.
func countTo(n *atomic.Int64) io.Writer { return byteCounter{n} }

type byteCounter struct{ n *atomic.Int64 }

func (c byteCounter) Write(b []byte) (int, error) { c.n.Add(int64(len(b))); return len(b), nil }

// maxPackedChunk: packed chunks are read only where a chunk is at most this big (a chunk is
// decompressed whole in memory).
const maxPackedChunk = 4 << 20

// unpacker reads a run of a packed blob's frames and hands out each chunk decompressed.
type unpacker struct {
	r      io.Reader
	packed *manifests.Packed
	u      *manifests.Unpacker
	frame  []byte
	out    []byte
	read   int64 // packed bytes read
}

func newUnpacker(r io.Reader, packed *manifests.Packed, chunkSize int64) (*unpacker, error) {
	u, err := manifests.NewUnpacker(chunkSize)
	if err != nil {
		return nil, err
	}
	return &unpacker{r: r, packed: packed, u: u, out: make([]byte, chunkSize)}, nil
}

// chunk reads chunk i's frame and returns its n bytes, decompressed (unverified: the
// pipeline checks them against the manifest like any chunk).
func (u *unpacker) chunk(i int, n int64) (io.Reader, error) {
	size := u.packed.Frames[i]
	if int64(cap(u.frame)) < size {
		u.frame = make([]byte, size)
	}
	frame := u.frame[:size]
	if k, err := io.ReadFull(u.r, frame); err != nil {
		u.read += int64(k)
		return nil, fmt.Errorf("packed chunk %d: %w", i, io.ErrUnexpectedEOF)
	}
	u.read += size
	c, err := u.u.Chunk(u.out, frame, int(n))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, errPacked)
	}
	return bytes.NewReader(c), nil
}

func (u *unpacker) close() { u.u.Close() }

// addPacked counts packed bytes read from a repository.
func (f *fetcher) addPacked(n int64) {
	f.mu.Lock()
	f.rep.PackedBytes += n
	f.mu.Unlock()
}

// errPacked: a packed chunk from a source did not decompress; the source is read raw
// from then on (a busy answer, not wrong bytes: the raw file is still there to verify).
var errPacked = errors.New("a packed chunk did not decompress; reading the file itself")

// packedFailed reports whether s's packed chunks failed in this run.
func (f *fetcher) packedFailed(s Source) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.noPacked[s.id()]
}

// markPackedFailed records that s's packed chunks failed: it is read raw from now on.
func (f *fetcher) markPackedFailed(s Source) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noPacked == nil {
		f.noPacked = map[string]bool{}
	}
	f.noPacked[s.id()] = true
}
