package mirror

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror/dav"
)

// The release gate. With `publish: gated`, sync updates only the staging repositories
// (priority < 0), where a site tests a release; Promote then brings the live repositories
// to the very same signed index, byte for byte, and the blobs it names, copied from the
// staging repository and hashed on the way. What devices see is what was tested.

// PromoteOptions configure Promote.
type PromoteOptions struct {
	From      dav.Repository   // the staging repository whose index is promoted
	To        []dav.Repository // the live repositories
	Keys      []minisign.PublicKey
	Transfers int  // parallel copies per repository; default 4
	DryRun    bool // say what would be copied; change nothing
	Retry     dav.Retry
	Log       *slog.Logger
	Progress  Progress
}

// PromoteReport is what Promote did.
type PromoteReport struct {
	From   string       `json:"from"`
	Serial uint64       `json:"serial"`
	Repos  []RepoResult `json:"repositories"`
}

// Failed reports whether any live repository failed.
func (r *PromoteReport) Failed() bool {
	return slices.ContainsFunc(r.Repos, func(x RepoResult) bool { return x.Status == StatusFailed })
}

// Promote verifies the staging repository (a signed index from Keys, every blob it names
// present with its size) and brings each live repository to its index: the blobs the live
// one lacks are copied from staging (each hashed as it passes), then the same index and
// signature bytes are committed as sync does (signature, then index by MOVE). A live
// repository whose index is newer than staging's, or another at the same serial, is not
// touched (a failed result, named); a failing one does not stop the others. The error is
// for a staging repository that does not verify: nothing was changed then.
func Promote(ctx context.Context, opt PromoteOptions) (*PromoteReport, error) {
	sopt := SyncOptions{Transfers: opt.Transfers, DryRun: opt.DryRun, Retry: opt.Retry, Log: opt.Log, Progress: opt.Progress}.withDefaults()
	opt.Log = sopt.Log
	from, err := dav.Open(opt.From, sopt.Transfers)
	if err != nil {
		return nil, err
	}
	vr := Verify(ctx, opt.From, from, VerifyOptions{Keys: opt.Keys, Retry: opt.Retry, Log: opt.Log})
	if !vr.OK {
		why := vr.Error
		if why == "" && len(vr.Problems) > 0 {
			p := vr.Problems[0]
			why = fmt.Sprintf("%s %s: %s (%d problems)", p.Kind, p.Name, p.Detail, len(vr.Problems))
		}
		return nil, fmt.Errorf("mirror: the staging repository %s does not verify, nothing promoted: %s", opt.From.Name, why)
	}
	doc, sig, err := dav.ReadIndexDoc(ctx, from, sopt.readOpts())
	if err != nil {
		return nil, err
	}
	idx, err := manifests.VerifyIndex(opt.Keys, doc, sig)
	if err != nil {
		return nil, fmt.Errorf("mirror: the staging repository %s: %w", opt.From.Name, err)
	}
	plan := &blobPlan{blobs: map[manifests.Hash]blobSource{}}
	for _, e := range idx.Apps {
		mdoc, err := dav.ReadManifestDoc(ctx, from, e.Manifest, e.ManifestSize, sopt.readOpts())
		if err != nil {
			return nil, err
		}
		m, err := manifests.DecodeManifest(mdoc)
		if err != nil {
			return nil, err
		}
		plan.add(e.Manifest, blobSource{size: int64(len(mdoc)), data: mdoc})
		for _, f := range m.Files {
			plan.add(f.SHA256, blobSource{size: f.Size, from: from})
		}
	}
	plan.sortLargestFirst()
	rep := &PromoteReport{From: opt.From.Name, Serial: idx.Serial, Repos: make([]RepoResult, len(opt.To))}
	if opt.Progress != nil {
		opt.Progress.Start("promoting", -1)
		defer opt.Progress.Finish()
	}
	var wg sync.WaitGroup
	for i, repo := range opt.To {
		res := &rep.Repos[i]
		*res = RepoResult{Name: repo.Name, Priority: repo.Priority}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			if err := promoteOne(ctx, sopt, repo, res, plan, doc, sig, idx.Serial); err != nil {
				res.Status, res.Error = StatusFailed, err.Error()
				opt.Log.Error("promote failed", "repository", repo.Name, "err", err)
			} else {
				opt.Log.Info("promote done", "repository", repo.Name, "status", res.Status, "copied", res.Uploaded, "bytes", res.UploadedBytes)
			}
			res.Duration = time.Since(start)
		}()
	}
	wg.Wait()
	return rep, nil
}

// promoteOne brings one live repository to the staging index doc.
func promoteOne(ctx context.Context, opt SyncOptions, repo dav.Repository, res *RepoResult, plan *blobPlan, doc, sig []byte, serial uint64) error {
	w, err := dav.Open(repo, opt.Transfers)
	if err != nil {
		return err
	}
	w.Log = opt.Log.With("repository", repo.Name)
	current, err := dav.ReadDoc(ctx, w, dav.IndexName, manifests.MaxIndexSize, opt.readOpts())
	if err != nil {
		return err
	}
	if current != nil && !bytes.Equal(current, doc) {
		if x, err := manifests.DecodeIndex(current); err == nil && x.Serial >= serial {
			return fmt.Errorf("mirror: it holds serial %d, not older than staging's %d; not replaced", x.Serial, serial)
		}
	}
	p := &pusher{opt: opt, repo: repo, remote: w, res: res, staged: map[string]manifests.Hash{},
		planFn: func() *blobPlan { return plan }, doc: doc, sig: sig}
	defer p.end(ctx)
	return p.run(ctx, current)
}
