package peer

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"time"
)

// Policy is how a device picks among the LAN's peers for a blob, when it leaves a slow
// one, how long it waits for the LAN before it reads the WAN, and when a peer server
// gives a slow transfer's slot to another device. Every decision is a pure function of
// what is known, with the clock (and randomness) passed in: the real fetch and server,
// the tests and the simulator (drepo-bench lan-sim) run the same code. The README's
// "How a device picks its sources" explains the choices.
type Policy struct {
	// SlowFactor: a source is slow when another is expected to deliver this many times
	// faster; a peer server cuts a transfer that runs this many times below its link.
	SlowFactor float64
	// Sample is how long a transfer runs before its rate is judged.
	Sample time.Duration
	// Idle: the LAN is waited for only while it made verified progress within Idle.
	Idle time.Duration
	// MaxWait bounds the time one fetch of a blob spends waiting for the LAN in all.
	MaxWait time.Duration
	// Budget bounds what peers that never delivered a verified byte to this fetch may
	// cost it in all (Need.Wasted): past it, they are not asked, not waited for and not
	// counted as holders, and the LAN comes after the repositories. A LAN of liars of
	// any kind and number so costs a fetch about Budget.
	Budget time.Duration
	// Floor is the verified rate (bytes per second) below which a transfer from a peer
	// is cut once it ran FloorWindow, measured over the last FloorWindow: a peer that
	// drips passes any stall guard, and wrong bytes show only at a chunk's end.
	Floor       float64
	FloorWindow time.Duration
}

// DefaultPolicy is the policy of drepo fetch and drepo peer. The floor is far below any
// LAN (10 Mbit/s is 1.2 MB/s) and lets a 1 MiB chunk through in 8 s.
var DefaultPolicy = Policy{SlowFactor: 3, Sample: 2 * time.Second, Idle: 10 * time.Second, MaxWait: 2 * time.Minute,
	Budget: 10 * time.Second, Floor: 128 << 10, FloorWindow: 5 * time.Second}

// Cand is one peer for one blob as a fetch sees it: what discovery last said of it and
// what this fetch measured.
type Cand struct {
	ID       uint64 // instance id
	Complete bool
	Held     int64 // verified bytes (the whole blob when Complete)
	Free     bool  // it had a free transfer slot
	// Rate is the verified bytes per second it delivered to this fetch (0: not yet).
	Rate float64
	// Growth is how fast its Held grew between two discovery answers: the rate of its
	// own download, the most a follower can get from it once caught up. Measured: over
	// at least the policy's Sample (else Growth says nothing yet).
	Growth   float64
	Measured bool
	Banned   bool // sent wrong bytes or broke the protocol in this run
	// Proven: it delivered verified bytes to this fetch in this run. Failed: an
	// attempt on it failed (not busy) and it never delivered. A failed peer is no holder.
	Proven, Failed bool
}

// Need is the asking device's side of a decision about one blob.
type Need struct {
	Self uint64 // its instance id
	Have int64  // verified bytes of the blob it holds
	// Fruitless counts the leaves in a row that brought no faster transfer (Fruitful):
	// each doubles the time before the next, so a device whose own link is the slow
	// part stops hopping.
	Fruitless int
	// Chunk is the blob's chunk size: a follower within two chunks of its source's held
	// bytes is at its frontier, paced by the source's own download.
	Chunk int64
	// Wasted is what the fetch spent so far on peers without verified progress (Budget).
	Wasted time.Duration
	// WANDown: every source after the peers refused or could not be reached in this run,
	// so the LAN is all there is.
	WANDown bool
}

// Counts reports whether the policy looks at c at all: not banned, not failed, and
// proven or within the budget.
func (p Policy) Counts(c Cand, n Need) bool {
	return !c.Banned && (c.Proven || (!c.Failed && !p.Spent(n)))
}

// Spent reports whether the fetch used up its budget for peers that never delivered.
func (p Policy) Spent(n Need) bool { return p.Budget > 0 && n.Wasted >= p.Budget }

// Counted is cands without those the policy does not look at (Counts).
func (p Policy) Counted(cands []Cand, n Need) []Cand {
	out := make([]Cand, 0, len(cands))
	for _, c := range cands {
		if p.Counts(c, n) {
			out = append(out, c)
		}
	}
	return out
}

// ahead reports whether c holds more of the blob than the asker, so following c moves
// the asker on. Of two that hold the same, the lower instance id leads and the other
// follows, so devices that start together (or lost the same upstream) do not all read the
// WAN and none waits on one that waits on it; past the start, only while the leader has a
// free slot: a tied peer that is busy is most likely serving the asker's own chain, which
// waits for the asker (a chain whose head died would stall until Idle).
func (c Cand) ahead(n Need) bool {
	switch {
	case c.Banned:
		return false
	case c.Complete || c.Held > n.Have:
		return true
	case c.Held == n.Have:
		return c.ID < n.Self && (n.Have == 0 || c.Free)
	}
	return false
}

// expected is the rate the policy expects of c: what it delivered if measured; else a
// complete peer is as fast as the best the LAN showed (lan), and a partial one as fast as
// it grows, or as lan while that is unknown.
func (c Cand) expected(lan float64) float64 {
	switch {
	case c.Rate > 0:
		return c.Rate
	case c.Complete || c.Growth <= 0:
		return lan
	default:
		return c.Growth
	}
}

// LANRate is the best rate the LAN showed to this fetch: a source's delivery or a
// peer's own download. The yardstick for "slow".
func LANRate(cands []Cand) float64 {
	var best float64
	for _, c := range cands {
		if !c.Banned {
			best = max(best, c.Rate, c.Growth)
		}
	}
	return best
}

// Rank returns the peers worth asking for the blob now, best first: only peers ahead of
// the asker with a free slot; complete before partial; a peer known to be slow (it
// delivered, or grows, SlowFactor below the best the LAN showed) after the others; then
// more held first (the one furthest ahead keeps the chain short); random among equals
// (rnd), so equal peers share the load.
func (p Policy) Rank(cands []Cand, n Need, rnd *rand.Rand) []Cand {
	cands = p.Counted(cands, n)
	var out []Cand
	for _, c := range cands {
		if c.Free && c.ahead(n) {
			out = append(out, c)
		}
	}
	if rnd != nil {
		rnd.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	lan := LANRate(cands)
	slow := func(c Cand) bool {
		if c.Rate > 0 {
			return c.Rate*p.SlowFactor < lan
		}
		return c.Measured && c.Growth*p.SlowFactor < lan
	}
	slices.SortStableFunc(out, func(a, b Cand) int {
		if a.Complete != b.Complete {
			if a.Complete {
				return -1
			}
			return 1
		}
		if sa, sb := slow(a), slow(b); sa != sb {
			if sb {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.Held, a.Held)
	})
	return out
}

// Transfer is a running download as the policy judges it.
type Transfer struct {
	Source  uint64 // the peer's instance id (0: a repository)
	Started time.Time
	Bytes   int64 // verified bytes it delivered
}

// Rate is the transfer's verified bytes per second up to now.
func (t Transfer) Rate(now time.Time) float64 {
	d := now.Sub(t.Started).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(t.Bytes) / d
}

// Leave decides whether a fetch should end its transfer t for other peers: after Sample,
// when peers ahead of the asker are expected to deliver SlowFactor times faster. It
// returns them, free ones first, then by expected rate; a busy one may give the asker a
// slow transfer's slot (Preempt), so the fetch asks them in turn. None: stay. The asker's
// own slow link is not escaped this way: no peer is expected to beat it by SlowFactor.
func (p Policy) Leave(now time.Time, t Transfer, cands []Cand, n Need) []Cand {
	if now.Sub(t.Started) < p.Sample<<min(n.Fruitless, 6) {
		return nil
	}
	rate := t.Rate(now)
	cands = p.Counted(cands, n)
	for _, c := range cands {
		if c.ID == t.Source && t.Source != 0 && !c.Complete && c.Held-n.Have <= 2*max(n.Chunk, 1<<20) {
			// at the source's frontier: the transfer runs as fast as the source grows; a
			// source whose pace is not known yet is not left
			if !c.Measured {
				return nil
			}
			rate = max(rate, c.Growth)
		}
	}
	lan := LANRate(cands)
	var out []Cand
	for _, c := range cands {
		if c.ID == t.Source || !c.ahead(n) {
			continue
		}
		// only a peer whose speed is known is worth leaving for: one that delivered,
		// grew, or is complete (as fast as the LAN showed)
		if c.Rate <= 0 && (!c.Measured || c.Growth <= 0) && !c.Complete {
			continue
		}
		if e := c.expected(lan); e > 0 && e >= p.SlowFactor*rate {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b Cand) int {
		if a.Free != b.Free {
			if a.Free {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.expected(lan), a.expected(lan))
	})
	return out
}

// Help decides whether a complete peer should take part of a blob beside a transfer,
// after Sample: when the transfer runs at less than half of what the LAN showed (lan), or
// reads the repository (t.Source 0) while the LAN's pace is not known yet (a peer that
// holds it all takes load off the WAN). A device's downlink is shared by its transfers,
// and the chain behind it is fed from its verified prefix in order: a helper beside a
// transfer that already fills the link halves the prefix's pace and slows every device
// behind (measured: 1.21x one device alone became 1.30x).
func (p Policy) Help(now time.Time, t Transfer, lan float64) bool {
	if now.Sub(t.Started) < p.Sample {
		return false
	}
	if lan <= 0 {
		return t.Source == 0
	}
	return 2*t.Rate(now) < lan
}

// Fruitful reports whether leaving a transfer that ran at before for one that runs at
// after paid: at least twice as fast. The fetch counts the leaves that did not (Need.Fruitless).
func Fruitful(before, after float64) bool { return after >= 2*before }

// LANWait is the state of one blob's wait for the LAN, kept by the fetch as a value.
type LANWait struct {
	Progress time.Time     // the last verified progress: this fetch's, or a peer ahead grew
	Waited   time.Duration // time spent waiting for the LAN so far
	MaxHeld  int64         // the most any peer ahead held at the last look
}

// Observe returns w updated with what the fetch sees at now: its own verified bytes
// (have, and whether they grew since the last look) and the peers ahead.
func (w LANWait) Observe(now time.Time, grew bool, cands []Cand, n Need) LANWait {
	if w.Progress.IsZero() || grew {
		w.Progress = now
	}
	for _, c := range cands {
		if c.ahead(n) && !c.Complete && c.Held > w.MaxHeld {
			if w.MaxHeld > 0 {
				w.Progress = now // the LAN delivers: a peer ahead holds more than before
			}
			w.MaxHeld = c.Held
		}
	}
	return w
}

// WaitForLAN decides whether the fetch waits for the LAN instead of reading the sources
// after the peers (the WAN): only while some peer is ahead of it (complete, holding more,
// or leading at the start), the LAN made verified progress within Idle, and the fetch has
// waited less than MaxWait in all. A device whose upstream died is ahead of every other,
// so it goes on from the WAN at once, and the devices behind it follow it. With the WAN
// down, any peer that answered is worth waiting for within the same bounds: one that
// holds the blob may have answered late, and one behind may yet get it from another.
func (p Policy) WaitForLAN(now time.Time, w LANWait, cands []Cand, n Need) bool {
	if w.Waited >= p.MaxWait || now.Sub(w.Progress) >= p.Idle || p.Spent(n) {
		return false
	}
	counted := p.Counted(cands, n)
	if n.WANDown && len(counted) > 0 {
		return true
	}
	return slices.ContainsFunc(counted, func(c Cand) bool { return c.ahead(n) })
}

// BelowFloor reports whether a transfer from a peer runs below Floor: got verified
// bytes now, from.Bytes at from.At, at least FloorWindow ago (the caller keeps the newest
// such mark, or the transfer's start with 0 bytes).
func (p Policy) BelowFloor(now time.Time, from Mark, got int64) bool {
	d := now.Sub(from.At)
	if p.Floor <= 0 || d < p.FloorWindow {
		return false
	}
	return float64(got-from.Bytes) < p.Floor*d.Seconds()
}

// Mark is the verified bytes of a transfer at a time.
type Mark struct {
	At    time.Time
	Bytes int64
}

// Serving is one transfer a peer server runs, as Preempt judges it.
type Serving struct {
	Started time.Time
	Bytes   int64 // bytes sent so far
	// Waited is the time it waited for chunks this device had not verified yet: a
	// follower at the frontier is paced by this device's own download, not slow itself.
	Waited time.Duration
	// Known is the rate the same client reached in its last transfer from this server
	// (0: none lately): a client known to be slow is judged before Sample.
	Known float64
}

// Preempt decides, when a request finds every slot taken, which running transfer (index)
// the server ends to give its slot to the newcomer: the slowest one running below
// link/SlowFactor, judged on its own rate (time spent waiting for this device's chunks
// left out) once it ran Sample, before that on Known. link is the best rate this device
// showed (sending, or its own download); newcomer is what the asking client reached here
// lately (0: unknown): a client known to be slow takes no one's slot. A slow device so
// moves to the end of the LAN's chains, where nobody waits behind it. -1: none.
func (p Policy) Preempt(now time.Time, running []Serving, link, newcomer float64) int {
	worst := link / p.SlowFactor
	if newcomer > 0 && newcomer < worst {
		return -1
	}
	victim := -1
	for i, s := range running {
		var r float64
		switch d := now.Sub(s.Started) - s.Waited; {
		case d >= p.Sample:
			r = float64(s.Bytes) / d.Seconds()
		case s.Known > 0:
			r = s.Known
		default:
			continue
		}
		if r < worst {
			victim, worst = i, r
		}
	}
	return victim
}

// DiscoveryResends are the offsets, within one listening window, at which a discovery
// request is sent again: a lost datagram (Wi-Fi, a full neighbour table) costs a resend,
// not the answer. Each offset is jittered by up to a quarter (rnd) so devices that start
// together do not resend in step.
func DiscoveryResends(wait time.Duration, rnd *rand.Rand) []time.Duration {
	var out []time.Duration
	for d := wait / 8; d < wait*3/4; d *= 2 {
		j := d
		if rnd != nil {
			j += time.Duration(rnd.Int64N(int64(d/4) + 1))
		}
		out = append(out, j)
	}
	return out
}
