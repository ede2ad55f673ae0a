package webdavsrv_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// TestRclone: Debian's rclone copies a folder tree to the server and rclone check passes.
func TestRclone(t *testing.T) {
	rc := davtest.NeedTool(t, "rclone")
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	src := t.TempDir()
	for i := 0; i < 20; i++ {
		p := filepath.Join(src, fmt.Sprintf("d%d", i%4), fmt.Sprintf("f%02d.bin", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, randomBytes(1000+i*7919, byte(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	obscured, err := exec.Command(rc, "obscure", s.Password).Output()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", "/dev/null", "--webdav-url", s.URL, "--webdav-vendor", "other",
		"--webdav-user", s.User, "--webdav-pass", strings.TrimSpace(string(obscured))}
	for _, op := range [][]string{{"copy", src, ":webdav:tree"}, {"check", src, ":webdav:tree"}} {
		out, err := exec.Command(rc, append(append([]string{}, op...), args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("rclone %s: %v\n%s", op[0], err, out)
		}
	}
	b, err := os.ReadFile(filepath.Join(s.Root, "tree", "d3", "f19.bin"))
	if err != nil || !bytes.Equal(b, randomBytes(1000+19*7919, 19)) {
		t.Fatalf("file on the server's disk differs: %v", err)
	}
}

// TestCurl: curl -T uploads, curl -r fetches a range.
func TestCurl(t *testing.T) {
	curl := davtest.NeedTool(t, "curl")
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	data := randomBytes(3<<20+5, 7)
	f := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	auth := s.User + ":" + s.Password
	if out, err := exec.Command(curl, "-sSf", "-u", auth, "-T", f, s.URL+"blob").CombinedOutput(); err != nil {
		t.Fatalf("curl -T: %v %s", err, out)
	}
	out, err := exec.Command(curl, "-sSf", "-u", auth, "-r", "1000-1999", s.URL+"blob").Output()
	if err != nil || !bytes.Equal(out, data[1000:2000]) {
		t.Fatalf("curl -r: %v, got %d bytes", err, len(out))
	}
	out, err = exec.Command(curl, "-sSf", "-u", auth, s.URL+"blob").Output()
	if err != nil || sha256.Sum256(out) != sha256.Sum256(data) {
		t.Fatalf("curl GET: %v", err)
	}
}
