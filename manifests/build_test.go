package manifests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// writeRandom writes n pseudo-random bytes to path and returns them.
func writeRandom(t *testing.T, path string, n int, seed uint64) []byte {
	t.Helper()
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuildManifest(t *testing.T) {
	dir := t.TempDir()
	const cs = MinChunkSize
	sizes := map[string]int{
		"empty": 0, "one": 1, "exact": cs, "plus1": cs + 1, "sub/dir/many": 7*cs + 123,
		"sub-x": 3 * hashBufSize, "sub/z": hashBufSize + 1,
	}
	want := map[string][]byte{}
	i := uint64(0)
	for p, n := range sizes {
		i++
		want[p] = writeRandom(t, filepath.Join(dir, filepath.FromSlash(p)), n, i)
	}
	if err := os.Chmod(filepath.Join(dir, "one"), 0o755); err != nil {
		t.Fatal(err)
	}
	// debris of a crashed atomic write is not part of the app
	writeRandom(t, filepath.Join(dir, TempPrefix+"123"), 10, 99)

	m, err := BuildManifest(context.Background(), dir, "app", "1.0", BuildOptions{ChunkSize: cs, Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != len(sizes) {
		t.Fatalf("got %d files, want %d", len(m.Files), len(sizes))
	}
	for _, f := range m.Files {
		b := want[f.Path]
		if f.Size != int64(len(b)) || f.SHA256 != Hash(sha256.Sum256(b)) {
			t.Errorf("%s: size/hash wrong", f.Path)
		}
		if f.Executable != (f.Path == "one") {
			t.Errorf("%s: executable = %v", f.Path, f.Executable)
		}
		if int64(len(f.Chunks)) != NumChunks(f.Size, cs) {
			t.Fatalf("%s: %d chunks", f.Path, len(f.Chunks))
		}
		for k, c := range f.Chunks {
			end := min((k+1)*cs, len(b))
			if c != Hash(sha256.Sum256(b[k*cs:end])) {
				t.Errorf("%s: chunk %d wrong", f.Path, k)
			}
		}
	}
	if _, err := m.Encode(); err != nil {
		t.Fatalf("built manifest does not encode: %v", err)
	}
}

// TestBuildMatchesSha256sum compares the blob names with coreutils' sha256sum, the tool an
// admin would use to check a blob by hand.
func TestBuildMatchesSha256sum(t *testing.T) {
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Skip("sha256sum not installed")
	}
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "f"), 5*hashBufSize+17, 1)
	m, err := BuildManifest(context.Background(), dir, "a", "1", BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sha256sum", filepath.Join(dir, "f")).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(out))[0]; got != m.Files[0].SHA256.String() {
		t.Fatalf("sha256sum says %s, manifest says %s", got, m.Files[0].SHA256)
	}
}

func TestBuildRefusesSymlinkAndBadNames(t *testing.T) {
	dir := t.TempDir()
	writeRandom(t, filepath.Join(dir, "f"), 10, 1)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := BuildManifest(context.Background(), dir, "a", "1", BuildOptions{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("symlink: err = %v", err)
	}
	if _, err := BuildManifest(context.Background(), t.TempDir(), "a b", "1", BuildOptions{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad app name: err = %v", err)
	}
	bs := t.TempDir()
	writeRandom(t, filepath.Join(bs, "a\\b"), 1, 1)
	if _, err := BuildManifest(context.Background(), bs, "a", "1", BuildOptions{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("backslash name: err = %v", err)
	}
}

func TestHashReaderCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := HashReader(ctx, bytes.NewReader(make([]byte, 10*hashBufSize)), -1, MinChunkSize)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestHashReaderUnknownSizeMatchesKnown(t *testing.T) {
	b := make([]byte, 3*MinChunkSize+5)
	rand.NewChaCha8([32]byte{3}).Read(b)
	a, err := HashReader(context.Background(), bytes.NewReader(b), -1, MinChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	// a wrong (too small) hint takes the one-pass path, which must chunk all the same
	c, err := HashReader(context.Background(), bytes.NewReader(b), 1, MinChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	if a.SHA256 != c.SHA256 || len(a.Chunks) != 4 || len(c.Chunks) != 4 || a.Chunks[3] != c.Chunks[3] {
		t.Fatalf("strategies disagree: %+v vs %+v", a, c)
	}
}
