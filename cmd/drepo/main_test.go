package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// drepo runs the CLI in-process and returns exit code, stdout and stderr.
func drepo(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"drepo"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"version"}, exitOK},
		{[]string{"no-such-command"}, exitUsage},
		{[]string{"--bogus", "version"}, exitUsage},
		{[]string{"manifest", "build", "--bogus"}, exitUsage},
		{[]string{"manifest", "build", dir}, exitUsage}, // no --app/--version
		{[]string{"manifest", "build", filepath.Join(dir, "missing"), "--app", "a", "--version", "1"}, exitFailure},
		{[]string{"manifest", "build", dir, "--app", "bad name", "--version", "1"}, exitFailure},
		{[]string{"manifest", "show", filepath.Join(dir, "missing.json")}, exitFailure},
		{[]string{"--config", filepath.Join(dir, "missing.yaml"), "config", "show"}, exitUsage},
		{[]string{"--log-level", "loud", "version"}, exitUsage},
	}
	for _, c := range cases {
		if code, _, stderr := drepo(t, c.args...); code != c.code {
			t.Errorf("drepo %v: exit %d, want %d (stderr %q)", c.args, code, c.code, stderr)
		}
	}
}

func TestHelpHasExamples(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"version", "--help"}, {"keygen", "--help"}, {"manifest", "--help"},
		{"manifest", "build", "--help"}, {"manifest", "show", "--help"}, {"config", "--help"}, {"config", "show", "--help"},
		{"sync", "--help"}, {"promote", "--help"}, {"verify", "--help"}, {"serve", "--help"}, {"fetch", "--help"}, {"store", "--help"}, {"store", "ls", "--help"},
		{"store", "gc", "--help"}, {"store", "verify", "--help"}, {"store", "rm", "--help"}, {"peer", "--help"}, {"discover", "--help"}, {"htpasswd", "--help"}, {"ls", "--help"}, {"completion", "--help"}, {"man", "--help"}} {
		code, out, _ := drepo(t, args...)
		if code != 0 || !strings.Contains(out, "Examples:") {
			t.Errorf("drepo %v: exit %d, no examples in:\n%s", args, code, out)
		}
	}
}

// TestKeygenManifestMinisign: drepo keygen and manifest build, then Debian's minisign verifies
// what we sign with that key and we verify what minisign signs.
func TestKeygenManifestMinisign(t *testing.T) {
	ms := davtest.NeedTool(t, "minisign")
	dir := t.TempDir()
	prefix := filepath.Join(dir, "k")
	if code, _, errs := drepo(t, "keygen", "--out", prefix); code != 0 {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	if fi, err := os.Stat(prefix + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret key mode: %v %v", fi, err)
	}
	if code, _, _ := drepo(t, "keygen", "--out", prefix); code != exitFailure {
		t.Fatalf("keygen overwrote an existing key (exit %d)", code)
	}
	app := filepath.Join(dir, "app")
	if err := os.MkdirAll(filepath.Join(app, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "bin", "tool"), bytes.Repeat([]byte("x"), 100000), 0o755); err != nil {
		t.Fatal(err)
	}
	mpath := filepath.Join(dir, "manifest.json")
	if code, _, errs := drepo(t, "manifest", "build", app, "--app", "tool", "--version", "1.0", "-o", mpath); code != 0 {
		t.Fatalf("manifest build: %d %s", code, errs)
	}
	doc, err := os.ReadFile(mpath)
	if err != nil {
		t.Fatal(err)
	}
	if code, out, _ := drepo(t, "manifest", "show", mpath); code != 0 || !strings.Contains(out, "bin/tool (executable)") {
		t.Fatalf("manifest show: %d %s", code, out)
	}
	sec, err := manifests.LoadSecretKey(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mpath+".minisig", manifests.Sign(sec, doc, time.Now()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ms, "-Vm", mpath, "-p", prefix+".pub").CombinedOutput(); err != nil {
		t.Fatalf("minisign refused: %v %s", err, out)
	}
	// minisign signs with a key it made; our side verifies with its public key
	if out, err := exec.Command(ms, "-G", "-W", "-p", prefix+"2.pub", "-s", prefix+"2.key").CombinedOutput(); err != nil {
		t.Fatalf("minisign -G: %v %s", err, out)
	}
	if out, err := exec.Command(ms, "-Sm", mpath, "-s", prefix+"2.key", "-x", mpath+".ms").CombinedOutput(); err != nil {
		t.Fatalf("minisign -S: %v %s", err, out)
	}
	sig, _ := os.ReadFile(mpath + ".ms")
	pub, err := manifests.LoadPublicKey(prefix + "2.pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := manifests.Verify([]minisign.PublicKey{pub}, doc, sig); err != nil {
		t.Fatalf("we refused minisign's signature: %v", err)
	}
}

// --version with the license; completion scripts for three shells that ask drepo itself;
// a man page from the commands' help; JSON log lines on request.
func TestVersionCompletionManAndJSONLogs(t *testing.T) {
	if code, out, _ := drepo(t, "--version"); code != 0 || !strings.Contains(out, "license Apache-2.0") {
		t.Fatalf("--version: %d %q", code, out)
	}
	for shell, want := range map[string]string{"bash": "complete -o bashdefault -o default -F _drepo drepo", "zsh": "#compdef drepo", "fish": "complete -c drepo"} {
		if code, out, _ := drepo(t, "completion", shell); code != 0 || !strings.Contains(out, want) {
			t.Errorf("completion %s: %d, no %q", shell, code, want)
		}
	}
	// urfave/cli reads os.Args for this: the real binary answers
	if out, err := exec.Command(drepoBinary(t), "store", "--generate-bash-completion").Output(); err != nil || !strings.Contains(string(out), "verify\n") || !strings.Contains(string(out), "gc\n") {
		t.Errorf("completion candidates for store: %v %q", err, out)
	}
	if code, out, _ := drepo(t, "man"); code != 0 || !strings.Contains(out, ".TH drepo 1") || !strings.Contains(out, "promote") {
		t.Errorf("man: %d", code)
	}
	code, _, errs := drepo(t, "--log-format", "json", "--log-level", "debug", "fetch", "app@1", "--plan", "--config", writeMinimalDeviceConfig(t))
	if code != 0 || !strings.HasPrefix(strings.TrimSpace(errs), "{") {
		t.Errorf("--log-format json: %d, log %q", code, errs)
	}
	if code, _, _ := drepo(t, "--log-format", "xml", "version"); code != exitUsage {
		t.Errorf("--log-format xml: exit %d, want 2", code)
	}
}

// writeMinimalDeviceConfig writes the README's minimal device config (one live repository).
func writeMinimalDeviceConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "drepo.yaml")
	os.WriteFile(p, []byte("trusted_keys: [k.pub]\nstore: store\npeers: {broadcast: false}\nrepositories:\n  - {name: main, url: \"http://127.0.0.1:1/apps/\", priority: 10}\n"), 0o644)
	return p
}

// discover names what no peer holds, instead of leaving it out.
func TestDiscoverListsWhatNobodyHolds(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "drepo.yaml")
	os.WriteFile(cfg, []byte("store: store\npeers: {broadcast: false, static: [\"127.0.0.1:9\"]}\n"), 0o644)
	code, out, errs := drepo(t, "--config", cfg, "discover", "app@1", "--wait", "100ms", "--json")
	if code != 0 || !strings.Contains(out, `"what":"index"`) || !strings.Contains(out, `"nobody":true`) {
		t.Fatalf("discover: %d %s %s", code, out, errs)
	}
	if code, out, _ := drepo(t, "--config", cfg, "discover", "app@1", "--wait", "100ms"); code != 0 || !strings.Contains(out, "nobody holds it") {
		t.Fatalf("discover: %d %s", code, out)
	}
}
