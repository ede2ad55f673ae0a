package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/drepo-dev/drepo/mirror/dav"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
)

// SyncOptions configure Sync. Source, SigningKey, StateDir and Repos are required.
type SyncOptions struct {
	Source     string
	SigningKey minisign.PrivateKey
	// Keys verify indexes already on repositories (the signing key's public half is
	// always among them).
	Keys      []minisign.PublicKey
	StateDir  string
	Repos     []dav.Repository
	Transfers int   // parallel uploads per repository; default 4
	BWLimit   int64 // bytes per second over all uploads; 0 = no limit
	DryRun    bool  // read and plan only
	Full      bool  // list every blob and repair what is missing or of the wrong size
	Keep      int   // > 0: publish only the newest Keep versions per app and remove unreferenced blobs
	// KeepApps overrides Keep per app (0: keep every version of that app).
	KeepApps map[string]int
	// Damaged names, per repository, blobs with wrong bytes (verify --repair): removed once
	// the repository's lease is held, then uploaded again.
	Damaged map[string][]string
	// AllowRemovals lets the new index drop more than half of the published app versions.
	AllowRemovals bool
	// Republish names app versions (app@version) whose changed content may replace the
	// published one; any other changed published version stops the run.
	Republish []string
	// Pack has sync keep a packed (chunk-by-chunk compressed) blob of each file where it
	// saves a tenth (packed.go).
	Pack bool
	// DeltaVersions is how many earlier versions of an app each new file gets a delta
	// from (deltas.go; 0: none).
	DeltaVersions int
	// Init lets sync create a repository's folder; without it a repository URL whose
	// folder does not exist fails (RepoResult.NoRepository): a typo in a URL must not
	// start a new repository.
	Init       bool
	ChunkSize  int64
	LeaseStale time.Duration // default 30 min
	Retry      dav.Retry
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
	Serial   uint64 `json:"serial"`
	Changed  bool   `json:"new_index"`
	Versions int    `json:"versions"`
	// RemovedVersions are the app versions (app@version) of the published index that the
	// new one drops.
	RemovedVersions []string `json:"removed_versions"`
	// DeltasBuilt is how many deltas this run built (a cached one is not built again) and
	// DeltaBuild how long that took.
	DeltasBuilt int           `json:"deltas_built"`
	DeltaBuild  time.Duration `json:"delta_build_ns"`
	Repos       []RepoResult  `json:"repositories"`
}

// RepoResult is one repository's outcome.
type RepoResult struct {
	Name          string `json:"name"`
	Priority      int    `json:"priority"`
	Status        string `json:"status"` // up-to-date, updated, planned, failed
	Uploaded      int    `json:"uploaded_blobs"`
	Staged        int    `json:"uploaded_while_hashing"`
	UploadedBytes int64  `json:"uploaded_bytes"`
	// UploadedDeltaBytes is the part of UploadedBytes that were deltas.
	UploadedDeltaBytes int64  `json:"uploaded_delta_bytes"`
	Removed            int    `json:"removed_blobs"`
	Error              string `json:"error,omitempty"`
	// NoRepository: the URL's folder does not exist and Init was not set.
	NoRepository bool          `json:"no_repository,omitempty"`
	Duration     time.Duration `json:"duration_ns"`
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

// indexRead is a repository's current index, read at the start of the run beside the scan.
// done is closed once doc or err is set.
type indexRead struct {
	done chan struct{}
	doc  []byte // nil if none
	err  error  // reading failed
}

func (r *indexRead) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// ReadGrace is how long sync waits for slow repositories' indexes before it decides the
// next index, when state_dir records the last serial. Without that record it waits for
// every repository (each bounded by SmallTimeout), since only they can tell which serials
// were already used.
const ReadGrace = 2 * time.Second

// Sync publishes the source folder to every repository: it hashes what changed, builds and
// signs the next index only when the set of app versions changed, and for each repository
// uploads the missing blobs, checks them, then replaces the index last. Each repository runs
// on its own: a hung or refusing one fails alone, within its small-request deadlines and
// retry budget. The returned error is for failures before any repository's index was
// touched (source, key, state, catalogue checks); a repository's own failure is in its
// RepoResult and does not stop the others.
func Sync(ctx context.Context, opt SyncOptions) (*SyncReport, error) {
	opt = opt.withDefaults()
	pub := opt.SigningKey.Public().(minisign.PublicKey)
	if len(opt.Keys) > 0 && !slices.ContainsFunc(opt.Keys, func(k minisign.PublicKey) bool { return k.Equal(pub) }) {
		return nil, fmt.Errorf("mirror: %w (key ID %s); devices would refuse every index it signs", ErrUntrustedKey, fmt.Sprintf("%X", pub.ID()))
	}
	if len(opt.Keys) == 0 {
		opt.Keys = []minisign.PublicKey{pub}
	}
	st := state{dir: opt.StateDir}
	if !opt.DryRun {
		if err := ensureStateDir(st.dir); err != nil {
			return nil, err
		}
	}
	cache := LoadHashCache(st.cachePath())
	limiter := dav.NewLimiter(opt.BWLimit)
	// A repository's time counts from here: large files go up while they are hashed.
	start := time.Now()
	pushers := make([]*pusher, len(opt.Repos))
	results := make([]RepoResult, len(opt.Repos))
	reads := make([]*indexRead, len(opt.Repos))
	for i, repo := range opt.Repos {
		results[i] = RepoResult{Name: repo.Name, Priority: repo.Priority}
		popt := opt
		popt.Retry = opt.Retry.WithBudget()
		pushers[i] = &pusher{opt: popt, repo: repo, limiter: limiter, res: &results[i], staged: map[string]manifests.Hash{}}
		w, err := dav.Open(repo, opt.Transfers)
		if err != nil {
			results[i].Status, results[i].Error = StatusFailed, err.Error()
			continue
		}
		w.Log = opt.Log.With("repository", repo.Name)
		pushers[i].remote = w
		// Every repository's index is read now, beside the scan, each on its own.
		r := &indexRead{done: make(chan struct{})}
		reads[i] = r
		go func() {
			defer close(r.done)
			r.doc, r.err = dav.ReadDoc(ctx, w, dav.IndexName, manifests.MaxIndexSize, pushers[i].opt.readOpts())
		}()
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
	scanned, err := ScanSource(ctx, opt.Source, ScanOptions{ChunkSize: opt.ChunkSize, Hash: stage.hash, Log: opt.Log})
	if opt.Progress != nil {
		opt.Progress.Finish()
	}
	if err != nil {
		return nil, err
	}
	versions := KeepNewest(scanned, opt.Keep, opt.KeepApps)
	used := newCacheUse()
	deltas := deltaStore{dir: filepath.Join(st.dir, "deltas"), used: used}
	built, err := addDeltas(ctx, opt, scanned, versions, opt.DeltaVersions, deltas, !opt.DryRun)
	if err != nil {
		return nil, err
	}
	packs := packStore{dir: filepath.Join(st.dir, "packed"), used: used}
	if opt.Pack {
		if err := addPacked(ctx, versions, packs, !opt.DryRun); err != nil {
			return nil, err
		}
	}
	if !opt.DryRun {
		for _, dir := range []string{deltas.dir, packs.dir} {
			n, b, err := used.prune(dir, opt.Now())
			if err != nil {
				return nil, fmt.Errorf("mirror: pruning %s: %w", dir, err)
			}
			if n > 0 {
				opt.Log.Info("removed cached deltas or packed blobs no version uses", "dir", dir, "files", n, "bytes", b)
			}
		}
	}
	retained := map[string]bool{} // versions left out by retention, on purpose
	for _, v := range scanned {
		if !slices.Contains(versions, v) {
			retained[versionID(v.Entry())] = true
		}
	}

	_, haveRecord, err := st.serial()
	if err != nil {
		return nil, err
	}
	waitReads(ctx, reads, !haveRecord)
	remotes := make([]dav.Remote, len(opt.Repos))
	current := make([][]byte, len(opt.Repos))
	for i, r := range reads {
		if r != nil && r.finished() && r.err == nil {
			remotes[i], current[i] = pushers[i].remote, r.doc
		}
	}
	d, err := decideIndex(ctx, opt, st, versions, remotes, current)
	if err == nil && adoptPublished(ctx, changedVersions(d.known, d.entries), versions, remotes, opt) > 0 {
		d, err = decideIndex(ctx, opt, st, versions, remotes, current)
	}
	if err == nil {
		err = checkRemovals(d.published, d.removed, retained, opt.AllowRemovals)
	}
	if err == nil {
		err = checkRepublish(ctx, changedVersions(d.known, d.entries), versions, opt.Republish, remotes, opt)
	}
	if !opt.DryRun {
		// A refused run keeps the cache of files it did not see: an unmounted source must
		// not cost a full rehash when it comes back.
		if serr := cache.Save(err == nil); serr != nil {
			opt.Log.Warn("could not save the hash cache", "err", serr)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := d.commit(opt, st); err != nil {
		return nil, err
	}
	idx, _ := manifests.DecodeIndex(d.doc)
	rep := &SyncReport{Serial: idx.Serial, Changed: d.changed, Versions: len(versions), RemovedVersions: d.removed,
		DeltasBuilt: built.n, DeltaBuild: built.took}
	// The upload plan is built only if some repository needs work (a no-op never does).
	plan := sync.OnceValue(func() *blobPlan { return newBlobPlan(versions, cache, deltas, packs) })

	if opt.Progress != nil {
		opt.Progress.Start("uploading", -1)
		defer opt.Progress.Finish()
	}
	var wg sync.WaitGroup
	for i, p := range pushers {
		if p.res.Status == StatusFailed {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := reads[i]
			select {
			case <-r.done:
			case <-ctx.Done():
			}
			switch {
			case !r.finished():
				p.res.Status, p.res.Error = StatusFailed, ctx.Err().Error()
			case r.err != nil:
				p.res.Status, p.res.Error = StatusFailed, r.err.Error()
			case r.doc == nil && !opt.Init && !repoExists(ctx, p.remote):
				p.res.Status, p.res.NoRepository = StatusFailed, true
				p.res.Error = fmt.Sprintf("no repository at %s (the folder does not exist); pass --init to create one there", p.repo.URL)
			default:
				if err := d.late(opt, st, r.doc, remotes[i] != nil); err != nil {
					p.res.Status, p.res.Error = StatusFailed, err.Error()
					break
				}
				p.planFn, p.doc, p.sig = plan, d.doc, d.sig
				if err := p.run(ctx, r.doc); err != nil {
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

// waitReads waits for every repository's index read when all is set, else for those that
// answer within ReadGrace (the rest are checked against the decision when they arrive).
func waitReads(ctx context.Context, reads []*indexRead, all bool) {
	var grace <-chan time.Time
	if !all {
		t := time.NewTimer(ReadGrace)
		defer t.Stop()
		grace = t.C
	}
	for _, r := range reads {
		if r == nil {
			continue
		}
		select {
		case <-r.done:
		case <-grace:
			return
		case <-ctx.Done():
			return
		}
	}
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
	return opt
}

// prunes reports whether retention is set, so sync removes blobs the new index drops.
func (opt SyncOptions) prunes() bool { return opt.Keep > 0 || len(opt.KeepApps) > 0 }

// readOpts is the read side of the options: retries and log.
func (opt SyncOptions) readOpts() dav.ReadOptions {
	return dav.ReadOptions{Retry: opt.Retry, Log: opt.Log}
}

// decision is the index this run publishes, and what it was decided from.
type decision struct {
	doc, sig  []byte
	serial    uint64
	changed   bool                 // newly signed (else re-used byte for byte)
	entries   []manifests.AppEntry // the new index's entries
	published *manifests.Index     // the newest index our keys signed that sync can see
	known     []*manifests.Index   // every verified index seen (state and repositories)
	removed   []string             // app versions of published that the new index drops
	highest   uint64               // the highest serial seen anywhere, whoever signed it
	dryRun    bool
	mu        sync.Mutex
}

// decideIndex returns the signed index to publish. The next serial is one above every serial
// sync has recorded in state_dir or seen in any repository's index, whoever signed it, so a
// lost state_dir or a switched key can never sign a serial twice. An unchanged set of app
// versions re-uses the newest signed bytes when their serial is that highest one, so a no-op
// sync changes nothing anywhere.
func decideIndex(ctx context.Context, opt SyncOptions, st state, versions []*Version, remotes []dav.Remote, current [][]byte) (*decision, error) {
	d := &decision{dryRun: opt.DryRun}
	d.entries = make([]manifests.AppEntry, len(versions))
	for i, v := range versions {
		d.entries[i] = v.Entry()
	}
	manifests.SortEntries(d.entries) // the order of a decoded index, so entries compare directly
	same := func(x *manifests.Index) bool { return slices.Equal(x.Apps, d.entries) }

	recorded, _, err := st.serial()
	if err != nil {
		return nil, err
	}
	d.highest = recorded
	type candidate struct {
		doc, sig []byte
		x        *manifests.Index
	}
	var reuse []candidate
	consider := func(doc, sig []byte, x *manifests.Index) {
		d.known = append(d.known, x)
		if d.published == nil || x.Serial > d.published.Serial {
			d.published = x
		}
		if same(x) {
			reuse = append(reuse, candidate{doc, sig, x})
		}
	}
	var local []byte // the state's last index, if our keys verify it
	if pd, ps := st.lastIndex(); pd != nil {
		if x, err := manifests.DecodeIndex(pd); err == nil {
			d.highest = max(d.highest, x.Serial)
			if manifests.Verify(opt.Keys, pd, ps) == nil {
				consider(pd, ps, x)
				local = pd
			}
		}
	}
	for i, doc := range current {
		if doc == nil || remotes[i] == nil {
			continue
		}
		x, err := manifests.DecodeIndex(doc)
		if err != nil {
			opt.Log.Warn("a repository's index does not decode; its serial is not known", "repository", opt.Repos[i].Name, "err", err)
			continue
		}
		d.highest = max(d.highest, x.Serial)
		if bytes.Equal(doc, local) || (d.published != nil && x.Serial <= d.published.Serial && !same(x)) {
			continue // known already, or older than what we know: its signature tells nothing new
		}
		rs, err := dav.ReadSig(ctx, remotes[i], doc, opt.readOpts())
		if err != nil || rs == nil || manifests.Verify(opt.Keys, doc, rs) != nil {
			continue
		}
		consider(doc, rs, x)
	}
	if d.highest >= MaxSerial {
		return nil, fmt.Errorf("mirror: %w: serial %d seen (state or a repository's index) is at or above 2^53; remove that index by hand if it is bogus", ErrSerialRange, d.highest)
	}
	d.removed = removedVersions(d.published, d.entries)
	for _, c := range reuse {
		if c.x.Serial == d.highest {
			d.doc, d.sig, d.serial = c.doc, c.sig, c.x.Serial
			return d, nil
		}
	}
	idx := &manifests.Index{Serial: d.highest + 1, Created: opt.Now(), Apps: d.entries}
	if d.doc, err = idx.Encode(); err != nil {
		return nil, err
	}
	d.sig = manifests.Sign(opt.SigningKey, d.doc, opt.Now())
	d.serial, d.changed = idx.Serial, true
	return d, nil
}

// commit records the decision in state_dir before anything is pushed: the serial first (so
// it is never signed again, whatever happens next), then the index and signature.
func (d *decision) commit(opt SyncOptions, st state) error {
	if d.dryRun {
		return nil
	}
	if err := st.raiseSerial(max(d.serial, d.highest)); err != nil {
		return fmt.Errorf("mirror: save state: %w", err)
	}
	if pd, _ := st.lastIndex(); bytes.Equal(pd, d.doc) {
		return nil
	}
	if err := st.saveIndex(d.doc, d.sig); err != nil {
		return fmt.Errorf("mirror: save state: %w", err)
	}
	return nil
}

// late checks the index of a repository that answered after the decision (used is false):
// one at a serial above this run's, or a different index at the same serial, must not be
// replaced by ours. Its serial is recorded, so the next run signs above it.
func (d *decision) late(opt SyncOptions, st state, doc []byte, used bool) error {
	if used || doc == nil || bytes.Equal(doc, d.doc) {
		return nil
	}
	x, err := manifests.DecodeIndex(doc)
	if err != nil || x.Serial < d.serial {
		return nil
	}
	if !d.dryRun {
		d.mu.Lock()
		err := st.raiseSerial(x.Serial)
		d.mu.Unlock()
		if err != nil {
			return fmt.Errorf("mirror: save state: %w", err)
		}
	}
	return fmt.Errorf("mirror: the repository answered late with index serial %d, not below this run's %d; left as it is: run sync again", x.Serial, d.serial)
}

// repoExists reports whether a repository's folder exists (a listing answers); a
// repository without an index may be a new one or a typo, and only the folder tells.
func repoExists(ctx context.Context, r dav.Remote) bool {
	_, err := r.List(ctx, "")
	return !errors.Is(err, dav.ErrNotFound)
}
