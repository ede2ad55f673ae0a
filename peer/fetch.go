package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"aead.dev/minisign"
	"golang.org/x/time/rate"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror/dav"
)

// Progress receives the bytes a fetch brings in (downloaded or reused); Start gives the
// total still to bring.
type Progress interface {
	Start(phase string, total int64)
	Add(n int)
	Finish()
}

// FetchOptions configure Fetch.
type FetchOptions struct {
	Store         *Store
	Sources       []Source // in the order they are tried (PlanSources)
	Keys          []minisign.PublicKey
	AllowUnsigned bool // with no Keys: accept an unsigned index (loudly)
	App, Version  string
	Out           string // lay the files out here when set
	Force         bool   // replace an Out folder that holds other files
	Now           func() time.Time
	Log           *slog.Logger
	Progress      Progress
	// RepoLimit and PeerLimit bound the download rate from repositories (the WAN) and
	// from the LAN's peers, each over all its transfers (nil: none; dav.NewLimiter).
	RepoLimit, PeerLimit *rate.Limiter
}

// FetchReport is what a fetch did.
type FetchReport struct {
	App         string         `json:"app"`
	Version     string         `json:"version"`
	Serial      uint64         `json:"serial"`
	Files       int            `json:"files"`
	Bytes       int64          `json:"bytes"`
	Sources     []SourceReport `json:"sources"`
	Downloaded  int64          `json:"downloaded_bytes"`
	ReusedLocal int64          `json:"reused_local_bytes"` // chunks copied from other blobs in the store
	// DeltaBytes are the deltas downloaded; RebuiltFromDelta the file bytes they rebuilt.
	DeltaBytes       int64 `json:"delta_bytes"`
	RebuiltFromDelta int64 `json:"rebuilt_from_delta_bytes"`
	// PackedBytes are the packed (compressed) bytes read for chunks from repositories;
	// their chunks count in Downloaded as the file's bytes.
	PackedBytes int64 `json:"packed_bytes"`
	AlreadyHeld int64 `json:"already_held_bytes"` // complete blobs and verified chunks from earlier runs
	// PeersWasted is the time spent on peers without verified progress from them
	// (Policy.Budget bounds it, give or take one attempt's end).
	PeersWasted time.Duration `json:"peers_wasted_ns"`
	Out         string        `json:"out,omitempty"`
	Duration    time.Duration `json:"duration_ns"`
}

// SourceReport is one source's part in a fetch.
type SourceReport struct {
	Name   string   `json:"name"`
	Kind   string   `json:"kind"`
	Bytes  int64    `json:"bytes"`
	Errors []string `json:"errors,omitempty"`
	Banned bool     `json:"sent_wrong_bytes,omitempty"`
}

// ErrNotPublished: the accepted index does not list the app version asked for.
var ErrNotPublished = errors.New("not published")

// reasonError is an error whose text says it all, matched (errors.Is) by its kind.
type reasonError struct {
	msg string
	is  error
}

func (e *reasonError) Error() string        { return e.msg }
func (e *reasonError) Is(target error) bool { return target == e.is }

// ErrNoSource: every source failed; the error lists one line per source.
var ErrNoSource = errors.New("no source could serve it")

// fetcher is one run of Fetch.
type fetcher struct {
	mu     sync.Mutex
	opt    FetchOptions
	log    *slog.Logger
	rep    *FetchReport
	srcRep map[string]*SourceReport
	order  []string         // sources in the order they entered the report
	banned map[string]bool  // by Source.id
	down   map[string]bool  // refused the connection: not asked again in this run
	bad    map[string]int64 // chunks (or manifests) that failed their hash, by badLabel
	// mu guards the report and the maps above: two transfers of one blob run at once
	lan    lanMemory // what this run learned of the LAN's peers
	chunks map[manifests.Hash]chunkLoc
	wasted atomic.Int64 // nanoseconds spent on peers without verified progress (Policy.Budget)
	// noPacked: sources whose packed chunks failed in this run (read raw since)
	noPacked map[string]bool
}

// waste adds d to the time spent on peers without verified progress.
func (f *fetcher) waste(d time.Duration) { f.wasted.Add(int64(d)) }

// need is the fetch-wide part of the policy's Need.
func (f *fetcher) need() Need { return Need{Wasted: time.Duration(f.wasted.Load())} }

// spent reports whether peers that never delivered used up the policy's budget.
func (f *fetcher) spent() bool {
	g := f.lanGroup()
	return g != nil && g.policy().Spent(f.need())
}

// ordered is the configured sources in the order a round tries them: as configured,
// the LAN moved after the repositories once the budget is spent.
func (f *fetcher) ordered() []Source {
	if !f.spent() {
		return f.opt.Sources
	}
	out := make([]Source, 0, len(f.opt.Sources))
	var lan []Source
	for _, s := range f.opt.Sources {
		if s.group != nil {
			lan = append(lan, s)
		} else {
			out = append(out, s)
		}
	}
	return append(out, lan...)
}

// readOpts: one try per source; the next source is the retry.
var readOpts = dav.ReadOptions{Retry: dav.Retry{Attempts: 1}}

// Fetch brings the app version into the store from the sources, every byte verified (see
// the package doc for the trust rules), and lays it out in opt.Out. It resumes from
// verified chunks, copies chunks the store holds in other blobs, and moves to the next
// source on any failure; a source that sent wrong bytes is not asked again in this run.
func Fetch(ctx context.Context, opt FetchOptions) (_ *FetchReport, err error) {
	start := time.Now()
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if len(opt.Keys) == 0 && opt.AllowUnsigned {
		opt.Log.Warn("fetching WITHOUT signature checks (allow_unsigned: true and no trusted_keys): anyone who controls a repository controls this device")
	}
	f := &fetcher{opt: opt, log: opt.Log, rep: &FetchReport{App: opt.App, Version: opt.Version},
		srcRep: map[string]*SourceReport{}, banned: map[string]bool{}, down: map[string]bool{}, bad: map[string]int64{}}
	defer func() {
		for _, s := range f.order {
			f.rep.Sources = append(f.rep.Sources, *f.srcRep[s])
		}
		f.rep.Duration = time.Since(start)
		f.rep.PeersWasted = time.Duration(f.wasted.Load())
	}()
	for _, s := range opt.Sources {
		f.report(s)
	}
	if err := opt.Store.Lock(ctx, opt.Log); err != nil {
		return f.rep, err
	}
	defer opt.Store.Unlock()
	defer func() { f.recordStats(ctx, start, err) }() // under the lock

	entry, err := f.index(ctx)
	if localErr(err) {
		err = asLocal(err)
	}
	if err != nil {
		return f.rep, err
	}
	f.rep.Version = entry.Version // APP@latest: the version it picked
	m, err := f.manifest(ctx, entry)
	if err != nil {
		return f.rep, err
	}
	f.rep.Files = len(m.Files)
	if err := checkSpace(opt.Store, m, opt.Out); err != nil {
		return f.rep, err
	}
	if f.chunks, err = chunkIndex(opt.Store); err != nil {
		return f.rep, err
	}
	files := slices.Clone(m.Files)
	slices.SortStableFunc(files, func(a, b manifests.File) int { return int(min(max(b.Size-a.Size, -1), 1)) })
	var todo int64
	seen := map[manifests.Hash]bool{}
	for _, fl := range files {
		f.rep.Bytes += fl.Size
		if !seen[fl.SHA256] && !opt.Store.HasBlob(fl.SHA256, fl.Size) {
			todo += fl.Size
		}
		seen[fl.SHA256] = true
	}
	if opt.Progress != nil && todo > 0 {
		opt.Progress.Start("fetching", todo)
		defer opt.Progress.Finish()
	}
	clear(seen)
	for _, fl := range files {
		if seen[fl.SHA256] {
			continue
		}
		seen[fl.SHA256] = true
		if err := f.blob(ctx, fl, m.ChunkSize, false); err != nil {
			if localErr(err) {
				err = asLocal(err)
			}
			return f.rep, err
		}
	}
	if opt.Out != "" {
		if err := placeOut(opt.Store, m, opt.Out, opt.Force); err != nil {
			if localErr(err) {
				err = asLocal(err)
			}
			return f.rep, err
		}
		f.rep.Out = opt.Out
	}
	return f.rep, nil
}

// report returns the report entry of a source, making it on first use (peers are found
// during the fetch).
func (f *fetcher) report(s Source) *SourceReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reportLocked(s)
}

func (f *fetcher) reportLocked(s Source) *SourceReport {
	r, ok := f.srcRep[s.Name]
	if !ok {
		r = &SourceReport{Name: s.Name, Kind: s.Kind}
		f.srcRep[s.Name] = r
		f.order = append(f.order, s.Name)
	}
	return r
}

// count adds k verified bytes to a source's report and the fetch's (bytes that failed
// their hash are no download: they count nowhere but in the source's ban).
func (f *fetcher) count(r *SourceReport, k int64, delta bool) {
	f.mu.Lock()
	r.Bytes += k
	if delta {
		f.rep.DeltaBytes += k
	} else {
		f.rep.Downloaded += k
	}
	f.mu.Unlock()
}

// progress moves the progress bar by n bytes of the files (a delta's own bytes do not).
func (f *fetcher) progress(n int64, delta bool) {
	if f.opt.Progress != nil && !delta {
		f.opt.Progress.Add(int(n))
	}
}

// usable reports whether a source is still asked in this run (not banned, not down).
func (f *fetcher) usable(s Source) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.banned[s.id()] && !f.down[s.id()]
}

// recordStats adds what this fetch brought in to the store's counters (for /metrics).
func (f *fetcher) recordStats(ctx context.Context, start time.Time, err error) {
	last := &LastFetch{App: f.rep.App, Version: f.rep.Version, At: time.Now().Unix(), Seconds: time.Since(start).Seconds(), Result: "ok"}
	switch {
	case ctx.Err() != nil:
		last.Result = "interrupted"
	case err != nil:
		last.Result = "failed"
	}
	byKind := map[string]int64{KindLocal: f.rep.ReusedLocal}
	for _, r := range f.srcRep {
		byKind[r.Kind] += r.Bytes
	}
	var sendErrs int64
	if g := f.lanGroup(); g != nil {
		sendErrs = g.SendErrors()
	}
	if err := f.opt.Store.addStats(byKind, f.bad, sendErrs, last, f.rep.DeltaBytes, f.rep.RebuiltFromDelta); err != nil {
		f.log.Warn("could not update the store's counters", "err", err)
	}
}

// groupSources turns a configured source into the sources to try for q: itself, or the
// LAN's peers that answer (lanSources), and whether to wait for the LAN before the next.
func (f *fetcher) groupSources(ctx context.Context, group Source, q Query, bw *blobWant) ([]Source, bool) {
	if group.group == nil {
		return []Source{group}, false
	}
	return f.lanSources(ctx, group.group, group, q, bw)
}

// sourceFailed records why a source failed; sending wrong bytes or breaking the protocol
// bans it (a peer by its address) for the run.
func (f *fetcher) sourceFailed(s Source, what string, err error) {
	if errors.Is(err, context.Canceled) || localErr(err) {
		return // the fetch was stopped (a signal): no fault of the source
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reportLocked(s)
	msg := manifests.Printable(fmt.Sprintf("%s: %v", what, err))
	if len(r.Errors) < maxReportErrors {
		r.Errors = append(r.Errors, msg)
	} else {
		r.Errors[len(r.Errors)-1] = msg // the last error is what noSource shows
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		f.down[s.id()] = true // not there at all: not asked again in this run
	}
	if errors.Is(err, dav.ErrCorrupt) || errors.Is(err, dav.ErrProtocol) {
		if errors.Is(err, dav.ErrCorrupt) {
			f.bad[badLabel(s)]++
		}
		f.banned[s.id()] = true
		r.Banned = true
		f.log.Error("source sent wrong bytes or broke the protocol; not asked again in this run", "source", s.Name, "what", what, "err", err)
		return
	}
	f.log.Warn("source failed; trying the next", "source", s.Name, "what", what, "err", err)
}

// maxReportErrors bounds the errors a source's report keeps.
const maxReportErrors = 20

// badLabel is the metrics label of a source's bad chunks: a repository's name (the
// config bounds them), "peer" for every peer (a LAN's addresses would not be bounded).
func badLabel(s Source) string {
	if s.Kind == KindPeer {
		return KindPeer
	}
	return s.Name
}

// noSource builds the error when every source failed for what: one line per source.
func (f *fetcher) noSource(what string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "peer: %s: %v", what, ErrNoSource)
	if len(f.opt.Sources) == 0 {
		b.WriteString(" (no source configured: every repository is staging or none is set)")
	}
	for _, name := range f.order {
		r := f.srcRep[name]
		last := "not asked"
		if len(r.Errors) > 0 {
			last = r.Errors[len(r.Errors)-1]
		}
		fmt.Fprintf(&b, "\n  %s (%s): %s", r.Name, r.Kind, last)
	}
	return &reasonError{msg: b.String(), is: ErrNoSource} // said once, in the first line
}

// index takes the first source's index, in priority order, that the trust rules accept and
// that lists the app version, and stores it (durably, before anything is fetched under it).
// With no such source, the index this device accepted before is used if it still passes
// the rules (expiry) and lists the version: a refused or unreachable repository cannot stop
// a device from reinstalling what it already trusts.
func (f *fetcher) index(ctx context.Context) (manifests.AppEntry, error) {
	trust, err := f.opt.Store.Trust()
	if err != nil {
		return manifests.AppEntry{}, err
	}
	type cand struct {
		doc, sig []byte
		x        *manifests.Index
		next     TrustState
	}
	var best *cand
	var newest *manifests.Index
	var highest uint64
	for _, k := range trust.Keys {
		highest = max(highest, k.Serial)
	}
sources:
	for _, group := range f.ordered() {
		srcs, _ := f.groupSources(ctx, group, Query{Kind: KindIndex, Serial: highest}, nil)
		for _, s := range srcs {
			if !f.usable(s) || (s.Kind == KindPeer && f.spent()) {
				continue
			}
			began := time.Now()
			rctx, cancel := f.budgeted(ctx, s)
			doc, sig, err := dav.ReadIndexDoc(rctx, s.Reader, readOpts)
			cancel()
			if err != nil {
				f.attempted(s, began, false, err)
				f.sourceFailed(s, "index", err)
				continue
			}
			// an index from a peer needs a trusted signature, whatever allow_unsigned says
			x, next, err := trust.Accept(f.opt.Keys, f.opt.AllowUnsigned && s.Kind != KindPeer, doc, sig, f.opt.Now())
			f.attempted(s, began, err == nil, err)
			if err != nil {
				f.sourceFailed(s, "index refused", err)
				continue
			}
			if newest == nil || x.Serial > newest.Serial {
				newest = x
			}
			if _, ok := x.Resolve(f.opt.App, f.opt.Version); ok {
				best = &cand{doc, sig, x, next}
				break sources
			}
			f.log.Info("a source's index does not list the version; trying the next", "source", s.Name, "serial", x.Serial)
		}
	}
	id := f.opt.App + "@" + f.opt.Version
	if best == nil {
		if doc, sig := f.opt.Store.Index(); doc != nil {
			if x, _, err := trust.Accept(f.opt.Keys, f.opt.AllowUnsigned, doc, sig, f.opt.Now()); err == nil {
				if e, ok := x.Resolve(f.opt.App, f.opt.Version); ok {
					f.log.Warn("no source gave a usable index; using the one this device accepted before", "serial", x.Serial)
					f.rep.Serial = x.Serial
					return e, nil
				}
			}
		}
		if newest != nil {
			avail := "no version of " + f.opt.App
			if vs := newest.Versions(f.opt.App); len(vs) > 0 {
				avail = "available: " + strings.Join(vs, ", ")
			}
			return manifests.AppEntry{}, &reasonError{msg: fmt.Sprintf("%s is not published (index serial %d); %s", id, newest.Serial, avail), is: ErrNotPublished}
		}
		return manifests.AppEntry{}, f.noSource("index for " + id)
	}
	if err := f.opt.Store.Accepted(best.doc, best.sig, best.next); err != nil {
		return manifests.AppEntry{}, err
	}
	f.log.Debug("index accepted", "serial", best.x.Serial)
	f.rep.Serial = best.x.Serial
	e, _ := best.x.Resolve(f.opt.App, f.opt.Version)
	return e, nil
}

// manifest returns the entry's manifest from the store or the sources, checked against
// the hash the index gives and against the app version asked for.
func (f *fetcher) manifest(ctx context.Context, e manifests.AppEntry) (*manifests.Manifest, error) {
	id := e.App + "@" + e.Version
	check := func(m *manifests.Manifest) error {
		if m.App != e.App || m.Version != e.Version {
			return fmt.Errorf("peer: the manifest for %s is %s@%s: %w", id, manifests.Printable(m.App), manifests.Printable(m.Version), ErrBadManifest)
		}
		return nil
	}
	if m, _, err := f.opt.Store.Manifest(e.Manifest); err == nil && check(m) == nil {
		return m, nil
	}
	var m *manifests.Manifest
	err := f.each(ctx, Query{Kind: KindBlob, Blob: e.Manifest}, "manifest of "+id, nil, func(s Source) error {
		rctx, cancel := f.budgeted(ctx, s)
		doc, err := dav.ReadManifestDoc(rctx, s.Reader, e.Manifest, e.ManifestSize, readOpts)
		cancel()
		if err != nil {
			f.sourceFailed(s, "manifest", err)
			return err
		}
		// the bytes hash to the name the signed index gives: whatever is wrong in them,
		// the publisher signed it, and no other source has other bytes to offer
		if m, err = manifests.DecodeManifest(doc); err != nil {
			return fmt.Errorf("peer: manifest for %s: %w (%w; fix the source folder and sync again)", id, err, ErrBadManifest)
		}
		if err := check(m); err != nil {
			return err
		}
		f.mu.Lock()
		f.reportLocked(s).Bytes += int64(len(doc)) // the source's part; Downloaded counts blobs
		f.mu.Unlock()
		return f.opt.Store.PutManifest(e.Manifest, doc)
	})
	return m, err
}

// budgeted bounds a small read from a peer that never delivered by what is left of the
// budget (Policy.Budget; a blob transfer has guard instead).
func (f *fetcher) budgeted(ctx context.Context, s Source) (context.Context, context.CancelFunc) {
	g := f.lanGroup()
	if s.Kind != KindPeer || g == nil || g.policy().Budget <= 0 || f.lan.isProven(s) {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, max(g.policy().Budget-f.need().Wasted, 0))
}

// ErrBadManifest: the signed index names a manifest that is not valid (a bad path, the
// wrong app): the publisher's error, reported as such, never blamed on a source.
var ErrBadManifest = errors.New("the signed index names an invalid manifest")

// attempted records an attempt on a peer that began at began: verified progress makes it
// proven; without, its time is wasted (Policy.Budget), and a failure that is not a busy
// answer or a leave makes it no holder for the run.
func (f *fetcher) attempted(s Source, began time.Time, progressed bool, err error) (wasted time.Duration) {
	if s.Kind != KindPeer {
		return 0
	}
	f.lan.outcome(s, progressed, busyErr(err))
	if !progressed {
		wasted = time.Since(began)
		f.waste(wasted)
	}
	return wasted
}

// busyErr reports whether err says only that a source is busy or slow, or that the
// fetch left it (nothing against it).
func busyErr(err error) bool {
	var se *dav.StatusError
	return err == nil || errors.Is(err, errLeft) || errors.Is(err, errFloor) || errors.Is(err, errPacked) ||
		(errors.As(err, &se) && (se.Code == 503 || se.Code == 429))
}

// BusyWait bounds how long a fetch keeps trying when the only sources left are busy
// (503, or peers without a free slot): on a LAN where every peer serves one transfer at a
// time, a device waits its turn instead of failing.
const BusyWait = 10 * time.Minute

// each tries fn on the sources for q in order until one succeeds. When all failed and some
// were only busy (or were peers that stopped short), or the policy waits for the LAN (bw:
// a file's blob), it waits (1–2 s; 0.2–0.4 s for the LAN) and asks again, for up to
// BusyWait; otherwise the error names every source. The round's state is local.
func (f *fetcher) each(ctx context.Context, q Query, what string, bw *blobWant, fn func(Source) error) error {
	deadline := time.Now().Add(BusyWait)
	verified := func() int64 {
		if bw == nil {
			return 0
		}
		return bw.p.State().VerifiedBytes()
	}
	for {
		busy, lan, again := false, false, false
		roundStart, roundBegan, roundWasted := verified(), time.Now(), time.Duration(0)
	groups:
		for _, group := range f.ordered() {
			if !f.usable(group) {
				continue
			}
			srcs, wait := f.groupSources(ctx, group, q, bw)
			for _, s := range srcs {
				if !f.usable(s) || (s.Kind == KindPeer && f.spent() && !f.lan.isProven(s)) {
					continue
				}
				before, began := verified(), time.Now()
				err := fn(s)
				if localErr(err) {
					return asLocal(err) // the device's disk: no other source helps
				}
				roundWasted += f.attempted(s, began, err == nil || verified() > before, err)
				if err == nil {
					return nil
				}
				if errors.Is(err, ErrBadManifest) {
					return err
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				var se *dav.StatusError
				if errors.As(err, &se) && (se.Code == 503 || se.Code == 429) {
					busy = true
				}
				// a peer that stopped short is most likely still fetching what it serves:
				// worth asking again (one that sent wrong bytes is banned instead), and a
				// transfer the policy left is no failure
				if (s.Kind == KindPeer && !errors.Is(err, dav.ErrCorrupt)) || errors.Is(err, errLeft) || errors.Is(err, errPacked) {
					busy = true
				}
				if errors.Is(err, errLeft) || errors.Is(err, errPacked) {
					again = true // ask the LAN again at once, the chosen peer first
					break groups
				}
			}
			if wait {
				// a peer ahead delivers: wait for it rather than take it from the WAN again
				busy, lan = true, true
				break
			}
		}
		if again {
			continue
		}
		if !busy || time.Now().After(deadline) {
			return f.noSource(what)
		}
		wait := time.Second + rand.N(time.Second)
		if lan {
			// asking the LAN again is cheap, and a peer that just began to receive is
			// free to serve: the sooner it is found, the shorter the chain's lag
			wait = 200*time.Millisecond + rand.N(200*time.Millisecond)
			bw.wait.Waited += wait
			if verified() == roundStart {
				// a round that only waited for peers (asking them included): all of it
				f.waste(time.Since(roundBegan) - roundWasted + wait)
			}
		}
		f.log.Debug("every source left is busy; waiting for a free one", "what", what, "wait", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}
