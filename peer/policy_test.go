package peer

import (
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

const mbit = 1e6 / 8 // bytes per second of one Mbit/s

// A fetch on a slow peer leaves it for a faster one with a free slot, but not before the
// sample time and not for one only a little faster.
func TestPolicyLeavesASlowSource(t *testing.T) {
	p := DefaultPolicy
	n := Need{Self: 50, Have: 10 << 20}
	tr := Transfer{Source: 7, Started: t0, Bytes: 10 << 20} // 10 MiB in 8 s: ~10 Mbit/s
	cands := []Cand{
		{ID: 7, Held: 30 << 20, Rate: 10 * mbit},
		{ID: 9, Held: 100 << 20, Growth: 100 * mbit, Measured: true},
	}
	if to := p.Leave(t0.Add(time.Second), tr, cands, n); to != nil {
		t.Fatal("left before the sample time")
	}
	to := p.Leave(t0.Add(8*time.Second), tr, cands, n)
	if len(to) != 1 || to[0].ID != 9 || to[0].Free {
		t.Fatalf("left for %+v; want peer 9 (100 Mbit/s, busy)", to)
	}
	// a complete peer as fast with a free slot goes before the busy one
	cands = append(cands, Cand{ID: 8, Complete: true, Held: 256 << 20, Free: true})
	if to := p.Leave(t0.Add(8*time.Second), tr, cands, n); len(to) != 2 || to[0].ID != 8 || to[1].ID != 9 {
		t.Fatalf("left for %+v; want the free complete peer 8, then 9", to)
	}
	// a peer only twice as fast is not worth the switch
	cands = cands[:2]
	cands[1].Growth = 20 * mbit
	if to := p.Leave(t0.Add(8*time.Second), tr, cands, n); to != nil {
		t.Fatalf("left for %+v, only 2x faster", to)
	}
	// a peer behind the asker is no source, however fast
	cands[1] = Cand{ID: 9, Held: 1 << 20, Growth: 100 * mbit, Measured: true, Free: true}
	if to := p.Leave(t0.Add(8*time.Second), tr, cands, n); to != nil {
		t.Fatalf("left for %+v, which holds less", to)
	}
	// a peer whose pace is not measured yet is no reason to leave
	cands[1] = Cand{ID: 9, Held: 100 << 20, Growth: 100 * mbit, Free: true}
	if to := p.Leave(t0.Add(8*time.Second), tr, cands, n); to != nil {
		t.Fatalf("left for %+v, of unknown pace", to)
	}
	// at the source's frontier the source's own pace counts: a source that grows at
	// 40 Mbit/s is not slow beside a 100 Mbit/s peer, one that grows at 10 is
	cands = []Cand{{ID: 7, Held: n.Have + 1<<20, Growth: 40 * mbit, Measured: true},
		{ID: 9, Held: 100 << 20, Growth: 100 * mbit, Measured: true}}
	slowTr := Transfer{Source: 7, Started: t0, Bytes: 1 << 20}
	if to := p.Leave(t0.Add(8*time.Second), slowTr, cands, n); to != nil {
		t.Fatalf("left a source paced by its own download at 40 Mbit/s for %+v", to)
	}
	cands[0].Growth = 10 * mbit
	if to := p.Leave(t0.Add(8*time.Second), slowTr, cands, n); len(to) != 1 {
		t.Fatalf("stayed behind a source that grows at 10 Mbit/s: %+v", to)
	}
	cands[0].Measured = false
	if to := p.Leave(t0.Add(8*time.Second), slowTr, cands, n); to != nil {
		t.Fatalf("left a source whose pace is not known yet (a chain forming): %+v", to)
	}
}

// Equal peers are spread: with a seeded random source each of three equal peers leads
// the ranking about a third of the time; complete peers come first.
func TestPolicyRankSpreadsEqualPeers(t *testing.T) {
	p := DefaultPolicy
	n := Need{Self: 50}
	cands := []Cand{{ID: 1, Held: 5, Free: true}, {ID: 2, Held: 5, Free: true}, {ID: 3, Held: 5, Free: true},
		{ID: 4, Held: 9, Free: false}, {ID: 60, Held: 0, Free: true}}
	rnd := rand.New(rand.NewPCG(1, 2))
	first := map[uint64]int{}
	for range 3000 {
		r := p.Rank(cands, n, rnd)
		if len(r) != 3 {
			t.Fatalf("ranked %v: want the three free peers ahead only", r)
		}
		first[r[0].ID]++
	}
	for id := uint64(1); id <= 3; id++ {
		if first[id] < 800 || first[id] > 1200 {
			t.Fatalf("peer %d first %d of 3000 times: not spread", id, first[id])
		}
	}
	cands = append(cands, Cand{ID: 70, Complete: true, Held: 9, Free: true})
	if r := p.Rank(cands, n, rnd); r[0].ID != 70 {
		t.Fatalf("ranked %v: a complete peer goes first", r)
	}
	// further ahead goes first, unless it is known to be slow
	cands = []Cand{{ID: 1, Held: 5, Free: true, Growth: 100 * mbit, Measured: true},
		{ID: 2, Held: 50, Free: true, Growth: 10 * mbit, Measured: true},
		{ID: 3, Held: 20, Free: true}}
	if r := p.Rank(cands, n, rnd); r[0].ID != 3 || r[1].ID != 1 || r[2].ID != 2 {
		t.Fatalf("ranked %v: want 3 (ahead, pace unknown), 1, then the slow 2", r)
	}
}

// Patience restarts on progress and ends on silence, and has a bound for the whole fetch.
func TestPolicyPatienceFollowsProgress(t *testing.T) {
	p := DefaultPolicy
	n := Need{Self: 50, Have: 4 << 20}
	ahead := []Cand{{ID: 9, Held: 8 << 20}}
	w := LANWait{}.Observe(t0, false, ahead, n)
	if !p.WaitForLAN(t0.Add(9*time.Second), w, ahead, n) {
		t.Fatal("gave up on the LAN before Idle")
	}
	if p.WaitForLAN(t0.Add(11*time.Second), w, ahead, n) {
		t.Fatal("still waits after Idle without progress")
	}
	// the peer ahead grew: progress, the wait goes on
	ahead[0].Held = 12 << 20
	w = w.Observe(t0.Add(9*time.Second), false, ahead, n)
	if !p.WaitForLAN(t0.Add(15*time.Second), w, ahead, n) {
		t.Fatal("gave up although the LAN delivered 6 s ago")
	}
	// our own progress counts the same
	w = w.Observe(t0.Add(18*time.Second), true, ahead, n)
	if !p.WaitForLAN(t0.Add(27*time.Second), w, ahead, n) {
		t.Fatal("gave up although this fetch verified bytes 9 s ago")
	}
	// the bound for the whole fetch
	w.Waited = p.MaxWait
	if p.WaitForLAN(t0.Add(19*time.Second), w, ahead, n) {
		t.Fatal("waits beyond MaxWait")
	}
	// the upstream died and nobody holds more: no wait at all
	behind := []Cand{{ID: 3, Held: 2 << 20}, {ID: 80, Held: 4 << 20}}
	if p.WaitForLAN(t0.Add(time.Second), LANWait{}.Observe(t0, false, behind, n), behind, n) {
		t.Fatal("waits for peers that hold less")
	}
	// unless the WAN is down: the LAN is all there is (the peer holding it may have
	// answered late), within the same bounds
	down := n
	down.WANDown = true
	if !p.WaitForLAN(t0.Add(time.Second), LANWait{}.Observe(t0, false, behind, down), behind, down) {
		t.Fatal("with the WAN down, gave up on a LAN that answered")
	}
	if p.WaitForLAN(t0.Add(11*time.Second), LANWait{}.Observe(t0, false, behind, down), behind, down) {
		t.Fatal("with the WAN down, still waits after Idle without progress")
	}
	if p.WaitForLAN(t0.Add(time.Second), LANWait{}.Observe(t0, false, nil, down), nil, down) {
		t.Fatal("with the WAN down, waits for a LAN where nobody answered")
	}
	// of two that hold the same, the lower instance id leads (follows nobody)
	same := []Cand{{ID: 3, Held: 4 << 20, Free: true}}
	if !p.WaitForLAN(t0, LANWait{}.Observe(t0, false, same, n), same, n) {
		t.Fatal("the higher instance id should follow the lower one")
	}
	if p.WaitForLAN(t0, LANWait{}.Observe(t0, false, same, Need{Self: 2, Have: 4 << 20}), same, Need{Self: 2, Have: 4 << 20}) {
		t.Fatal("the lower instance id should lead")
	}
	// past the start, a tied peer leads only with a free slot: a busy one is most likely
	// the asker's own follower, waiting for it (the head of a chain whose leader died)
	same[0].Free = false
	if p.WaitForLAN(t0, LANWait{}.Observe(t0, false, same, n), same, n) {
		t.Fatal("the new head of a chain waits for its own busy follower")
	}
	same[0].Free = true
	if !p.WaitForLAN(t0, LANWait{}.Observe(t0, false, same, n), same, n) {
		t.Fatal("a device that lost its upstream with a free tied sibling of lower id should follow it")
	}
}

// A server gives the slot of a transfer running far below its link to the newcomer, and
// never one that has run less than the sample time.
func TestPolicyPreemptsOnlySlowTransfers(t *testing.T) {
	p := DefaultPolicy
	link := 100 * mbit
	now := t0.Add(10 * time.Second)
	running := []Serving{
		{Started: t0, Bytes: int64(10 * 90 * mbit)},                  // fast
		{Started: t0, Bytes: int64(10 * 10 * mbit)},                  // slow
		{Started: now.Add(-time.Second), Bytes: int64(1 * 1 * mbit)}, // slower, but new
	}
	if got := p.Preempt(now, running, link, 0); got != 1 {
		t.Fatalf("preempted %d, want the slow one (1)", got)
	}
	if got := p.Preempt(now, running[:1], link, 0); got != -1 {
		t.Fatalf("preempted %d of fast transfers", got)
	}
	if got := p.Preempt(now, running, 0, 0); got != -1 {
		t.Fatalf("preempted %d with no link rate known", got)
	}
	// a client known to be slow takes nobody's slot
	if got := p.Preempt(now, running, link, 5*mbit); got != -1 {
		t.Fatalf("a slow newcomer preempted %d", got)
	}
	// a follower that mostly waited for this device's own chunks is not slow
	running[1].Waited = 9 * time.Second
	if got := p.Preempt(now, running, link, 0); got != -1 {
		t.Fatalf("preempted %d, a follower paced by this device", got)
	}
	// a new transfer of a client known to be slow is judged at once
	running[2].Known = 2 * mbit
	if got := p.Preempt(now, running, link, 0); got != 2 {
		t.Fatalf("preempted %d, want the known-slow client (2)", got)
	}
}

func TestDiscoveryResendsWithinTheWindow(t *testing.T) {
	rs := DiscoveryResends(250*time.Millisecond, rand.New(rand.NewPCG(3, 4)))
	if len(rs) < 2 {
		t.Fatalf("resends %v: want at least two within 250 ms", rs)
	}
	for i, d := range rs {
		if d <= 0 || d >= 250*time.Millisecond*3/4+250*time.Millisecond/4 || (i > 0 && d <= rs[i-1]) {
			t.Fatalf("resends %v: not increasing inside the window", rs)
		}
	}
}

// A second source helps only a transfer that leaves room on the link.
func TestPolicyHelpsOnlyASlowTransfer(t *testing.T) {
	p := DefaultPolicy
	lan := 100 * mbit
	fast := Transfer{Started: t0, Bytes: int64(8 * 90 * mbit)}
	slow := Transfer{Started: t0, Bytes: int64(8 * 20 * mbit)}
	if p.Help(t0.Add(8*time.Second), fast, lan) {
		t.Fatal("a helper beside a transfer that fills the link")
	}
	if !p.Help(t0.Add(8*time.Second), slow, lan) {
		t.Fatal("no helper beside a transfer at a fifth of the LAN's pace")
	}
	if p.Help(t0.Add(time.Second), Transfer{Started: t0}, lan) {
		t.Fatal("a helper before the sample time")
	}
	// the LAN's pace unknown: a complete peer helps a repository read, not a peer's transfer
	if !p.Help(t0.Add(8*time.Second), Transfer{Started: t0, Bytes: 1}, 0) {
		t.Fatal("no helper beside a repository read")
	}
	if p.Help(t0.Add(8*time.Second), Transfer{Source: 7, Started: t0, Bytes: 1}, 0) {
		t.Fatal("a helper beside a peer of unknown pace")
	}
}
