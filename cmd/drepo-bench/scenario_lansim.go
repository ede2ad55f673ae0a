package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/drepo-dev/drepo/peer"
)

// lanSimScenario runs the LAN simulator (lansim.go): the namespace bench's cases at N=16,
// to hold it against that bench, and N=1000 against the design's bound. Each row's time
// is the simulator's own run time; its note gives the simulated times.
func lanSimScenario() Scenario {
	return Scenario{
		Name: "lan-sim",
		Doc:  "the LAN simulator (peer.Policy on a virtual clock): N=16 as the lan bench, N=1000 4 GB against the bound",
		Setup: func(ctx context.Context, env *Env) (*Prepared, error) {
			seed := uint64(1)
			if v, err := strconv.ParseUint(os.Getenv("DREPO_BENCH_SEED"), 10, 64); err == nil {
				seed = v
			}
			hop := simHopDelay
			if v, err := time.ParseDuration(os.Getenv("DREPO_BENCH_HOP")); err == nil && v >= 0 {
				hop = v // e.g. 30ms: a device with a disk of its own
			}
			var cmds []Command
			for _, c := range simCases(seed, hop) {
				cmds = append(cmds, Command{Name: c.name, Run: func(context.Context) (string, error) { return c.run(), nil }})
			}
			return &Prepared{Note: fmt.Sprintf("virtual clock, seed %d; fluid links, hop delay %v", seed, hop), Commands: cmds, NoWarmup: true}, nil
		},
	}
}

// simHopDelay is how long a verified chunk takes to reach the device's own server beyond
// its wire time: the state written after an fsync, polled every 10 ms. Measured in the lan
// bench (16 devices on one 2-core VM and one disk, 1 MiB chunks): the last device ends
// 3.5 s after the leader, 0.23 s a hop, of which 0.08 s is the wire.
const simHopDelay = 150 * time.Millisecond

// simDefaults is a device as drepo fetch runs it: discovery listens 250 ms, the first
// starter settles up to 500 ms, the default policy.
func simDefaults(c SimConfig, hop time.Duration) SimConfig {
	c.Wait, c.Settle, c.HopDelay, c.Policy = 250*time.Millisecond, 500*time.Millisecond, hop, peer.DefaultPolicy
	if c.Chunk == 0 {
		c.Chunk = 1 << 20
	}
	return c
}

type simCase struct {
	name string
	cfg  SimConfig
}

const mbitps = 1e6 / 8

func simCases(seed uint64, hop time.Duration) []simCase {
	lan16 := func(mod func(*SimConfig)) SimConfig {
		c := simDefaults(SimConfig{N: 16, Size: 256 << 20, LAN: 100 * mbitps, Repo: 100 * mbitps, Seed: seed}, hop)
		if mod != nil {
			mod(&c)
		}
		return c
	}
	big := func(mod func(*SimConfig)) SimConfig {
		c := simDefaults(SimConfig{N: 1000, Size: 4e9, LAN: 1000 * mbitps, Repo: 100 * mbitps, Seed: seed, Step: 10 * time.Millisecond}, hop)
		if mod != nil {
			mod(&c)
		}
		return c
	}
	rnd := rand.New(rand.NewPCG(seed, 99))
	return []simCase{
		{"N=16 alone", lan16(func(c *SimConfig) { c.N = 1 })},
		{"N=16 stream", lan16(nil)},
		{"N=16 slow", lan16(func(c *SimConfig) { c.Rates = map[int]float64{13: 10 * mbitps} })},
		{"N=16 kill-leader", lan16(func(c *SimConfig) { c.Die = map[int]float64{0: 0.3} })},
		{"N=16 lossy", lan16(func(c *SimConfig) { c.Lost = 2 })},
		{"N=1000 uniform", big(nil)},
		{"N=1000 5% slow, 2% die", big(func(c *SimConfig) {
			c.Rates, c.Die = map[int]float64{}, map[int]float64{}
			for _, i := range rnd.Perm(c.N)[:50] {
				c.Rates[i] = 10 * mbitps
			}
			for _, i := range rnd.Perm(c.N)[:20] {
				c.Die[i] = 0.05 + 0.9*rnd.Float64()
			}
		})},
	}
}

// run simulates the case and describes it: all done, the slowest fast device, the bound,
// the repository's bytes.
func (s simCase) run() string {
	c := s.cfg
	r := Simulate(c)
	alone := time.Duration(float64(c.Size) / min(c.Repo, c.LAN) * float64(time.Second))
	var fast []time.Duration
	for i, f := range r.Finish {
		if _, slow := c.Rates[i]; !slow && f >= 0 {
			fast = append(fast, f)
		}
	}
	slowest := slices.Max(fast)
	bound := SimBound(c)
	return fmt.Sprintf("all hold it at %.1f s; fast devices by %.1f s = %.2f× alone (%.1f s), %.2f× the bound (%.1f s); repository %.2f× the blob; %d left a slow source, %d preempted",
		r.All.Seconds(), slowest.Seconds(), slowest.Seconds()/alone.Seconds(), alone.Seconds(), slowest.Seconds()/bound.Seconds(), bound.Seconds(),
		r.RepoBytes/float64(c.Size), r.Left, r.Preempted)
}
