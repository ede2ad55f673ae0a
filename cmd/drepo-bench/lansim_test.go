package main

import (
	"testing"
	"time"

	"github.com/drepo-dev/drepo/peer"
)

// hand is a LAN whose times can be computed by hand: no discovery time, no hop delay, no
// settle; every link B, the repository B too.
func hand(n int) SimConfig {
	return SimConfig{N: n, Size: 64 << 20, Chunk: 4 << 20, LAN: 12.5e6, Repo: 12.5e6, Step: time.Millisecond, Policy: peer.DefaultPolicy}
}

func near(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	if d := got - want; d < -20*time.Millisecond || d > 20*time.Millisecond {
		t.Fatalf("%s: %v, by hand %v", what, got, want)
	}
}

// One device: S/B. Two: the second follows the first one chunk behind, S/B + C/B. Three
// in a chain (limit 1): S/B + 2·C/B; the repository sends the blob once.
func TestSimulatorSmallCasesByHand(t *testing.T) {
	c := hand(1)
	sb := time.Duration(float64(c.Size) / c.LAN * float64(time.Second))
	cb := time.Duration(float64(c.Chunk) / c.LAN * float64(time.Second))
	for n, want := range map[int]time.Duration{1: sb, 2: sb + cb, 3: sb + 2*cb} {
		c := hand(n)
		r := Simulate(c)
		near(t, "all hold it", r.All, want)
		if r.RepoBytes < float64(c.Size)*0.999 || r.RepoBytes > float64(c.Size)*1.001 {
			t.Fatalf("N=%d: the repository sent %.0f bytes, want the blob once (%d)", n, r.RepoBytes, c.Size)
		}
	}
	// every device from the repository: N copies over the repository's one link
	c = hand(3)
	c.NoPeers = true
	r := Simulate(c)
	near(t, "repository only", r.All, 3*sb)
}

// A slow device does not slow the fast ones: with preemption it ends up last in the chain.
func TestSimulatorSlowDeviceGoesLast(t *testing.T) {
	c := hand(6)
	c.Size = 256 << 20
	c.Rates = map[int]float64{2: 1.25e6}
	r := Simulate(c)
	alone := time.Duration(float64(c.Size) / c.LAN * float64(time.Second))
	for i, f := range r.Finish {
		if i != 2 && f > alone*3/2 {
			t.Fatalf("fast device %d took %v, alone %v: held back by the slow one (%+v)", i, f, alone, r)
		}
	}
	if r.RepoBytes > float64(c.Size)*1.1 {
		t.Fatalf("the repository sent %.2f× the blob", r.RepoBytes/float64(c.Size))
	}
}

// The leader dies at 30 %: every survivor completes, and the repository sends little
// more than the blob (the next device resumes the WAN read, the others follow it).
func TestSimulatorLeaderDies(t *testing.T) {
	c := hand(6)
	c.Size = 256 << 20
	c.Die = map[int]float64{0: 0.3}
	r := Simulate(c)
	alone := time.Duration(float64(c.Size) / c.LAN * float64(time.Second))
	for i, f := range r.Finish {
		if i != 0 && (f < 0 || f > 2*alone) {
			t.Fatalf("survivor %d: %v, alone %v", i, f, alone)
		}
	}
	if r.RepoBytes > float64(c.Size)*1.5 {
		t.Fatalf("the repository sent %.2f× the blob", r.RepoBytes/float64(c.Size))
	}
}
