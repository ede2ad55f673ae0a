package mirror

import (
	"testing"
)

func FuzzDecodeCache(f *testing.F) {
	f.Add(encodeCache(map[string]cacheEntry{"/src/a": {Size: 3, MtimeNs: 5, Inode: 7, ChunkSize: 1 << 20}}))
	f.Add([]byte(cacheMagic + "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeCache(b)
		if err != nil {
			return
		}
		// whatever decodes, re-encodes to something that decodes the same
		m2, err := decodeCache(encodeCache(m))
		if err != nil || len(m2) != len(m) {
			t.Fatalf("round trip: %v (%d vs %d entries)", err, len(m2), len(m))
		}
	})
}
