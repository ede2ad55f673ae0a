package peer

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
)

// FuzzDecodePartialState: the store's partial-blob state either decodes to something
// within bounds that encodes back to the same bytes, or is refused; never a panic.
func FuzzDecodePartialState(f *testing.F) {
	st, _ := NewPartialState(10*manifests.MinChunkSize+5, manifests.MinChunkSize)
	st.Set(0)
	st.Set(10)
	f.Add(st.Encode())
	f.Add([]byte("DRPP\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePartialState(b)
		if err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("refused without ErrBadState: %v", err)
			}
			return
		}
		if !bytes.Equal(p.Encode(), b) {
			t.Fatal("decoded state does not encode back to its bytes")
		}
		if p.Count() > p.Chunks() || p.VerifiedBytes() > p.Size || p.VerifiedPrefix() > p.VerifiedBytes() {
			t.Fatalf("state out of bounds: %+v", p)
		}
	})
}

// FuzzTrustAccept: whatever the stored trust state and the index bytes, Accept never
// panics, never accepts an index its signature does not cover, never lowers a key's serial,
// and never accepts another index at an accepted serial.
func FuzzTrustAccept(f *testing.F) {
	sec, pubBytes, err := manifests.GenerateKey()
	if err != nil {
		f.Fatal(err)
	}
	var key minisign.PrivateKey
	var pub minisign.PublicKey
	if err := key.UnmarshalText(sec); err != nil {
		f.Fatal(err)
	}
	if err := pub.UnmarshalText(pubBytes); err != nil {
		f.Fatal(err)
	}
	good, _ := (&manifests.Index{Serial: 3, Created: time.Unix(1.7e9, 0)}).Encode()
	f.Add([]byte(`{"schema":"drepo.device-trust/v1","keys":{},"newest_created":"2026-01-01T00:00:00Z"}`), good, true)
	f.Add([]byte(nil), []byte(`{"schema":"drepo.index/v1","serial":1,"created":"2026-01-01T00:00:00Z","apps":[]}`), false)
	f.Fuzz(func(t *testing.T, state, doc []byte, sign bool) {
		st, err := DecodeTrustState(state)
		if err != nil {
			return
		}
		var sig []byte
		if sign {
			sig = manifests.Sign(key, doc, time.Unix(1.7e9, 0))
		} else {
			sig = manifests.Sign(key, append(bytes.Clone(doc), 'x'), time.Unix(1.7e9, 0))
		}
		x, next, err := st.Accept([]minisign.PublicKey{pub}, false, doc, sig, time.Unix(1.7e9, 0))
		if err != nil {
			return
		}
		if !sign {
			t.Fatal("accepted an index under a signature of other bytes")
		}
		id := ""
		for k := range next.Keys {
			if _, had := st.Keys[k]; !had || next.Keys[k] != st.Keys[k] {
				id = k
			}
		}
		prev, had := st.Keys[id]
		if had && (x.Serial < prev.Serial || (x.Serial == prev.Serial && manifests.SumBytes(doc) != prev.Index)) {
			t.Fatalf("accepted serial %d over %+v", x.Serial, prev)
		}
		if again, err := DecodeTrustState(next.Encode()); err != nil || len(again.Keys) != len(next.Keys) {
			t.Fatalf("the new state does not round-trip: %v", err)
		}
	})
}
