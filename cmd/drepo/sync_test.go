package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// TestSyncVerifyCLI: the commands' exit codes and what they print, for an admin reading
// cron mail and for scripts reading --json.
func TestSyncVerifyCLI(t *testing.T) {
	s := davtest.StartApache(t)
	src := t.TempDir()
	writeVersion(t, src, 1, 3)
	cfg, _ := adminSetup(t, s, src)
	if code, out, errs := drepo(t, "--config", cfg, "sync", "--dry-run"); code != 0 || !strings.Contains(out, "planned") {
		t.Fatalf("dry run: %d %s %s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(s.Root, "index.json")); err == nil {
		t.Fatal("--dry-run wrote an index")
	}
	if code, out, errs := drepo(t, "--config", cfg, "sync"); code != 0 || !strings.Contains(out, "updated") {
		t.Fatalf("sync: %d %s %s", code, out, errs)
	}
	if code, out, _ := drepo(t, "--config", cfg, "verify", "--deep"); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("verify: %d %s", code, out)
	}
	if code, out, _ := drepo(t, "--config", cfg, "ls", "--repo", "r"); code != 0 || !strings.Contains(out, "app") || !strings.Contains(out, "1.0") {
		t.Fatalf("ls: %d %s", code, out)
	}
	// damage one blob on the server's disk: --deep exits 1 and names it
	blobs, _ := filepath.Glob(filepath.Join(s.Root, "blobs", "sha256", "*", "*"))
	var victim string
	for _, b := range blobs {
		if fi, _ := os.Stat(b); fi.Size() > 64<<10 {
			victim = b
			break
		}
	}
	f, _ := os.OpenFile(victim, os.O_RDWR, 0)
	f.WriteAt([]byte{0xde, 0xad}, 10)
	f.Close()
	rel, _ := filepath.Rel(s.Root, victim)
	code, out, _ := drepo(t, "--config", cfg, "verify", "--deep")
	if code != exitFailure || !strings.Contains(out, rel) || !strings.Contains(out, "content") {
		t.Fatalf("verify --deep with a damaged blob: exit %d\n%s", code, out)
	}
	code, out, _ = drepo(t, "--config", cfg, "verify", "--deep", "--json")
	var reps []struct {
		OK       bool `json:"ok"`
		Problems []struct{ Kind, Name string }
	}
	if code != exitFailure || json.Unmarshal([]byte(out), &reps) != nil || reps[0].OK || reps[0].Problems[0].Name != rel {
		t.Fatalf("verify --json: exit %d\n%s", code, out)
	}
	// --repair removes the damaged blob and re-uploads it
	if code, out, errs := drepo(t, "--config", cfg, "verify", "--deep", "--repair"); code != 0 {
		t.Fatalf("verify --repair: %d %s %s", code, out, errs)
	}
	if code, out, _ := drepo(t, "--config", cfg, "verify", "--deep"); code != 0 {
		t.Fatalf("after repair: %d %s", code, out)
	}
	// delete one: plain verify exits 1 and names it
	os.Remove(victim)
	if code, out, _ := drepo(t, "--config", cfg, "verify"); code != exitFailure || !strings.Contains(out, rel) || !strings.Contains(out, "missing") {
		t.Fatalf("verify with a deleted blob: exit %d\n%s", code, out)
	}
	// usage errors exit 2
	for _, args := range [][]string{{"sync", "--repo", "nope"}, {"sync", "--prune"}, {"sync", "--transfers", "0"}, {"verify", "--repo", "nope"}} {
		if code, _, errs := drepo(t, append([]string{"--config", cfg}, args...)...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errs)
		}
	}
	// an unreachable repository: exit 1, named
	bad := strings.Replace(mustRead(t, cfg), s.URL, "http://127.0.0.1:1/", 1)
	os.WriteFile(cfg, []byte(bad), 0o644)
	if code, out, _ := drepo(t, "--config", cfg, "verify"); code != exitFailure || !strings.Contains(out, "could not check") {
		t.Fatalf("unreachable: %d %s", code, out)
	}
}

func mustRead(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// On a terminal (a pseudo-terminal made by script(1)) sync draws bars: the upload bar knows
// its total, so it shows a percentage, and reaches 100%; log lines clear the bar's line
// before they print, so they do not run into it.
func TestSyncProgressOnTerminal(t *testing.T) {
	script := davtest.NeedTool(t, "script")
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	src := t.TempDir()
	writeVersion(t, src, 1, 4)
	cfg, _ := adminSetup(t, s, src)
	bin := drepoBinary(t)
	cmd := exec.Command(script, "-q", "-e", "-c", bin+" --config "+cfg+" sync", "/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sync on a terminal: %v\n%q", err, out)
	}
	text := string(out)
	for _, want := range []string{"hashing", "uploading 100%", "\r\x1b[Ktime=", "updated"} {
		if !strings.Contains(text, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, text)
		}
	}
}
