package manifests

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A key, certificate or config path set to a device, a FIFO or a huge file is an error
// at once, never an unbounded (or blocking) read.
func TestReadSmallFileBounds(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/dev/zero": "not a regular file", fifo: "not a regular file", big: "more than"} {
		if _, err := ReadSmallFile(path, MaxCertFile); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", path, err, want)
		}
	}
	if _, err := LoadKeyPair("/dev/zero", big); err == nil || !strings.Contains(err.Error(), "/dev/zero") || !strings.Contains(err.Error(), big) {
		t.Errorf("a key pair of /dev/zero and a big file: %v", err)
	}
	ok := filepath.Join(dir, "ok")
	os.WriteFile(ok, []byte("small"), 0o600)
	if b, err := ReadSmallFile(ok, 5); err != nil || string(b) != "small" {
		t.Errorf("a small file: %q %v", b, err)
	}
}
