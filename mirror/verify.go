package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/drepo-dev/drepo/mirror/dav"

	"aead.dev/minisign"
	"golang.org/x/sync/errgroup"

	"github.com/drepo-dev/drepo/manifests"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	Keys []minisign.PublicKey // trusted keys; at least one
	// Deep also checks every blob's bytes by downloading and hashing them.
	Deep bool
	// ServerDigest, with Deep, takes the server's Repr-Digest instead of downloading where
	// it sends one: cheap, but as fresh as the server's digest cache (drepo serve keeps one
	// per file, valid while size and mtime are unchanged, so bit rot slips past it).
	ServerDigest bool
	Parallel     int // blobs checked at once with Deep; default 4
	Retry        dav.Retry
	Log          *slog.Logger
}

// VerifyReport is one repository's verdict. OK is false when anything the index references
// is missing, the wrong size or the wrong bytes, or the index itself is bad; Error is set
// when the repository could not be checked at all.
type VerifyReport struct {
	Repository   string    `json:"repository"`
	URL          string    `json:"url"`
	Priority     int       `json:"priority"`
	OK           bool      `json:"ok"`
	Error        string    `json:"error,omitempty"`
	Serial       uint64    `json:"serial,omitempty"`
	Versions     int       `json:"versions"`
	Blobs        int       `json:"blobs"`
	Bytes        int64     `json:"bytes"`
	Deep         string    `json:"deep,omitempty"` // how bytes were checked: "server digest", "download", or a mix
	Problems     []Problem `json:"problems"`
	Unreferenced []string  `json:"unreferenced"`
	Leftovers    []string  `json:"leftovers"`
}

// Problem is one thing wrong in a repository.
type Problem struct {
	Kind   string `json:"kind"` // index, signature, manifest, missing, size, content
	Name   string `json:"name"` // the file in the repository
	Detail string `json:"detail"`
}

// expectBlob is a blob the index references, with where it is used (for messages).
type expectBlob struct {
	size   int64
	where  string
	deltas []manifests.Delta // a file's deltas (a DeltasOnly repository may hold one instead)
}

// Verify checks one repository against its own signed index.
func Verify(ctx context.Context, repo dav.Repository, r dav.Remote, opt VerifyOptions) *VerifyReport {
	if opt.Parallel <= 0 {
		opt.Parallel = 4
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	rep := &VerifyReport{Repository: repo.Name, URL: repo.URL, Priority: repo.Priority, Problems: []Problem{}, Unreferenced: []string{}, Leftovers: []string{}}
	bad := func(kind, name, format string, a ...any) {
		rep.Problems = append(rep.Problems, Problem{Kind: kind, Name: name, Detail: fmt.Sprintf(format, a...)})
	}
	so := dav.ReadOptions{Retry: opt.Retry, Log: opt.Log}.WithDefaults()
	doc, err := dav.ReadDoc(ctx, r, dav.IndexName, manifests.MaxIndexSize, so)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	if doc == nil {
		bad("index", dav.IndexName, "no index in the repository")
		return rep
	}
	sig, err := dav.ReadSig(ctx, r, doc, so)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	if sig == nil {
		bad("signature", dav.SigName, "no signature beside the index")
		return rep
	}
	idx, err := manifests.VerifyIndex(opt.Keys, doc, sig)
	if err != nil {
		kind := "index"
		if errors.Is(err, manifests.ErrBadSignature) {
			kind = "signature"
		}
		bad(kind, dav.IndexName, "%v", err)
		return rep
	}
	rep.Serial, rep.Versions = idx.Serial, len(idx.Apps)
	if idx.Expired(time.Now()) {
		bad("index", dav.IndexName, "expired at %s: devices will refuse it; run sync", idx.Expires.Format(time.RFC3339))
	}

	// The listing (presence, sizes, unreferenced blobs, leftovers) needs nothing from the
	// manifests, so it runs from here, beside the manifest reads and the byte check: on a
	// server without digests that check is one GET per blob, and waiting for the listing
	// first would add its whole time to the run.
	vctx, cancel := context.WithCancel(ctx)
	var present map[manifests.Hash]int64
	var leftovers []string
	var listErr error
	listed := make(chan struct{})
	go func() {
		defer close(listed)
		present, leftovers, listErr = listBlobs(vctx, r, so)
		if listErr != nil {
			cancel()
		}
	}()
	defer func() { cancel(); <-listed }()
	fail := func(err error) *VerifyReport {
		cancel()
		<-listed
		if listErr != nil && !errors.Is(listErr, context.Canceled) {
			err = listErr
		}
		rep.Error = err.Error()
		return rep
	}

	expect, err := expectedBlobs(vctx, r, idx, opt.Parallel, so, bad)
	if err != nil {
		return fail(err)
	}
	rep.Blobs = len(expect)
	for _, x := range expect {
		rep.Bytes += x.size
	}

	var sums map[manifests.Hash]manifests.Hash
	if opt.Deep {
		blobs := slices.SortedFunc(maps.Keys(expect), func(a, b manifests.Hash) int { return bytes.Compare(a[:], b[:]) })
		if sums, rep.Deep, err = checkBytes(vctx, r, blobs, opt); err != nil {
			return fail(err)
		}
	}
	<-listed
	if listErr != nil {
		return fail(listErr)
	}
	rep.Leftovers = leftovers
	// a DeltasOnly repository holds a delta and its base in place of a file
	bases := map[manifests.Hash]bool{}
	for h, x := range expect {
		if _, ok := present[h]; !ok && repo.DeltasOnly {
			for _, d := range x.deltas {
				if present[d.From] == d.FromSize && present[d.Blob] == d.Size {
					bases[d.From] = true
					x.size = -1
					expect[h] = x
					break
				}
			}
		}
	}
	for h := range present {
		if _, ref := expect[h]; !ref && !bases[h] {
			rep.Unreferenced = append(rep.Unreferenced, manifests.BlobPath(h))
		}
	}
	for h, x := range expect {
		size, ok := present[h]
		sum, checked := sums[h]
		switch {
		case x.size < 0: // rebuilt from its delta and base, both there
		case !ok || opt.Deep && !checked:
			bad("missing", manifests.BlobPath(h), "missing (%s)", x.where)
		case size != x.size:
			bad("size", manifests.BlobPath(h), "%d bytes, want %d (%s)", size, x.size, x.where)
		case opt.Deep && sum != h:
			bad("content", manifests.BlobPath(h), "bytes do not match the name (sha256 %s; %s)", sum, x.where)
		}
	}
	slices.SortFunc(rep.Problems, func(a, b Problem) int { return strings.Compare(a.Name, b.Name) })
	slices.Sort(rep.Unreferenced)
	slices.Sort(rep.Leftovers)
	rep.OK = len(rep.Problems) == 0
	return rep
}

// expectedBlobs reads the index's manifests, several at once, and returns every blob the
// index references (the manifests included) with its size and where it is used. A manifest
// that is missing, too large, damaged or invalid is left for the caller's presence and size
// checks, or reported through bad.
func expectedBlobs(ctx context.Context, r dav.Remote, idx *manifests.Index, parallel int, so dav.ReadOptions, bad func(kind, name, format string, a ...any)) (map[manifests.Hash]expectBlob, error) {
	expect := map[manifests.Hash]expectBlob{}
	mdocs := make([][]byte, len(idx.Apps))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for i, e := range idx.Apps {
		g.Go(func() error {
			b, err := dav.ReadDoc(gctx, r, manifests.BlobPath(e.Manifest), int(e.ManifestSize), so)
			if err != nil && !errors.Is(err, manifests.ErrTooLarge) {
				return err
			}
			mdocs[i] = b
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for i, e := range idx.Apps {
		where := e.App + "@" + e.Version
		expect[e.Manifest] = expectBlob{size: e.ManifestSize, where: where + " manifest"}
		mdoc := mdocs[i]
		switch {
		case mdoc == nil:
			continue // missing or too large: reported as missing or size below
		case manifests.SumBytes(mdoc) != e.Manifest:
			bad("content", manifests.BlobPath(e.Manifest), "manifest of %s does not match its hash", where)
			continue
		}
		m, err := manifests.DecodeManifest(mdoc)
		if err != nil {
			bad("manifest", manifests.BlobPath(e.Manifest), "manifest of %s: %v", where, err)
			continue
		}
		for _, f := range m.Files {
			if _, seen := expect[f.SHA256]; !seen {
				expect[f.SHA256] = expectBlob{size: f.Size, where: where + " " + f.Path, deltas: f.Deltas}
			}
			for _, d := range f.Deltas {
				if _, seen := expect[d.Blob]; !seen {
					expect[d.Blob] = expectBlob{size: d.Size, where: where + " " + f.Path + " (delta)"}
				}
			}
			if f.Packed != nil {
				if _, seen := expect[f.Packed.Blob]; !seen {
					expect[f.Packed.Blob] = expectBlob{size: f.Packed.Size(), where: where + " " + f.Path + " (packed)"}
				}
			}
		}
	}
	return expect, nil
}

// listBlobs lists the repository: the size of every blob, and the leftover temporary files.
func listBlobs(ctx context.Context, r dav.Remote, so dav.ReadOptions) (map[manifests.Hash]int64, []string, error) {
	present := map[manifests.Hash]int64{}
	leftovers := []string{}
	err := so.Retry.Do(ctx, so.Log, "list", func() error {
		clear(present)
		leftovers = leftovers[:0]
		return dav.WalkAll(ctx, r, "", func(fi dav.FileInfo) error {
			if h, ok := parseBlobName(fi.Name); ok {
				present[h] = fi.Size
			} else if strings.HasPrefix(fi.Name, dav.TmpDir+"/") {
				leftovers = append(leftovers, fi.Name)
			}
			return nil
		})
	})
	return present, leftovers, err
}

// checkBytes learns each blob's SHA-256: from the server's Repr-Digest where it sends one,
// else by downloading and hashing. A blob the server does not have is left out of the map.
// opt.Parallel workers share the list; each keeps one buffer and one hasher, so 10,000
// small blobs cost 10,000 requests and next to no allocation. It also says how the bytes
// were checked, for the report.
func checkBytes(ctx context.Context, r dav.Remote, blobs []manifests.Hash, opt VerifyOptions) (map[manifests.Hash]manifests.Hash, string, error) {
	d, canDigest := r.(dav.Digester)
	canDigest = canDigest && opt.ServerDigest
	var noDigest atomic.Bool
	var byDigest, byDownload atomic.Int64
	sums := make([]manifests.Hash, len(blobs))
	found := make([]bool, len(blobs))
	type state struct {
		buf []byte
		h   hash.Hash
	}
	states := make([]state, opt.Parallel)
	err := eachParallel(ctx, opt.Parallel, len(blobs), func(ctx context.Context, w, i int) error {
		st := &states[w]
		if st.buf == nil {
			st.buf, st.h = make([]byte, 32<<10), sha256.New()
		}
		name := manifests.BlobPath(blobs[i])
		if canDigest && !noDigest.Load() {
			var got bool
			err := opt.Retry.Do(ctx, opt.Log, "digest "+name, func() error {
				var err error
				sums[i], _, got, err = d.Digest(ctx, name)
				return err
			})
			switch {
			case errors.Is(err, dav.ErrNotFound):
				return nil
			case err != nil:
				return err
			case got:
				found[i] = true
				byDigest.Add(1)
				return nil
			}
			noDigest.Store(true)
		}
		err := opt.Retry.Do(ctx, opt.Log, "download "+name, func() error {
			rc, err := r.Open(ctx, name, 0, -1)
			if err != nil {
				return err
			}
			defer rc.Close()
			st.h.Reset()
			if _, err := io.CopyBuffer(st.h, rc, st.buf); err != nil {
				return err
			}
			st.h.Sum(sums[i][:0])
			return nil
		})
		switch {
		case errors.Is(err, dav.ErrNotFound):
			return nil
		case err != nil:
			return err
		}
		found[i] = true
		byDownload.Add(1)
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	out := make(map[manifests.Hash]manifests.Hash, len(blobs))
	for i, h := range blobs {
		if found[i] {
			out[h] = sums[i]
		}
	}
	how := "download"
	switch {
	case byDigest.Load() > 0 && byDownload.Load() > 0:
		how = fmt.Sprintf("server digest (%d), download (%d)", byDigest.Load(), byDownload.Load())
	case byDigest.Load() > 0:
		how = "server digest"
	}
	return out, how, nil
}

// MarkLagging adds a "lagging" problem to every report whose serial is below the newest
// among the reports of its kind (live repositories, priority ≥ 0, among themselves;
// staging among staging, which is ahead of live by design under a release gate): a
// repository a sync could not reach keeps serving the old catalogue, and a cron job must
// hear of it.
func MarkLagging(reports []*VerifyReport) {
	newest := map[bool]uint64{}
	for _, r := range reports {
		if r.Error == "" && r.Serial > 0 {
			staging := r.Priority < 0
			newest[staging] = max(newest[staging], r.Serial)
		}
	}
	for _, r := range reports {
		if n := newest[r.Priority < 0]; r.Error == "" && r.Serial > 0 && r.Serial < n {
			r.Problems = append(r.Problems, Problem{Kind: "lagging", Name: dav.IndexName,
				Detail: fmt.Sprintf("serial %d, behind serial %d on another repository (the last sync did not reach it?)", r.Serial, n)})
			r.OK = false
		}
	}
}

// CheckWrite asks whether the repository takes writes with its credentials, in one
// harmless request (dav.WebDAV.CheckWrite): a wrong password on a repository whose reads
// are open shows here, not at the next release.
func CheckWrite(ctx context.Context, r dav.Remote) error {
	cw, ok := r.(interface{ CheckWrite(context.Context) error })
	if !ok {
		return nil
	}
	if err := cw.CheckWrite(ctx); err != nil {
		return fmt.Errorf("mirror: a write was refused (credentials, or permissions on the server): %w", err)
	}
	return nil
}
