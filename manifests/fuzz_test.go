package manifests

import (
	"bytes"
	"errors"
	"io"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// Seeds beyond the committed corpus in testdata/fuzz/.
func FuzzDecodeIndex(f *testing.F) {
	good, _ := sampleIndex().Encode()
	f.Add(good)
	f.Add([]byte(`{"schema":"drepo.index/v1","serial":1,"created":"2026-01-01T00:00:00Z","apps":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := DecodeIndex(b)
		if err != nil {
			return
		}
		// anything accepted re-encodes canonically and decodes to the same document
		enc, err := x.Encode()
		if err != nil {
			t.Fatalf("accepted index does not encode: %v", err)
		}
		y, err := DecodeIndex(enc)
		if err != nil {
			t.Fatalf("canonical form refused: %v", err)
		}
		enc2, _ := y.Encode()
		if !bytes.Equal(enc, enc2) {
			t.Fatal("canonical encoding is not stable")
		}
	})
}

func FuzzDecodeManifest(f *testing.F) {
	good, _ := sampleManifest().Encode()
	f.Add(good)
	withDelta := sampleManifest()
	withDelta.Files[2].Deltas = []Delta{{From: SumBytes([]byte("old")), FromSize: 9, Blob: SumBytes([]byte("d")), Size: 3, Chunks: []Hash{SumBytes([]byte("d"))}}}
	withDelta.Files[2].Packed = &Packed{Blob: SumBytes([]byte("p")), Frames: []int64{100, 7}}
	v2, _ := withDelta.Encode()
	f.Add(v2)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil {
			return
		}
		for _, fl := range m.Files {
			if ValidatePath(fl.Path) != nil || int64(len(fl.Chunks)) != NumChunks(fl.Size, m.ChunkSize) || len(fl.Deltas) > MaxDeltas ||
				(len(fl.Deltas) > 0 && m.Schema != ManifestSchemaDeltas) {
				t.Fatalf("accepted manifest breaks a rule: %+v", fl)
			}
			for _, d := range fl.Deltas {
				if int64(len(d.Chunks)) != NumChunks(d.Size, m.ChunkSize) {
					t.Fatalf("accepted a delta whose chunk hashes do not fit its size: %+v", d)
				}
			}
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("accepted manifest does not encode: %v", err)
		}
		m2, err := DecodeManifest(enc)
		if err != nil {
			t.Fatalf("canonical form refused: %v", err)
		}
		if enc2, _ := m2.Encode(); !bytes.Equal(enc, enc2) {
			t.Fatal("canonical encoding is not stable")
		}
	})
}

func FuzzValidatePath(f *testing.F) {
	for _, s := range []string{"a", "a/b", "../x", "a/../../b", "/abs", "a\\b", "%2e%2e/x", "a\x00", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if ValidatePath(p) != nil {
			return
		}
		// a valid path is clean and, joined to any root, stays strictly inside it
		if path.Clean(p) != p || path.IsAbs(p) || strings.Contains(p, "\\") {
			t.Fatalf("accepted unclean path %q", p)
		}
		root := "/srv/root"
		j := filepath.Join(root, filepath.FromSlash(p))
		if !strings.HasPrefix(j, root+"/") {
			t.Fatalf("accepted path %q escapes to %q", p, j)
		}
	})
}

// FuzzPrintable: whatever a server sends, Printable's result holds no control character
// and no invalid UTF-8, and text that had none comes back unchanged.
func FuzzPrintable(f *testing.F) {
	f.Add("plain")
	f.Add("\x1b[2J\x1b[Hfake\r\n")
	f.Add("\xff\xfe\u202e\u0085")
	f.Fuzz(func(t *testing.T, s string) {
		out := Printable(s)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 out of %q: %q", s, out)
		}
		for _, r := range out {
			if unprintable(r) {
				t.Fatalf("control character %U left in %q", r, out)
			}
		}
		clean := utf8.ValidString(s)
		for _, r := range s {
			clean = clean && !unprintable(r)
		}
		if clean && out != s {
			t.Fatalf("clean %q changed to %q", s, out)
		}
	})
}

// FuzzDeltaReader: whatever bytes claim to be a delta, the reader refuses them or rebuilds
// chunks of the stated size; it never panics, never reads the base out of bounds, and
// never holds more than a window and a frame.
func FuzzDeltaReader(f *testing.F) {
	base := bytes.Repeat([]byte("drepo base "), 20000)
	next := append([]byte("an insertion "), base...)
	var d bytes.Buffer
	if err := EncodeDelta(&d, bytes.NewReader(base), int64(len(base)), bytes.NewReader(next), int64(len(next)), MinChunkSize); err != nil {
		f.Fatal(err)
	}
	f.Add(d.Bytes())
	f.Add([]byte("DRPX\x01"))
	f.Add([]byte("DRPX\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dr, err := NewDeltaReader(bytes.NewReader(b), bytes.NewReader(base), int64(len(base)), int64(len(next)), MinChunkSize)
		if err != nil {
			return
		}
		defer dr.Close()
		for range 8 {
			i, c, err := dr.Next()
			if err != nil {
				return
			}
			if want := min(int64(MinChunkSize), int64(len(next))-int64(i)*MinChunkSize); int64(len(c)) != want {
				t.Fatalf("chunk %d of %d bytes, want %d", i, len(c), want)
			}
		}
	})
}

// FuzzApplyAligned: whatever a unit's operations and streams say, applying them rebuilds
// exactly the unit's size or is refused; never a panic, never a read outside the window.
func FuzzApplyAligned(f *testing.F) {
	win := bytes.Repeat([]byte("window "), 100)
	f.Add([]byte{10, 2, 3, 0}, []byte{1, 2}, []byte("abc"), 15)
	f.Add([]byte{0, 0, 5, 0x7f}, []byte{}, []byte("hello"), 5)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, []byte{}, []byte{}, 1)
	f.Fuzz(func(t *testing.T, ops, diff, ext []byte, want int) {
		if want < 0 || want > 1<<16 {
			return
		}
		out, err := applyAligned(win, ops, diff, ext, want, nil)
		if err == nil && len(out) != want {
			t.Fatalf("rebuilt %d bytes, want %d", len(out), want)
		}
		if err != nil && !errors.Is(err, ErrBadDelta) {
			t.Fatalf("not ErrBadDelta: %v", err)
		}
	})
}

// FuzzUnpack: whatever a repository sends as a packed chunk's frame, it decompresses to
// the chunk's size or is refused; never a panic, never more than the chunk.
func FuzzUnpack(f *testing.F) {
	var b bytes.Buffer
	frames, _ := Pack(&b, bytes.NewReader(bytes.Repeat([]byte("chunk "), 30000)), 180000, MinChunkSize)
	f.Add(b.Bytes()[:frames[0]])
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd})
	u, err := NewUnpacker(MinChunkSize)
	if err != nil {
		f.Fatal(err)
	}
	out := make([]byte, MinChunkSize)
	f.Fuzz(func(t *testing.T, frame []byte) {
		c, err := u.Chunk(out, frame, MinChunkSize)
		if err == nil && len(c) != MinChunkSize {
			t.Fatalf("%d bytes", len(c))
		}
	})
}

// FuzzDeltaRoundTrip: whatever a base and a new file hold, the delta sync builds rebuilds
// the new file exactly from the base.
func FuzzDeltaRoundTrip(f *testing.F) {
	base := bytes.Repeat([]byte("drepo base 0123456789abcdef "), 3000)
	f.Add(base, append([]byte("an insertion "), base...))
	f.Add(base, []byte{})
	f.Add([]byte{}, base[:5000])
	f.Add(base[:100], base[50:])
	f.Fuzz(func(t *testing.T, base, next []byte) {
		var d bytes.Buffer
		if err := EncodeDelta(&d, bytes.NewReader(base), int64(len(base)), bytes.NewReader(next), int64(len(next)), MinChunkSize); err != nil {
			t.Fatalf("encode: %v", err)
		}
		dr, err := NewDeltaReader(bytes.NewReader(d.Bytes()), bytes.NewReader(base), int64(len(base)), int64(len(next)), MinChunkSize)
		if err != nil {
			t.Fatalf("reader: %v", err)
		}
		defer dr.Close()
		var got []byte
		for {
			_, c, err := dr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("apply: %v", err)
			}
			got = append(got, c...)
		}
		if !bytes.Equal(got, next) {
			t.Fatalf("rebuilt %d bytes that differ from the %d of the file", len(got), len(next))
		}
	})
}
