package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/drepo-dev/drepo/peer"
)

// The LAN simulator (drepo-bench lan-sim): N devices fetch one blob at once from a
// repository and from each other, every decision taken by peer.Policy, the very code a
// device runs, on a virtual clock. The network is a fluid model: a transfer runs at the
// lesser of the sender's share of its link (its uploads split it; the repository's link
// is split among its downloads) and the receiver's link; a follower receives only what
// its sender has verified (whole chunks), and a verified chunk becomes visible to the
// sender's server HopDelay later (the state file written, then polled). A device serves
// at most Limit transfers. What it leaves out: TCP's start-up, request round trips,
// disks and CPUs.

// SimConfig is one simulated LAN.
type SimConfig struct {
	N        int
	Size     int64   // the blob
	Chunk    int64   // chunk size
	LAN      float64 // every device's link, bytes per second, both ways
	Repo     float64 // the repository's link
	Rates    map[int]float64
	Arrive   map[int]time.Duration
	Die      map[int]float64 // device → the share of the blob it holds when it dies (fetch and server)
	Limit    int             // limit_of_connections
	Lost     int             // discovery datagrams lost at each device's start
	HopDelay time.Duration
	Settle   time.Duration
	Wait     time.Duration // a discovery round (listening time): a decision takes effect this much later
	Step     time.Duration
	Seed     uint64
	Policy   peer.Policy
	// Repository only: devices never use peers (the all-from-repository reference).
	NoPeers bool
	Stop    time.Duration // the simulation stops here (0: 1 hour)
}

// SimResult is what a simulation gives.
type SimResult struct {
	All       time.Duration   // until every device that lived held the blob
	Finish    []time.Duration // per device (-1: died)
	RepoBytes float64
	Preempted int
	Left      int
}

type simDev struct {
	i      int
	id     uint64
	rate   float64
	arrive time.Duration
	die    float64 // share at which it dies (0: never)

	recv       float64 // bytes received in order
	have       int64   // verified (whole chunks)
	verifiedAt []time.Duration
	vis        int // chunks visible to its server
	done       time.Duration
	dead       bool

	src       int // -1 none, -2 repository, else a device
	startAt   time.Duration
	tStart    time.Duration
	tHave     int64
	uploads   []int // devices it serves
	serveAt   map[int]time.Duration
	sentTo    map[int]float64
	waited    map[int]time.Duration // per client: time its transfer waited for this device's chunks
	decideAt  time.Duration
	settled   bool
	wait      peer.LANWait
	lastHave  int64
	prefer    []peer.Cand
	leftRate  float64 // the rate of the transfer it last left (0: none pending)
	fruitless int
	known     map[int]float64 // as a server: the rate each client reached lately
	lost      int
	rates     map[uint64]float64

	growth    float64
	measured  bool
	gHave     int64
	gAt       time.Duration
	link      float64
	hasStored bool // it has announced the blob (a partial state exists)
}

// growthWindow is how long a device's growth is measured over, as a fetch sees it.
const growthWindow = 2 * time.Second

const (
	simNone = -1
	simRepo = -2
)

// Simulate runs one LAN to the end.
func Simulate(c SimConfig) SimResult {
	if c.Step <= 0 {
		c.Step = 5 * time.Millisecond
	}
	if c.Limit == 0 {
		c.Limit = 1
	}
	if c.Stop == 0 {
		c.Stop = time.Hour
	}
	rnd := rand.New(rand.NewPCG(c.Seed, 7))
	chunks := int((c.Size + c.Chunk - 1) / c.Chunk)
	devs := make([]*simDev, c.N)
	for i := range devs {
		d := &simDev{i: i, id: uint64(i + 1), rate: c.LAN, arrive: c.Arrive[i], die: c.Die[i], src: simNone, done: -1,
			verifiedAt: make([]time.Duration, chunks), serveAt: map[int]time.Duration{}, sentTo: map[int]float64{}, waited: map[int]time.Duration{}, rates: map[uint64]float64{}, known: map[int]float64{}}
		if r, ok := c.Rates[i]; ok {
			d.rate = r
		}
		d.decideAt = d.arrive
		devs[i] = d
	}
	res := SimResult{Finish: make([]time.Duration, c.N)}
	resends := len(peer.DiscoveryResends(c.Wait, nil)) + 1
	stopTransfer := func(d *simDev, now time.Duration) {
		if d.src >= 0 {
			s := devs[d.src]
			s.uploads = slices.DeleteFunc(s.uploads, func(x int) bool { return x == d.i })
			if el := now - d.tStart; el >= time.Second {
				d.rates[s.id] = float64(d.have-d.tHave) / el.Seconds()
			}
			if el := now - s.serveAt[d.i] - s.waited[d.i]; el >= time.Second {
				s.known[d.i] = s.sentTo[d.i] / el.Seconds()
			}
		}
		d.src = simNone
		d.decideAt = now
	}
	start := func(d *simDev, src int, now time.Duration) {
		d.src, d.startAt, d.tStart, d.tHave = src, now+c.Wait, now, d.have
		d.hasStored = true
		if src >= 0 {
			s := devs[src]
			s.uploads = append(s.uploads, d.i)
			s.serveAt[d.i] = now
			s.sentTo[d.i] = 0
			s.waited[d.i] = 0
		}
	}
	t0 := time.Unix(0, 0)
	at := func(v time.Duration) time.Time { return t0.Add(v) }
	// cands is what discovery tells d: every other live device that announced the blob.
	// One snapshot per step serves every decision of the step (d's own measurements are
	// patched in and out): a 1000-device LAN runs in seconds.
	snap := make([]peer.Cand, c.N)
	snapAt := time.Duration(-1)
	var patched []int
	cands := func(d *simDev, now time.Duration) []peer.Cand {
		if snapAt != now {
			snapAt, patched = now, patched[:0]
			for i, o := range devs {
				held := int64(o.vis) * c.Chunk
				if o.done >= 0 {
					held = c.Size
				}
				snap[i] = peer.Cand{ID: o.id, Complete: o.done >= 0, Held: min(held, c.Size), Free: len(o.uploads) < c.Limit,
					Growth: o.growth, Measured: o.measured, Banned: o.dead || !o.hasStored}
			}
		}
		// d's view: itself left out, its measurements in; undone by the next call
		for _, i := range patched {
			snap[i].Rate = 0
			snap[i].Banned = devs[i].dead || !devs[i].hasStored
		}
		patched = append(patched[:0], d.i)
		snap[d.i].Banned = true
		for id, r := range d.rates {
			snap[id-1].Rate = r
			patched = append(patched, int(id-1))
		}
		return snap
	}
	alive := func() (n, done int) {
		for _, d := range devs {
			if !d.dead {
				n++
				if d.done >= 0 {
					done++
				}
			}
		}
		return
	}
	var now time.Duration
	for ; now < c.Stop; now += c.Step {
		// transfers move
		nRepo := 0
		for _, d := range devs {
			if d.src == simRepo && now >= d.startAt {
				nRepo++
			}
		}
		for _, d := range devs {
			if d.dead || d.src == simNone || now < d.startAt {
				continue
			}
			var capSrc, limit float64
			if d.src == simRepo {
				capSrc, limit = c.Repo/float64(nRepo), float64(c.Size)
			} else {
				s := devs[d.src]
				capSrc = s.rate / float64(len(s.uploads))
				limit = float64(c.Size)
				if s.done < 0 {
					limit = float64(int64(s.vis) * c.Chunk)
				}
			}
			amt := min(capSrc, d.rate) * c.Step.Seconds()
			got := max(min(d.recv+amt, limit)-d.recv, 0)
			d.recv += got
			if d.src == simRepo {
				res.RepoBytes += got
			} else {
				s := devs[d.src]
				s.sentTo[d.i] += got
				if amt > 0 && got < amt {
					s.waited[d.i] += time.Duration(float64(c.Step) * (1 - got/amt))
				}
			}
		}
		// chunks verified, made visible, deaths, completions
		for _, d := range devs {
			if d.dead {
				continue
			}
			h := int64(d.recv) / c.Chunk * c.Chunk
			if d.recv >= float64(c.Size)-0.5 {
				h = c.Size
			}
			for k := int(d.have / c.Chunk); k < chunks && min(int64(k+1)*c.Chunk, c.Size) <= h; k++ {
				d.verifiedAt[k] = now
			}
			d.have = h
			for d.vis < chunks && int64(d.vis)*c.Chunk < d.have && d.verifiedAt[d.vis]+c.HopDelay <= now {
				d.vis++
			}
			if now-d.gAt >= growthWindow {
				d.growth = float64(d.have-d.gHave) / (now - d.gAt).Seconds()
				d.measured = d.gAt >= d.arrive && d.hasStored
				d.link = max(d.link, d.growth)
				d.gHave, d.gAt = d.have, now
			}
			if d.die > 0 && float64(d.have) >= d.die*float64(c.Size) {
				d.dead = true
				stopTransfer(d, now)
				for _, f := range slices.Clone(d.uploads) {
					stopTransfer(devs[f], now)
				}
				d.uploads = nil
				res.Finish[d.i] = -1
				continue
			}
			if d.have == c.Size && d.done < 0 {
				d.done = now
				res.Finish[d.i] = now
				if d.src >= 0 {
					stopTransfer(d, now)
				}
				d.src = simNone
			}
		}
		n, done := alive()
		if n == done {
			break
		}
		// decisions
		for _, d := range devs {
			if d.dead || d.done >= 0 || now < d.decideAt {
				continue
			}
			need := peer.Need{Self: d.id, Have: d.have, Chunk: c.Chunk}
			d.hasStored = true // the fetch opened the partial blob: its server announces it
			if c.NoPeers {
				if d.src == simNone {
					start(d, simRepo, now)
				}
				d.decideAt = c.Stop
				continue
			}
			if d.src != simNone {
				// a transfer runs: the policy may leave it for a much faster peer
				d.decideAt = now + time.Second
				var srcID uint64
				if d.src >= 0 {
					srcID = devs[d.src].id
				}
				tr := peer.Transfer{Source: srcID, Started: at(d.tStart), Bytes: d.have - d.tHave}
				if d.leftRate > 0 && now-d.tStart >= c.Policy.Sample {
					if peer.Fruitful(d.leftRate, tr.Rate(at(now))) {
						d.fruitless = 0
					} else {
						d.fruitless++
					}
					d.leftRate = 0
				}
				need.Fruitless = d.fruitless
				// make before break: the peers Leave names are asked first (a probe: a free
				// slot, or a slow transfer its server would cut), the transfer goes on if none
				var to []peer.Cand
				for _, x := range c.Policy.Leave(at(now), tr, cands(d, now), need) {
					if x.Free || simPreempt(c, devs[x.ID-1], d.i, now, at) >= 0 {
						to = append(to, x)
					}
				}
				if to == nil {
					continue
				}
				res.Left++
				d.prefer = to
				d.leftRate = tr.Rate(at(now))
				stopTransfer(d, now)
			}
			// a discovery round: lost while the datagrams of the start are
			if d.lost < c.Lost {
				d.lost += resends
				if d.lost <= c.Lost {
					d.decideAt = now + c.Wait
					continue
				}
			}
			cs := cands(d, now)
			ahead := slices.ContainsFunc(cs, func(x peer.Cand) bool {
				return !x.Banned && (x.Complete || x.Held > d.have || (x.Held == d.have && x.ID < d.id && (d.have == 0 || x.Free)))
			})
			if !d.settled && d.have == 0 && c.Settle > 0 && !ahead {
				// nobody ahead answered: ask again after a random wait (peer.lanSources)
				d.settled = true
				d.decideAt = now + c.Wait + time.Duration(rnd.Int64N(int64(c.Settle)))
				continue
			}
			ranked := c.Policy.Rank(cs, need, rnd)
			if d.prefer != nil {
				var first []peer.Cand
				for _, p := range d.prefer {
					for _, x := range cs {
						if x.ID == p.ID {
							first = append(first, x)
						}
					}
				}
				ranked = append(first, ranked...)
				d.prefer = nil
			}
			started := false
			for _, x := range ranked {
				s := devs[x.ID-1]
				if len(s.uploads) >= c.Limit {
					v := simPreempt(c, s, d.i, now, at)
					if v < 0 {
						continue
					}
					res.Preempted++
					stopTransfer(devs[s.uploads[v]], now)
				}
				start(d, s.i, now)
				started = true
				break
			}
			if started {
				d.decideAt = now + c.Wait
				continue
			}
			d.wait = d.wait.Observe(at(now), d.have > d.lastHave, cs, need)
			d.lastHave = d.have
			if c.Policy.WaitForLAN(at(now), d.wait, cs, need) {
				w := 200*time.Millisecond + time.Duration(rnd.Int64N(int64(200*time.Millisecond)))
				d.wait.Waited += w
				d.decideAt = now + w + c.Wait
				continue
			}
			start(d, simRepo, now)
			d.decideAt = now + c.Wait
		}
	}
	res.All = now
	return res
}

// SimBound is the design's floor for one blob over a LAN: the repository's read plus
// ⌊log2 N⌋ chunk hops (a tree that doubles each hop).
func SimBound(c SimConfig) time.Duration {
	s := float64(c.Size)/c.Repo + math.Floor(math.Log2(float64(c.N)))*float64(c.Chunk)/c.LAN
	return time.Duration(s * float64(time.Second))
}

// simPreempt is Policy.Preempt on server s's running transfers.
func simPreempt(c SimConfig, s *simDev, asker int, now time.Duration, at func(time.Duration) time.Time) int {
	if len(s.uploads) < c.Limit {
		return -1
	}
	var views []peer.Serving
	for _, f := range s.uploads {
		views = append(views, peer.Serving{Started: at(s.serveAt[f]), Bytes: int64(s.sentTo[f]), Waited: s.waited[f], Known: s.known[f]})
	}
	return c.Policy.Preempt(at(now), views, s.link, s.known[asker])
}
