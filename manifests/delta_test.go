package manifests

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

func randData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// apply rebuilds a file from base and delta, checking every chunk against want.
func apply(t *testing.T, base, delta []byte, size, chunk int64, want []byte) ([]byte, error) {
	t.Helper()
	d, err := NewDeltaReader(bytes.NewReader(delta), bytes.NewReader(base), int64(len(base)), size, chunk)
	if err != nil {
		return nil, err
	}
	var out []byte
	for {
		i, c, err := d.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if int64(len(out)) != int64(i)*chunk {
			t.Fatalf("chunk %d out of order", i)
		}
		out = append(out, c...)
	}
}

// Deltas of generated pairs: an insertion near the start (every chunk shifted), a changed
// region, a file of new bytes. Each rebuilds the new file exactly; the first two are a small
// part of it, the third is about its size (a sync would not publish it).
func TestDeltaRoundTrip(t *testing.T) {
	const chunk = 256 << 10
	base := randData(8<<20, 1)
	insert := append(append(append([]byte{}, base[:1000]...), randData(777, 2)...), base[1000:]...)
	changed := bytes.Clone(base)
	copy(changed[3<<20:], randData(300<<10, 3))
	fresh := randData(6<<20, 4)
	// a rebuilt binary: one byte in every 64 moved on by one (an address that shifted)
	relocated := bytes.Clone(base)
	for i := 40; i < len(relocated); i += 64 {
		relocated[i]++
	}
	for name, c := range map[string]struct {
		next []byte
		most int // the delta's size at most, in bytes
	}{
		"insertion near the start": {insert, 64 << 10},
		"a changed region":         {changed, 512 << 10},
		"new bytes":                {fresh, 7 << 20},
		// 131,072 changed bytes cost about a byte each as literals; as differences along
		// the one alignment they repeat and compress to almost nothing
		"scattered small changes": {relocated, 32 << 10},
	} {
		var d bytes.Buffer
		if err := EncodeDelta(&d, bytes.NewReader(base), int64(len(base)), bytes.NewReader(c.next), int64(len(c.next)), chunk); err != nil {
			t.Fatalf("%s: encode: %v", name, err)
		}
		got, err := apply(t, base, d.Bytes(), int64(len(c.next)), chunk, c.next)
		if err != nil || !bytes.Equal(got, c.next) {
			t.Fatalf("%s: apply: %v (equal %v)", name, err, bytes.Equal(got, c.next))
		}
		if d.Len() > c.most {
			t.Errorf("%s: delta of %d bytes for a %d-byte file, want at most %d", name, d.Len(), len(c.next), c.most)
		}
		t.Logf("%s: %d bytes of delta for %d bytes (%.1f %%)", name, d.Len(), len(c.next), 100*float64(d.Len())/float64(len(c.next)))
	}
	// a delta for another base, or damaged, is refused, never a wrong chunk
	var d bytes.Buffer
	EncodeDelta(&d, bytes.NewReader(base), int64(len(base)), bytes.NewReader(changed), int64(len(changed)), chunk)
	if _, err := apply(t, base[:len(base)-1], d.Bytes(), int64(len(changed)), chunk, changed); !errors.Is(err, ErrBadDelta) {
		t.Errorf("another base: %v", err)
	}
	bad := bytes.Clone(d.Bytes())
	bad[len(bad)/2] ^= 0x40
	if got, err := apply(t, base, bad, int64(len(changed)), chunk, changed); err == nil && bytes.Equal(got, changed) {
		t.Error("a damaged delta rebuilt the file (the flip should show)")
	}
}

// A unit's operations are checked against the window and the streams before any byte is
// copied: each of these is refused, none panics.
func TestApplyAlignedRefuses(t *testing.T) {
	win := []byte("0123456789")
	op := func(v ...int64) []byte {
		var b []byte
		for i, x := range v {
			if i%4 == 3 {
				b = binary.AppendVarint(b, x)
			} else {
				b = binary.AppendUvarint(b, uint64(x))
			}
		}
		return b
	}
	for name, c := range map[string]struct {
		ops, diff, ext []byte
		want           int
	}{
		"a copy beyond the window":       {op(8, 0, 0, 5), nil, nil, 8},
		"a copy before the window":       {op(2, 0, 0, -1), nil, nil, 2},
		"more diff than the stream has":  {op(0, 3, 0, 0), []byte{1}, nil, 3},
		"more extra than the stream has": {op(0, 0, 4, 0), nil, []byte("ab"), 4},
		"more bytes than the unit":       {op(5, 0, 0, 0), nil, nil, 4},
		"fewer bytes than the unit":      {op(3, 0, 0, 0), nil, nil, 4},
		"diff bytes left over":           {op(2, 0, 0, 0), []byte{1}, nil, 2},
		"a cut operation":                {op(2, 0)[:2], nil, nil, 2},
		"an offset far out":              {op(1, 0, 0, 1<<40), nil, nil, 1},
	} {
		if _, err := applyAligned(win, c.ops, c.diff, c.ext, c.want, nil); !errors.Is(err, ErrBadDelta) {
			t.Errorf("%s: %v, want ErrBadDelta", name, err)
		}
	}
	// copy "34" from 3, add 3 to "5", insert "xy", then copy "0" from the window's start
	out, err := applyAligned(win, op(2, 1, 2, 3, 1, 0, 0, -6), []byte{3}, []byte("xy"), 6, nil)
	if err != nil || string(out) != "348xy0" {
		t.Errorf("good ops: %q %v", out, err)
	}
}
