package mirror

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"aead.dev/minisign"
	"github.com/drepo-dev/drepo/manifests"
	"golang.org/x/sync/errgroup"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	Keys     []minisign.PublicKey // trusted keys; at least one
	Deep     bool                 // also check every blob's bytes
	Parallel int                  // blobs checked at once with Deep; default 4
	Retry    Retry
	Log      *slog.Logger
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
	size  int64
	where string
}

// Verify checks one repository against its own signed index.
func Verify(ctx context.Context, repo Repository, r Remote, opt VerifyOptions) *VerifyReport {
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
	so := SyncOptions{Retry: opt.Retry, Log: opt.Log}.logOnly()
	doc, err := readDoc(ctx, r, IndexName, manifests.MaxIndexSize, so)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	if doc == nil {
		bad("index", IndexName, "no index in the repository")
		return rep
	}
	sig, err := readSig(ctx, r, doc, so)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	if sig == nil {
		bad("signature", SigName, "no signature beside the index")
		return rep
	}
	idx, err := manifests.VerifyIndex(opt.Keys, doc, sig)
	if err != nil {
		kind := "index"
		if errors.Is(err, manifests.ErrBadSignature) {
			kind = "signature"
		}
		bad(kind, IndexName, "%v", err)
		return rep
	}
	rep.Serial, rep.Versions = idx.Serial, len(idx.Apps)
	if idx.Expired(time.Now()) {
		bad("index", IndexName, "expired at %s: devices will refuse it; run sync", idx.Expires.Format(time.RFC3339))
	}

	// manifests, several at once
	expect := map[manifests.Hash]expectBlob{}
	mdocs := make([][]byte, len(idx.Apps))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opt.Parallel)
	for i, e := range idx.Apps {
		g.Go(func() error {
			b, err := readDoc(gctx, r, manifests.BlobPath(e.Manifest), int(e.ManifestSize), so)
			if err != nil && !errors.Is(err, manifests.ErrTooLarge) {
				return err
			}
			mdocs[i] = b
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		rep.Error = err.Error()
		return rep
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
				expect[f.SHA256] = expectBlob{size: f.Size, where: where + " " + f.Path}
			}
		}
	}
	rep.Blobs = len(expect)
	for _, x := range expect {
		rep.Bytes += x.size
	}

	present := map[manifests.Hash]int64{}
	err = so.Retry.do(ctx, opt.Log, "list", func() error {
		return WalkAll(ctx, r, "", func(fi FileInfo) error {
			if h, ok := parseBlobName(fi.Name); ok {
				present[h] = fi.Size
				if _, ref := expect[h]; !ref {
					rep.Unreferenced = append(rep.Unreferenced, fi.Name)
				}
			} else if strings.HasPrefix(fi.Name, TmpDir+"/") {
				rep.Leftovers = append(rep.Leftovers, fi.Name)
			}
			return nil
		})
	})
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	var deep []manifests.Hash
	for h, x := range expect {
		size, ok := present[h]
		switch {
		case !ok:
			bad("missing", manifests.BlobPath(h), "missing (%s)", x.where)
		case size != x.size:
			bad("size", manifests.BlobPath(h), "%d bytes, want %d (%s)", size, x.size, x.where)
		default:
			deep = append(deep, h)
		}
	}
	if opt.Deep {
		if err := checkBytes(ctx, r, deep, expect, opt, rep, bad); err != nil {
			rep.Error = err.Error()
			return rep
		}
	}
	slices.SortFunc(rep.Problems, func(a, b Problem) int { return strings.Compare(a.Name, b.Name) })
	slices.Sort(rep.Unreferenced)
	slices.Sort(rep.Leftovers)
	rep.OK = len(rep.Problems) == 0
	return rep
}

// checkBytes checks each blob's bytes: from the server's Repr-Digest where it sends one,
// else by downloading and hashing, several at once.
func checkBytes(ctx context.Context, r Remote, blobs []manifests.Hash, expect map[manifests.Hash]expectBlob, opt VerifyOptions, rep *VerifyReport, bad func(kind, name, format string, a ...any)) error {
	d, canDigest := r.(Digester)
	var noDigest atomic.Bool
	var byDigest, byDownload atomic.Int64
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opt.Parallel)
	for _, h := range blobs {
		g.Go(func() error {
			name := manifests.BlobPath(h)
			var sum manifests.Hash
			got := false
			if canDigest && !noDigest.Load() {
				err := opt.Retry.do(gctx, opt.Log, "digest "+name, func() error {
					var err error
					sum, _, got, err = d.Digest(gctx, name)
					return err
				})
				if err != nil {
					return err
				}
				if !got {
					noDigest.Store(true)
				} else {
					byDigest.Add(1)
				}
			}
			if !got {
				err := opt.Retry.do(gctx, opt.Log, "download "+name, func() error {
					rc, err := r.Open(gctx, name, 0, -1)
					if err != nil {
						return err
					}
					defer rc.Close()
					hh := sha256.New()
					if _, err := io.Copy(hh, rc); err != nil {
						return err
					}
					copy(sum[:], hh.Sum(nil))
					return nil
				})
				if err != nil {
					return err
				}
				byDownload.Add(1)
			}
			if sum != h {
				mu.Lock()
				bad("content", name, "bytes do not match the name (sha256 %s; %s)", sum, expect[h].where)
				mu.Unlock()
			}
			return nil
		})
	}
	err := g.Wait()
	switch {
	case byDigest.Load() > 0 && byDownload.Load() > 0:
		rep.Deep = fmt.Sprintf("server digest (%d), download (%d)", byDigest.Load(), byDownload.Load())
	case byDigest.Load() > 0:
		rep.Deep = "server digest"
	default:
		rep.Deep = "download"
	}
	return err
}
