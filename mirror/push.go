package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/drepo-dev/drepo/mirror/dav"

	"golang.org/x/time/rate"

	"github.com/drepo-dev/drepo/manifests"
)

// pusher brings one repository to the signed index doc.
type pusher struct {
	opt     SyncOptions
	repo    dav.Repository
	remote  dav.Remote
	plan    *blobPlan
	planFn  func() *blobPlan
	doc     []byte
	sig     []byte
	limiter *rate.Limiter
	res     *RepoResult

	noDigest   atomic.Bool // the server answered a digest request without one
	mu         sync.Mutex
	unverified map[manifests.Hash]int64  // uploaded blobs whose arrival still needs a size check
	staged     map[string]manifests.Hash // tmp/ name → blob uploaded while hashing (zero: not yet known)
	lease      *lease
	stopRenew  context.CancelFunc
}

// begin readies the repository for writing: base folder, lease (kept renewed), tmp/ cleared
// of what crashed syncs left. Idempotent.
func (p *pusher) begin(ctx context.Context) error {
	if p.lease != nil {
		return nil
	}
	if er, ok := p.remote.(interface{ EnsureRoot(context.Context) error }); ok {
		if err := er.EnsureRoot(ctx); err != nil {
			return err
		}
	}
	l, err := acquireLease(ctx, p.remote, p.opt.LeaseStale, p.opt.Log.With("repository", p.repo.Name))
	if err != nil {
		return err
	}
	p.lease = l
	lctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p.stopRenew = stop
	go l.keepRenewed(lctx, max(p.opt.LeaseStale/4, 1))
	p.clearTmp(ctx)
	return nil
}

// end removes staged uploads that were not used and releases the lease.
func (p *pusher) end(ctx context.Context) {
	if p.lease == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	p.mu.Lock()
	left := make([]string, 0, len(p.staged))
	for tmp := range p.staged {
		left = append(left, tmp)
	}
	p.staged = map[string]manifests.Hash{}
	p.mu.Unlock()
	for _, tmp := range left {
		_ = p.remote.Remove(ctx, tmp)
	}
	p.stopRenew()
	p.lease.release(ctx)
	p.lease = nil
}

// bytesToSend is the size of the missing blobs less those uploaded while hashing, which
// only need their MOVE.
func (p *pusher) bytesToSend(missing []manifests.Hash) int64 {
	staged := map[manifests.Hash]bool{}
	p.mu.Lock()
	for _, h := range p.staged {
		staged[h] = true
	}
	p.mu.Unlock()
	var total int64
	for _, h := range missing {
		if !staged[h] {
			total += p.plan.blobs[h].size
		}
	}
	return total
}

// takeStaged returns (and forgets) a tmp/ file holding blob h, if one was uploaded while hashing.
func (p *pusher) takeStaged(h manifests.Hash) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for tmp, sh := range p.staged {
		if sh == h {
			delete(p.staged, tmp)
			return tmp
		}
	}
	return ""
}

func (p *pusher) run(ctx context.Context, currentDoc []byte) error {
	log := p.opt.Log.With("repository", p.repo.Name)
	if bytes.Equal(currentDoc, p.doc) && !p.opt.Full {
		sig, err := dav.ReadDoc(ctx, p.remote, dav.SigName, manifests.MaxSignatureSize, p.opt.readOpts())
		if err != nil {
			return err
		}
		if bytes.Equal(sig, p.sig) {
			p.res.Status = StatusUpToDate
			return nil
		}
	}
	p.plan = p.planFn()
	if p.opt.DryRun {
		present, err := p.listBlobs(ctx)
		if err != nil {
			return err
		}
		for _, h := range p.missing(present) {
			p.res.Uploaded++
			p.res.UploadedBytes += p.plan.blobs[h].size
		}
		if p.opt.prunes() {
			p.res.Removed = len(p.unreferenced(present))
		}
		p.res.Status = StatusPlanned
		return nil
	}

	if err := p.begin(ctx); err != nil {
		return err
	}
	if err := p.removeDamaged(ctx); err != nil {
		return err
	}
	present, err := p.listBlobs(ctx)
	if err != nil {
		return err
	}
	missing := p.missing(present)
	total := p.bytesToSend(missing)
	log.Info("uploading", "blobs", len(missing), "of", len(p.plan.order), "bytes", total)
	if p.opt.Progress != nil {
		p.opt.Progress.Grow(total)
	}
	p.unverified = map[manifests.Hash]int64{}
	var uploaded atomic.Int64
	var upBytes, deltaBytes atomic.Int64
	err = eachParallel(ctx, p.opt.Transfers, len(missing), func(ctx context.Context, _, i int) error {
		if err := p.upload(ctx, missing[i]); err != nil {
			return err
		}
		uploaded.Add(1)
		upBytes.Add(p.plan.blobs[missing[i]].size)
		if p.plan.blobs[missing[i]].delta {
			deltaBytes.Add(p.plan.blobs[missing[i]].size)
		}
		return nil
	})
	p.res.Uploaded, p.res.UploadedBytes, p.res.UploadedDeltaBytes = int(uploaded.Load()), upBytes.Load(), deltaBytes.Load()
	if err != nil {
		return err
	}
	if err := p.checkUnverified(ctx); err != nil {
		return err
	}
	if err := p.lease.check(ctx); err != nil {
		return err
	}
	// Every blob the new index names is now present and checked. Commit: the signature
	// under the index's hash first, then the index (the commit point), each replaced by a
	// MOVE from tmp/ so readers see the old or the new file, never a partial one; last the
	// signature under its minisign name.
	if err := p.opt.Retry.Do(ctx, p.opt.Log, "put signature", func() error {
		return p.remote.Put(ctx, dav.SigPath(p.doc), bytes.NewReader(p.sig), int64(len(p.sig)))
	}); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		data []byte
	}{{dav.IndexName, p.doc}, {dav.SigName, p.sig}} {
		if err := p.replace(ctx, d.name, d.data); err != nil {
			return err
		}
	}
	p.res.Status = StatusUpdated
	if p.opt.prunes() {
		if err := p.lease.check(ctx); err != nil {
			return err
		}
		return p.prune(ctx, present)
	}
	return nil
}

// removeDamaged removes the blobs verify found with wrong bytes (SyncOptions.Damaged), under
// the lease, so the upload that follows replaces them; names that are not blob paths are
// refused.
func (p *pusher) removeDamaged(ctx context.Context) error {
	for _, name := range p.opt.Damaged[p.repo.Name] {
		if _, ok := parseBlobName(name); !ok {
			return fmt.Errorf("mirror: %q is not a blob path; not removed", name)
		}
		if err := p.remote.Remove(ctx, name); err != nil {
			return err
		}
		p.opt.Log.Info("removed a blob with wrong bytes", "repository", p.repo.Name, "blob", name)
	}
	return nil
}

// pruneSignatures removes signatures of indexes other than the current one.
func (p *pusher) pruneSignatures(ctx context.Context) error {
	ents, err := p.remote.List(ctx, dav.SigsDir)
	if err != nil {
		if errors.Is(err, dav.ErrNotFound) {
			return nil
		}
		return err
	}
	keep := dav.SigPath(p.doc)
	var errs []error
	for _, e := range ents {
		if e.Name != keep {
			if err := p.remote.Remove(ctx, e.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// missing lists the planned blobs the repository lacks or holds with the wrong size.
func (p *pusher) missing(present map[manifests.Hash]int64) []manifests.Hash {
	var out []manifests.Hash
	for _, h := range p.plan.order {
		if size, ok := present[h]; !ok || size != p.plan.blobs[h].size {
			if p.repo.DeltasOnly && p.rebuildable(h, present) {
				continue // its delta goes instead (it is in the plan too)
			}
			if file, ok := p.plan.packedOf[h]; ok && p.repo.DeltasOnly && p.rebuildable(file, present) {
				continue // the file is rebuilt from its delta: no packed form either
			}
			out = append(out, h)
		}
	}
	return out
}

// rebuildable reports whether a device can rebuild blob h from what the repository holds
// (present): a delta of it whose base is there whole. Chains stay one step long: a base is
// never itself left out for a delta, so every few versions a file goes whole.
func (p *pusher) rebuildable(h manifests.Hash, present map[manifests.Hash]int64) bool {
	for _, d := range p.plan.deltasOf[h] {
		if present[d.From] == d.FromSize {
			return true
		}
	}
	return false
}

// listBlobs maps every blob on the repository to its size.
func (p *pusher) listBlobs(ctx context.Context) (map[manifests.Hash]int64, error) {
	var present map[manifests.Hash]int64
	err := p.opt.Retry.Do(ctx, p.opt.Log, "list blobs", func() error {
		present = map[manifests.Hash]int64{}
		return dav.WalkAll(ctx, p.remote, dav.BlobsDir, func(fi dav.FileInfo) error {
			if h, ok := parseBlobName(fi.Name); ok {
				present[h] = fi.Size
			}
			return nil
		})
	})
	return present, err
}

// clearTmp removes what crashed syncs left in tmp/ (this sync holds the lease, so nothing
// in there is in use).
func (p *pusher) clearTmp(ctx context.Context) {
	ents, err := p.remote.List(ctx, dav.TmpDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if err := p.remote.Remove(ctx, e.Name); err != nil {
			p.opt.Log.Warn("could not remove a leftover temporary file", "repository", p.repo.Name, "name", e.Name, "err", err)
		}
	}
}

// upload puts one blob at its final name (nothing references it yet, and a wrong size is
// found and re-uploaded by the next sync) and checks that it arrived.
func (p *pusher) upload(ctx context.Context, h manifests.Hash) error {
	src := p.plan.blobs[h]
	name := manifests.BlobPath(h)
	if tmp := p.takeStaged(h); tmp != "" {
		err := p.remote.(dav.Mover).Move(ctx, tmp, name)
		if err == nil {
			if err = p.checkArrived(ctx, h, src.size); err == nil {
				p.mu.Lock()
				p.res.Staged++
				p.mu.Unlock()
				return nil
			}
		}
		p.opt.Log.Warn("moving a blob uploaded while hashing failed; uploading it again", "repository", p.repo.Name, "blob", name, "err", err)
		_ = p.remote.Remove(context.WithoutCancel(ctx), tmp)
	}
	return p.opt.Retry.Do(ctx, p.opt.Log, "upload "+name, func() error {
		var r io.Reader
		switch {
		case src.data != nil:
			r = bytes.NewReader(src.data)
		case src.from != nil:
			rc, err := src.from.Open(ctx, name, 0, src.size)
			if err != nil {
				return err
			}
			defer rc.Close()
			r = &hashingReader{r: rc, want: h, size: src.size, h: sha256.New()}
		default:
			if err := p.plan.checkSource(src); err != nil {
				return err
			}
			f, err := os.Open(src.path)
			if err != nil {
				return fmt.Errorf("mirror: %w", err)
			}
			defer f.Close()
			r = f
		}
		r = p.meter(ctx, r)
		if err := p.remote.Put(ctx, name, r, src.size); err != nil {
			return err
		}
		if src.path != "" {
			if err := p.plan.checkSource(src); err != nil {
				_ = p.remote.Remove(context.WithoutCancel(ctx), name)
				return err
			}
		}
		return p.checkArrived(ctx, h, src.size)
	})
}

// checkArrived asks the server for the blob's digest; if it offers none, the size is
// checked for all uploads at once afterwards (checkUnverified).
func (p *pusher) checkArrived(ctx context.Context, h manifests.Hash, size int64) error {
	d, ok := p.remote.(dav.Digester)
	if ok && !p.noDigest.Load() {
		sum, got, has, err := d.Digest(ctx, manifests.BlobPath(h))
		if err != nil {
			return err
		}
		if got != size {
			return fmt.Errorf("mirror: %s arrived with %d bytes, want %d: %w", manifests.BlobPath(h), got, size, errArrival)
		}
		if has {
			if sum != h {
				return fmt.Errorf("mirror: %s arrived with other bytes (server digest %s): %w", manifests.BlobPath(h), sum, errArrival)
			}
			return nil
		}
		p.noDigest.Store(true)
	}
	p.mu.Lock()
	p.unverified[h] = size
	p.mu.Unlock()
	return nil
}

// errArrival: the server holds something else than what was sent; worth a new upload.
var errArrival = &dav.StatusError{Method: "CHECK", Code: 502, Body: "upload arrived wrong"}

// checkUnverified lists the blobs once and checks the size of every upload not yet checked.
func (p *pusher) checkUnverified(ctx context.Context) error {
	if len(p.unverified) == 0 {
		return nil
	}
	present, err := p.listBlobs(ctx)
	if err != nil {
		return err
	}
	var bad []string
	for h, size := range p.unverified {
		if present[h] != size {
			bad = append(bad, manifests.BlobPath(h))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("mirror: %d uploads did not arrive with the right size (first: %s); the index was not replaced", len(bad), bad[0])
	}
	return nil
}

// replace writes a small document beside name in tmp/ and moves it over name.
func (p *pusher) replace(ctx context.Context, name string, data []byte) error {
	mv, ok := p.remote.(dav.Mover)
	if !ok {
		return errors.New("mirror: the repository cannot MOVE; the index cannot be replaced atomically")
	}
	return p.opt.Retry.Do(ctx, p.opt.Log, "replace "+name, func() error {
		tmp := dav.TmpName(name)
		if err := p.remote.Put(ctx, tmp, bytes.NewReader(data), int64(len(data))); err != nil {
			return err
		}
		if err := mv.Move(ctx, tmp, name); err != nil {
			_ = p.remote.Remove(context.WithoutCancel(ctx), tmp)
			return err
		}
		return nil
	})
}

// prune removes blobs the new index does not reference (after the index was replaced).
func (p *pusher) prune(ctx context.Context, present map[manifests.Hash]int64) error {
	var errs []error
	for _, h := range p.unreferenced(present) {
		if err := p.remote.Remove(ctx, manifests.BlobPath(h)); err != nil {
			errs = append(errs, err)
			continue
		}
		p.res.Removed++
	}
	if err := p.pruneSignatures(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// unreferenced lists the present blobs the new index does not name: what prune removes.
func (p *pusher) unreferenced(present map[manifests.Hash]int64) []manifests.Hash {
	bases := map[manifests.Hash]bool{} // what a file left out for its delta is rebuilt from
	if p.repo.DeltasOnly {
		for h, ds := range p.plan.deltasOf {
			if _, ok := present[h]; !ok {
				for _, d := range ds {
					bases[d.From] = true
				}
			}
		}
	}
	var out []manifests.Hash
	for h := range present {
		if _, keep := p.plan.blobs[h]; !keep && !bases[h] {
			out = append(out, h)
		}
	}
	return out
}

// meter counts upload progress and applies the bandwidth limit.
func (p *pusher) meter(ctx context.Context, r io.Reader) io.Reader {
	r = p.limit(ctx, r)
	if p.opt.Progress == nil {
		return r
	}
	return &progressReader{r: r, p: p.opt.Progress}
}

// limit applies the bandwidth limit only (dav.Throttle).
func (p *pusher) limit(ctx context.Context, r io.Reader) io.Reader {
	if p.limiter == nil {
		return r
	}
	return dav.Throttle(ctx, r, p.limiter)
}

// progressReader tells p of the bytes read.
type progressReader struct {
	r io.Reader
	p Progress
}

func (m *progressReader) Read(b []byte) (int, error) {
	n, err := m.r.Read(b)
	if n > 0 {
		m.p.Add(n)
	}
	return n, err
}

// hashingReader passes a blob read from another repository on to an upload and fails the
// upload (instead of ending it) when the bytes do not hash to the blob's name or run short:
// a promote copies only bytes it checked.
type hashingReader struct {
	r    io.Reader
	want manifests.Hash
	size int64
	n    int64
	h    hash.Hash
}

func (r *hashingReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.h.Write(b[:n])
	r.n += int64(n)
	if errors.Is(err, io.EOF) && (r.n != r.size || manifests.Hash(r.h.Sum(nil)) != r.want) {
		return n, fmt.Errorf("mirror: %s from the staging repository: %d bytes that do not hash to its name: %w", manifests.BlobPath(r.want), r.n, dav.ErrCorrupt)
	}
	return n, err
}
