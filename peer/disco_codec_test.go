package peer

import (
	"bytes"
	"testing"

	"github.com/drepo-dev/drepo/manifests"
)

func TestDiscoveryCodec(t *testing.T) {
	h := manifests.SumBytes([]byte("x"))
	for _, q := range []Query{{Instance: 7, Kind: KindBlob, Blob: h}, {Instance: 1 << 60, Kind: KindIndex, Serial: 42}} {
		b := EncodeQuery(q)
		if len(b) != RequestSize {
			t.Fatalf("request of %d bytes", len(b))
		}
		got, err := DecodeQuery(b)
		if err != nil || got != q {
			t.Fatalf("round trip %+v: %+v %v", q, got, err)
		}
	}
	for _, a := range []Answer{
		{Instance: 9, Kind: KindBlob, Blob: h, HTTPPort: 22335, HTTPSPort: 22337, Complete: true, Held: 1 << 31, FreeSlots: 1},
		{Instance: 9, Kind: KindIndex, Serial: 50, HTTPPort: 22335},
	} {
		b := EncodeAnswer(a)
		if len(b) > RequestSize {
			t.Fatalf("an answer of %d bytes is larger than a request of %d", len(b), RequestSize)
		}
		got, err := DecodeAnswer(b)
		if err != nil || got != a {
			t.Fatalf("round trip %+v: %+v %v", a, got, err)
		}
	}
	good := EncodeQuery(Query{Instance: 1, Kind: KindBlob, Blob: h})
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for name, b := range map[string][]byte{
		"empty":         nil,
		"short":         good[:40],
		"long":          append(bytes.Clone(good), 0),
		"oversized":     make([]byte, 2000),
		"bad magic":     mutate(func(b []byte) []byte { b[0] = 'X'; return b }),
		"version 2":     mutate(func(b []byte) []byte { b[4] = 2; return b }),
		"answer type":   mutate(func(b []byte) []byte { b[5] = typeAnswer; return b }),
		"unknown kind":  mutate(func(b []byte) []byte { b[14] = 9; return b }),
		"padding":       mutate(func(b []byte) []byte { b[63] = 1; return b }),
		"index garbage": mutate(func(b []byte) []byte { b[14] = KindIndex; return b }), // hash bytes where zeros belong
	} {
		if _, err := DecodeQuery(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ans := EncodeAnswer(Answer{Kind: KindBlob, HTTPPort: 1})
	for name, b := range map[string][]byte{
		"no http port": EncodeAnswer(Answer{Kind: KindBlob}),
		"bad flags":    func() []byte { c := bytes.Clone(ans); c[51] = 0x80; return c }(),
		"huge held":    func() []byte { c := bytes.Clone(ans); c[52] = 0xff; return c }(),
		"a request":    good,
	} {
		if _, err := DecodeAnswer(b); err == nil {
			t.Errorf("answer %s: accepted", name)
		}
	}
}

// FuzzDiscoveryDatagram: any datagram decodes to a message that encodes back to the same
// bytes, or is refused; an answer is never larger than a request.
func FuzzDiscoveryDatagram(f *testing.F) {
	f.Add(EncodeQuery(Query{Instance: 3, Kind: KindBlob, Blob: manifests.SumBytes(nil)}))
	f.Add(EncodeQuery(Query{Instance: 3, Kind: KindIndex, Serial: 8}))
	f.Add(EncodeAnswer(Answer{Instance: 3, Kind: KindBlob, HTTPPort: 22335, Complete: true, Held: 12, FreeSlots: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if q, err := DecodeQuery(b); err == nil && !bytes.Equal(EncodeQuery(q), b) {
			t.Fatalf("query %+v does not encode back", q)
		}
		if a, err := DecodeAnswer(b); err == nil {
			if enc := EncodeAnswer(a); !bytes.Equal(enc, b) || len(enc) > RequestSize {
				t.Fatalf("answer %+v does not encode back, or is larger than a request", a)
			}
		}
	})
}
