package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror/dav"
	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// TestMain removes the binary drepoBinary built (33 of them had piled up in /tmp).
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// drepoBinary builds the real command once per test run, for tests that kill it.
func drepoBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "drepo-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "drepo")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// adminSetup writes keys and a config for one repository on s; it returns the config path
// and the public key.
func adminSetup(t *testing.T, s *davtest.Server, src string) (string, minisign.PublicKey) {
	t.Helper()
	dir := t.TempDir()
	prefix := filepath.Join(dir, "k")
	if code, _, errs := drepo(t, "keygen", "--out", prefix); code != 0 {
		t.Fatal(errs)
	}
	pub, err := manifests.LoadPublicKey(prefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("source: %s\nsigning_key: k.key\ntrusted_keys: [k.pub]\nstate_dir: state\nrepositories:\n  - {name: r, url: %q, priority: 5, username: %s, password_env: REPO_PW}\n",
		src, s.URL, s.User)
	path := filepath.Join(dir, "drepo.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REPO_PW", s.Password)
	return path, pub
}

func writeVersion(t *testing.T, src string, v int, files int) {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(v), 7))
	for i := 0; i < files; i++ {
		p := filepath.Join(src, "app", fmt.Sprintf("%d.0", v), fmt.Sprintf("f%02d.bin", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 64<<10+r.IntN(1<<20))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkInvariant: every blob the repository's signed index names is on the server's disk,
// complete and with the right bytes (read straight from the server's root folder).
func checkInvariant(t *testing.T, s *davtest.Server, pub minisign.PublicKey) int {
	t.Helper()
	doc, err1 := os.ReadFile(filepath.Join(s.Root, dav.IndexName))
	if errors.Is(err1, os.ErrNotExist) {
		return 0 // no index yet: nothing is promised
	}
	// the signature of exactly these bytes, as drepo's readers fetch it
	sig, err2 := os.ReadFile(filepath.Join(s.Root, filepath.FromSlash(dav.SigPath(doc))))
	if err1 != nil || err2 != nil {
		t.Fatalf("index present but unreadable: %v %v", err1, err2)
	}
	idx, err := manifests.VerifyIndex([]minisign.PublicKey{pub}, doc, sig)
	if err != nil {
		t.Fatalf("the repository's index does not verify: %v", err)
	}
	blob := func(h manifests.Hash, size int64) []byte {
		b, err := os.ReadFile(filepath.Join(s.Root, filepath.FromSlash(manifests.BlobPath(h))))
		if err != nil || int64(len(b)) != size || manifests.Hash(sha256.Sum256(b)) != h {
			t.Fatalf("index serial %d names blob %s, which is missing or wrong (%v, %d bytes)", idx.Serial, h, err, len(b))
		}
		return b
	}
	for _, e := range idx.Apps {
		m, err := manifests.DecodeManifest(blob(e.Manifest, e.ManifestSize))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m.Files {
			blob(f.SHA256, f.Size)
		}
	}
	return len(idx.Apps)
}

// crashIterations is how many kills must land while sync runs (DREPO_CRASH_KILLS raises it
// for a long run).
func crashIterations() int {
	if n, err := strconv.Atoi(os.Getenv("DREPO_CRASH_KILLS")); err == nil && n > 0 {
		return n
	}
	return 20
}

func TestSyncSurvivesSIGKILL(t *testing.T) {
	bin := drepoBinary(t)
	for _, s := range []*davtest.Server{davtest.StartDrepo(t, davtest.DrepoOptions{}), davtest.StartApache(t)} {
		t.Run(s.Name, func(t *testing.T) {
			src := t.TempDir()
			cfg, pub := adminSetup(t, s, src)
			run := func(ctx context.Context) *exec.Cmd {
				cmd := exec.CommandContext(ctx, bin, "--config", cfg, "--log-level", "error", "sync", "--transfers", "4")
				cmd.Env = os.Environ()
				return cmd
			}
			// one full sync first, to learn how long one takes
			writeVersion(t, src, 0, 16)
			start := time.Now()
			if out, err := run(context.Background()).CombinedOutput(); err != nil {
				t.Fatalf("first sync: %v\n%s", err, out)
			}
			est := time.Since(start)
			checkInvariant(t, s, pub)
			kills := 0
			want := crashIterations()
			for v := 1; kills < want && v < 6*want; v++ {
				writeVersion(t, src, v, 12) // new blobs every round: there is always upload work
				cmd := run(context.Background())
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-done: // finished before the kill: no crash this round
				case <-time.After(time.Duration(rand.Int64N(int64(est)) + 1)):
					_ = cmd.Process.Signal(syscall.SIGKILL)
					<-done
					kills++
				}
				checkInvariant(t, s, pub)
			}
			if kills < want {
				t.Fatalf("only %d kills landed during a sync", kills)
			}
			// a rerun converges: everything published, verify --deep passes
			if out, err := run(context.Background()).CombinedOutput(); err != nil {
				t.Fatalf("sync after %d kills: %v\n%s", kills, err, out)
			}
			if n := checkInvariant(t, s, pub); n < kills {
				t.Fatalf("index holds %d versions after convergence", n)
			}
			out, err := exec.Command(bin, "--config", cfg, "--log-level", "error", "verify", "--deep").CombinedOutput()
			if err != nil {
				t.Fatalf("verify --deep after the kills: %v\n%s", err, out)
			}
			t.Logf("%s: %d kills during sync (one sync ≈ %s), repository valid after each, converged", s.Name, kills, est.Round(time.Millisecond))
		})
	}
}
