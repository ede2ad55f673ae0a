package peer

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drepo-dev/drepo/manifests"
)

// A blob from two sources at once: while a run's transfer streams the chunks in order, a
// helper asks the LAN every second for a complete peer with a free slot and, when one is
// there, enough of the range is left and the transfer leaves room (Policy.Help), takes the
// second half of what is left from it.
// The two write disjoint chunks of the same partial blob through their own pipelines;
// whatever the helper does not bring stays missing and the next round fetches it.

// helpMinChunks: a helper takes a tail only when the run has at least this many chunks
// left (below, a second request costs more than it brings).
const helpMinChunks = 8

// runLimit is the end of a run's range, which a helper may lower while the run's transfer
// goes on, and the chunk that transfer has taken last. Both are atomic and sequentially
// consistent, so the two agree on who writes which chunk without a lock: either the
// transfer sees the lower end before it takes a chunk, or the helper sees that chunk
// taken and backs off.
type runLimit struct {
	e, cur   atomic.Int64
	got      atomic.Int64  // verified bytes the run's transfers delivered
	source   atomic.Uint64 // the instance id of the peer the run reads (0: a repository)
	began    time.Time
	over     chan struct{} // closed by done
	overOnce sync.Once
}

func newRunLimit(a, b int) *runLimit {
	l := &runLimit{began: time.Now(), over: make(chan struct{})}
	l.e.Store(int64(b))
	l.cur.Store(int64(a) - 1)
	return l
}

// end is the range's end now.
func (l *runLimit) end() int { return int(l.e.Load()) }

// take records that the transfer is at chunk i and reports whether i is still its own.
func (l *runLimit) take(i int) bool {
	l.cur.Store(int64(i))
	return int64(i) < l.e.Load()
}

// split lowers the end to mid unless the transfer already took a chunk at or past it; it
// returns the end before.
func (l *runLimit) split(mid int) (old int, ok bool) {
	old = l.end()
	if l.finished() || mid >= old || int64(mid) <= l.cur.Load()+1 {
		return 0, false
	}
	l.e.Store(int64(mid))
	if l.cur.Load() >= int64(mid) {
		l.e.Store(int64(old))
		return 0, false
	}
	return old, true
}

// done marks the run over: no helper starts after it, and one waiting for its next look
// returns at once (the run waits for it).
func (l *runLimit) done() { l.overOnce.Do(func() { close(l.over) }) }

// finished reports whether done was called.
func (l *runLimit) finished() bool {
	select {
	case <-l.over:
		return true
	default:
		return false
	}
}

// help is a run's helper (see above). It takes at most one tail, then returns.
func (f *fetcher) help(ctx context.Context, g *PeerGroup, bw *blobWant, q Query, fl manifests.File, lim *runLimit) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lim.over:
			return
		case <-tick.C:
		}
		cur, end := int(lim.cur.Load()), lim.end()
		if end-cur < helpMinChunks {
			continue
		}
		found, err := g.discover(ctx, q, false)
		if err != nil {
			continue
		}
		now := time.Now()
		lan := LANRate(f.lan.cands(found, q, now, f.isBanned))
		if !g.policy().Help(now, Transfer{Source: lim.source.Load(), Started: lim.began, Bytes: lim.got.Load()}, lan) {
			continue
		}
		var pick *Found
		for i := range found {
			if fd := found[i]; fd.Complete && fd.FreeSlots > 0 && !f.isBanned(fd) && (!f.spent() || f.lan.provenAt(fd.IP)) {
				pick = &found[i]
				break
			}
		}
		if pick == nil {
			continue
		}
		old, ok := lim.split(cur + 1 + (end-cur-1)/2)
		if !ok {
			continue
		}
		src, err := f.lan.source(g, *pick, g.Stall)
		if err != nil {
			lim.e.Store(int64(old)) // nobody took the tail: the run goes on to the end
			continue
		}
		a := lim.end()
		f.log.Debug("a second source takes the tail of the blob", "source", src.Name, "from_chunk", a, "to_chunk", old)
		if err := f.tryRun(ctx, src, bw, q, fl, &a, newRunLimit(a, old), false); err != nil && ctx.Err() == nil {
			f.sourceFailed(src, fl.Path, err)
		}
		return
	}
}
