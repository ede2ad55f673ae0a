package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// The known trap of gowebdav: its auto-auth copies a body that cannot seek into memory, so
// a multi-GB upload took GBs of RAM. A first sync of a 2 GiB file to Apache (which asks for
// a password) must stay within 64 MiB of resident memory, hashing and upload included. The
// file is sparse: its bytes cost no disk, and memory does not depend on what they are.
func TestSyncLargeFileMemory(t *testing.T) {
	const size, limit = 2 << 30, 64 << 20
	s := davtest.StartApache(t)
	src := t.TempDir()
	file := filepath.Join(src, "base_system", "12.7.4", "image.bin")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, size); err != nil {
		t.Fatal(err)
	}
	cfg, _ := adminSetup(t, s, src)
	bin := drepoBinary(t)

	cmd := exec.Command(bin, "--config", cfg, "--log-level", "error", "sync")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	peak, err := davtest.RunPeakRSS(cmd)
	if err != nil {
		t.Fatalf("sync: %v\n%s", err, out.String())
	}
	t.Logf("peak RSS of a first sync of %d GiB: %.1f MiB", size>>30, float64(peak)/(1<<20))
	if peak > limit {
		t.Fatalf("peak RSS %d MiB, want at most %d MiB", peak>>20, limit>>20)
	}
	// the blob is there with the right size
	if out, err := exec.Command(bin, "--config", cfg, "--log-level", "error", "verify").CombinedOutput(); err != nil {
		t.Fatalf("verify after the sync: %v\n%s", err, out)
	}
}
