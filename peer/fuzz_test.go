package peer

import (
	"bytes"
	"crypto/x509"
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

// FuzzParseRange: the peer server's Range parser, whatever a client sends, gives a range
// within the blob or refuses it; never a panic.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"", "bytes=0-", "bytes=5-10", "bytes=-3", "bytes=10-5", "bytes=0-0,5-6", "bytes=-0", "bytes=99999999999999999999-"} {
		f.Add(s, int64(100))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 || size > manifests.MaxFileSize {
			return
		}
		start, end, _, ok := parseRange(h, size)
		if ok && size > 0 && (start < 0 || start > end || end >= size) {
			t.Fatalf("range %q of %d: %d-%d", h, size, start, end)
		}
	})
}

// FuzzResponderAnswer: whatever datagram arrives, the responder answers nothing or a
// valid answer no larger than the request; never a panic.
func FuzzResponderAnswer(f *testing.F) {
	f.Add(EncodeQuery(Query{Instance: 1, Kind: KindBlob}))
	f.Add(EncodeQuery(Query{Instance: 1, Kind: KindIndex, Serial: 3}))
	f.Add([]byte("DRPD\x01\x01"))
	st, err := OpenStore(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	r := &Responder{Server: &Server{Store: st, HTTPPort: 1}, Instance: 9}
	f.Fuzz(func(t *testing.T, b []byte) {
		out := r.Answer(b, "127.0.0.1", time.Now())
		if out == nil {
			return
		}
		if len(out) > len(b) {
			t.Fatalf("answer of %d bytes to %d", len(out), len(b))
		}
		if _, err := DecodeAnswer(out); err != nil {
			t.Fatalf("an answer that does not decode: %v", err)
		}
	})
}

// FuzzVerifyChain: whatever certificates a peer presents, a fleet device accepts only a
// chain to its CA; garbage is refused, never a panic.
func FuzzVerifyChain(f *testing.F) {
	f.Add([]byte{0x30, 0x82, 0x01, 0x00}, []byte{})
	f.Add([]byte("not a certificate"), []byte("nor this"))
	verify := verifyChain(x509.NewCertPool(), x509.ExtKeyUsageServerAuth)
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if verify([][]byte{a, b}, nil) == nil {
			t.Fatal("a chain accepted by an empty pool")
		}
	})
}
