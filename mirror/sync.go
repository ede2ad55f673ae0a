package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"aead.dev/minisign"
	"github.com/drepo-dev/drepo/manifests"
	"golang.org/x/time/rate"
)

// SyncOptions configure Sync. Source, SigningKey, StateDir and Repos are required.
type SyncOptions struct {
	Source     string
	SigningKey minisign.PrivateKey
	// Keys verify indexes already on repositories (the signing key's public half is
	// always among them).
	Keys       []minisign.PublicKey
	StateDir   string
	Repos      []Repository
	Transfers  int   // parallel uploads per repository; default 4
	BWLimit    int64 // bytes per second over all uploads; 0 = no limit
	DryRun     bool  // read and plan only
	Full       bool  // list every blob and repair what is missing or of the wrong size
	Keep       int   // > 0: publish only the newest Keep versions per app and remove unreferenced blobs
	ChunkSize  int64
	LeaseStale time.Duration // default 30 min
	Retry      Retry
	Log        *slog.Logger
	Progress   Progress
	Now        func() time.Time
}

// Progress receives byte counts: hashing source files, then uploads. A phase starts with
// its total when known, else -1; Grow raises the total, since uploads learn theirs per
// repository once it is listed. Grow and Add are called from several goroutines.
type Progress interface {
	Start(phase string, total int64)
	Grow(n int64)
	Add(n int)
	Finish()
}

// SyncReport is what one sync did.
type SyncReport struct {
	Serial   uint64       `json:"serial"`
	Changed  bool         `json:"new_index"`
	Versions int          `json:"versions"`
	Repos    []RepoResult `json:"repositories"`
}

// RepoResult is one repository's outcome.
type RepoResult struct {
	Name          string        `json:"name"`
	Priority      int           `json:"priority"`
	Status        string        `json:"status"` // up-to-date, updated, planned, failed
	Uploaded      int           `json:"uploaded_blobs"`
	Staged        int           `json:"uploaded_while_hashing"`
	UploadedBytes int64         `json:"uploaded_bytes"`
	Removed       int           `json:"removed_blobs"`
	Error         string        `json:"error,omitempty"`
	Duration      time.Duration `json:"duration_ns"`
}

// Failed reports whether any repository failed.
func (r *SyncReport) Failed() bool {
	return slices.ContainsFunc(r.Repos, func(x RepoResult) bool { return x.Status == StatusFailed })
}

// Repository outcomes.
const (
	StatusUpToDate = "up-to-date"
	StatusUpdated  = "updated"
	StatusPlanned  = "planned"
	StatusFailed   = "failed"
)

// remoteIndex is what a repository holds now.
type remoteIndex struct {
	doc []byte // nil if none
	err error  // reading failed
}

// Sync publishes the source folder to every repository: it hashes what changed, builds and
// signs the next index only when the set of app versions changed, and for each repository
// uploads the missing blobs, checks them, then replaces the index last. The returned error is
// for failures before any repository was touched (source, key, state); a repository's own
// failure is in its RepoResult and does not stop the others.
func Sync(ctx context.Context, opt SyncOptions) (*SyncReport, error) {
	opt = opt.withDefaults()
	st := state{dir: opt.StateDir}
	cache := LoadHashCache(st.cachePath())
	var limiter *rate.Limiter
	if opt.BWLimit > 0 {
		limiter = rate.NewLimiter(rate.Limit(opt.BWLimit), int(min(opt.BWLimit, 1<<20)))
	}
	// A repository's time counts from here: large files go up while they are hashed.
	start := time.Now()
	pushers := make([]*pusher, len(opt.Repos))
	results := make([]RepoResult, len(opt.Repos))
	for i, repo := range opt.Repos {
		results[i] = RepoResult{Name: repo.Name, Priority: repo.Priority}
		pushers[i] = &pusher{opt: opt, repo: repo, limiter: limiter, res: &results[i], staged: map[string]manifests.Hash{}}
		w, err := Open(repo, opt.Transfers)
		if err != nil {
			results[i].Status, results[i].Error = StatusFailed, err.Error()
			continue
		}
		pushers[i].remote = w
	}
	defer func() {
		for _, p := range pushers {
			p.end(ctx)
		}
	}()

	// Large files the cache does not know are uploaded while they are hashed (stage.go).
	stage := &stager{cache: cache, ctx: ctx}
	if !opt.DryRun {
		for _, p := range pushers {
			if p.remote != nil {
				stage.candidates = append(stage.candidates, p)
			}
		}
	}
	onRead := func(int) {}
	if opt.Progress != nil {
		opt.Progress.Start("hashing", -1)
		onRead = opt.Progress.Add
	}
	stage.onRead = onRead
	versions, err := ScanSource(ctx, opt.Source, ScanOptions{ChunkSize: opt.ChunkSize, Hash: stage.hash, Log: opt.Log})
	if opt.Progress != nil {
		opt.Progress.Finish()
	}
	if err != nil {
		return nil, err
	}
	if !opt.DryRun {
		if err := cache.Save(); err != nil {
			opt.Log.Warn("could not save the hash cache", "err", err)
		}
	}
	versions = KeepNewest(versions, opt.Keep)

	current := make([]remoteIndex, len(opt.Repos))
	remotes := make([]Remote, len(opt.Repos))
	var wg sync.WaitGroup
	for i, p := range pushers {
		if p.remote == nil || p.res.Status == StatusFailed {
			continue
		}
		remotes[i] = p.remote
		wg.Add(1)
		go func() {
			defer wg.Done()
			current[i].doc, current[i].err = readDoc(ctx, p.remote, IndexName, manifests.MaxIndexSize, opt)
		}()
	}
	wg.Wait()

	doc, sig, changed, err := decideIndex(ctx, opt, st, versions, remotes, current)
	if err != nil {
		return nil, err
	}
	idx, _ := manifests.DecodeIndex(doc)
	rep := &SyncReport{Serial: idx.Serial, Changed: changed, Versions: len(versions)}
	// The upload plan is built only if some repository needs work (a no-op never does).
	plan := sync.OnceValue(func() *blobPlan { return newBlobPlan(versions, cache) })

	if opt.Progress != nil {
		opt.Progress.Start("uploading", -1)
		defer opt.Progress.Finish()
	}
	for i, p := range pushers {
		if p.res.Status == StatusFailed {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if current[i].err != nil {
				p.res.Status, p.res.Error = StatusFailed, current[i].err.Error()
			} else {
				p.planFn, p.doc, p.sig = plan, doc, sig
				if err := p.run(ctx, current[i].doc); err != nil {
					p.res.Status, p.res.Error = StatusFailed, err.Error()
				}
				p.end(ctx)
			}
			p.res.Duration = time.Since(start)
			log := opt.Log.With("repository", p.repo.Name)
			if p.res.Status == StatusFailed {
				log.Error("sync failed", "err", p.res.Error)
			} else {
				log.Info("sync done", "status", p.res.Status, "uploaded", p.res.Uploaded, "bytes", p.res.UploadedBytes, "removed", p.res.Removed)
			}
		}()
	}
	wg.Wait()
	rep.Repos = results
	return rep, nil
}

func (opt SyncOptions) withDefaults() SyncOptions {
	if opt.Transfers <= 0 {
		opt.Transfers = 4
	}
	if opt.ChunkSize == 0 {
		opt.ChunkSize = manifests.DefaultChunkSize
	}
	if opt.LeaseStale <= 0 {
		opt.LeaseStale = 30 * time.Minute
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.StateDir == "" {
		opt.StateDir = DefaultStateDir()
	}
	pub := opt.SigningKey.Public().(minisign.PublicKey)
	if !slices.ContainsFunc(opt.Keys, func(k minisign.PublicKey) bool { return k.Equal(pub) }) {
		opt.Keys = append(slices.Clone(opt.Keys), pub)
	}
	return opt
}

// logOnly fills just the defaults readDoc needs (no key, no repositories).
func (opt SyncOptions) logOnly() SyncOptions {
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return opt
}

// readDoc reads a small document from a repository (nil if it does not exist), with retries.
func readDoc(ctx context.Context, r Remote, name string, max int, opt SyncOptions) ([]byte, error) {
	var b []byte
	err := opt.Retry.do(ctx, opt.Log, "read "+name, func() error {
		rc, err := r.Open(ctx, name, 0, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err = manifests.ReadLimited(rc, max)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return b, err
}

// decideIndex returns the signed index to publish. An unchanged set of app versions re-uses
// the last signed bytes (from local state, or from a repository whose index verifies), so a
// no-op sync changes nothing anywhere. Otherwise the serial is one above every serial this
// key signed that sync can see, and the new index is saved locally before it is pushed.
func decideIndex(ctx context.Context, opt SyncOptions, st state, versions []*Version, remotes []Remote, current []remoteIndex) (doc, sig []byte, changed bool, err error) {
	entries := make([]manifests.AppEntry, len(versions))
	for i, v := range versions {
		entries[i] = v.Entry()
	}
	manifests.SortEntries(entries) // the order of a decoded index, so entries compare directly
	same := func(x *manifests.Index) bool { return slices.Equal(x.Apps, entries) }
	var maxSerial uint64
	if pd, ps := st.lastIndex(); pd != nil {
		if x, err := manifests.VerifyIndex(opt.Keys, pd, ps); err == nil {
			if same(x) {
				return pd, ps, false, nil
			}
			maxSerial = x.Serial
		}
	}
	for i, c := range current {
		if c.doc == nil || remotes[i] == nil {
			continue
		}
		x, err := manifests.DecodeIndex(c.doc)
		if err != nil || (x.Serial <= maxSerial && !same(x)) {
			continue
		}
		rs, err := readSig(ctx, remotes[i], c.doc, opt)
		if err != nil || rs == nil || manifests.Verify(opt.Keys, c.doc, rs) != nil {
			continue // only serials our keys signed count; anyone can write a big number
		}
		if same(x) {
			if !opt.DryRun {
				if err := st.saveIndex(c.doc, rs); err != nil {
					return nil, nil, false, err
				}
			}
			return c.doc, rs, false, nil
		}
		maxSerial = max(maxSerial, x.Serial)
	}
	idx := &manifests.Index{Serial: maxSerial + 1, Created: opt.Now(), Apps: entries}
	doc, err = idx.Encode()
	if err != nil {
		return nil, nil, false, err
	}
	sig = manifests.Sign(opt.SigningKey, doc, opt.Now())
	if !opt.DryRun {
		if err := st.saveIndex(doc, sig); err != nil {
			return nil, nil, false, fmt.Errorf("mirror: save state: %w", err)
		}
	}
	return doc, sig, true, nil
}
