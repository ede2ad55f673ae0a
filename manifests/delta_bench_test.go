package manifests

import (
	"bytes"
	"testing"
)

// Benchmarks of the delta encoder on inputs where many alignments are equally good (zeros,
// short periods) or none is: each should run at about the speed of the others, not
// slow down with the size (a match looked up in repetitive content once sent the encoder
// back over everything since the last switch, again and again).
func benchPair(b *testing.B, base, next []byte) {
	b.SetBytes(int64(len(next)))
	for b.Loop() {
		var d bytes.Buffer
		EncodeDelta(&d, bytes.NewReader(base), int64(len(base)), bytes.NewReader(next), int64(len(next)), 1<<20)
	}
}

func BenchmarkZeros(b *testing.B) {
	base := make([]byte, 16<<20)
	next := append(append(make([]byte, 3<<20), randData(1000, 1)...), make([]byte, 13<<20)...)
	benchPair(b, base, next)
}

func BenchmarkPeriodic(b *testing.B) {
	base := bytes.Repeat([]byte("drepo base 0123456789abcdef "), 600000)
	next := append([]byte("an insertion "), base...)
	benchPair(b, base, next)
}

func BenchmarkZeroIslands(b *testing.B) {
	r := randData(16<<20, 3)
	base := bytes.Clone(r)
	for i := 0; i < len(base); i += 1 << 20 {
		clear(base[i : i+512<<10])
	}
	next := append(randData(100, 4), base...)
	for i := 256 << 10; i < len(next); i += 1 << 20 {
		clear(next[i : i+300<<10])
	}
	benchPair(b, base, next)
}

func BenchmarkRandomToZeros(b *testing.B) {
	benchPair(b, randData(16<<20, 5), make([]byte, 16<<20))
}

func BenchmarkRandom(b *testing.B) {
	base := randData(16<<20, 6)
	next := append(randData(1000, 7), base...)
	benchPair(b, base, next)
}
