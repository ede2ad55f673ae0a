package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// The catalogue checks as an admin meets them from the command line: exit codes, what is
// named, and that --dry-run and the summary count removed versions.
func TestSyncSafetyCLI(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	src := t.TempDir()
	writeVersion(t, src, 1, 2)
	writeVersion(t, src, 2, 2)
	writeVersion(t, src, 3, 2)
	cfg, _ := adminSetup(t, s, src)
	if code, out, errs := drepo(t, "--config", cfg, "sync"); code != 0 {
		t.Fatalf("sync: %d %s %s", code, out, errs)
	}

	// an unmounted source: exit 1, nothing published, the versions named
	os.Rename(src, src+".away")
	os.Mkdir(src, 0o755)
	code, out, errs := drepo(t, "--config", cfg, "sync")
	if code != exitFailure || !strings.Contains(errs, "--allow-removals") || !strings.Contains(errs, "app@1.0") {
		t.Fatalf("empty source: exit %d\n%s%s", code, out, errs)
	}
	os.Remove(src)
	os.Rename(src+".away", src)

	// a missing source folder is a configuration error
	bad := strings.Replace(mustRead(t, cfg), "source: "+src, "source: "+src+"-missing", 1)
	badCfg := filepath.Join(filepath.Dir(cfg), "bad.yaml")
	os.WriteFile(badCfg, []byte(bad), 0o644)
	if code, _, errs := drepo(t, "--config", badCfg, "sync"); code != exitUsage || !strings.Contains(errs, "bad.yaml:1: source") {
		t.Fatalf("missing source: exit %d %s", code, errs)
	}

	// a changed published version: exit 1 naming version and file; --republish allows it
	os.WriteFile(filepath.Join(src, "app", "2.0", "f01.bin"), []byte("edited"), 0o644)
	code, _, errs = drepo(t, "--config", cfg, "sync")
	if code != exitFailure || !strings.Contains(errs, "app@2.0: changed f01.bin") {
		t.Fatalf("changed version: exit %d %s", code, errs)
	}
	if code, _, errs := drepo(t, "--config", cfg, "sync", "--republish", "app@2.0"); code != 0 {
		t.Fatalf("--republish: exit %d %s", code, errs)
	}

	// retention in the config: a dry run counts what goes, and later runs keep the catalogue
	os.WriteFile(cfg, []byte(mustRead(t, cfg)+"keep: {versions: 1}\n"), 0o644)
	code, out, errs = drepo(t, "--config", cfg, "sync", "--dry-run")
	if code != 0 || !strings.Contains(out, "2 removed: app@1.0 app@2.0") || strings.Contains(out, "planned  0  0  0") {
		t.Fatalf("dry run with keep: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := drepo(t, "--config", cfg, "sync"); code != 0 || !strings.Contains(out, "2 removed") {
		t.Fatalf("sync with keep: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := drepo(t, "--config", cfg, "sync"); code != 0 || !strings.Contains(out, "up-to-date") || strings.Contains(out, "removed") {
		t.Fatalf("the next sync changed the catalogue:\n%s", out)
	}
}

// A signing key that trusted_keys do not list: exit 2 before any request.
func TestSyncUntrustedKeyCLI(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	src := t.TempDir()
	writeVersion(t, src, 1, 1)
	cfg, _ := adminSetup(t, s, src)
	other := filepath.Join(filepath.Dir(cfg), "other")
	if code, _, errs := drepo(t, "keygen", "--out", other); code != 0 {
		t.Fatal(errs)
	}
	os.WriteFile(cfg, []byte(strings.Replace(mustRead(t, cfg), "signing_key: k.key", "signing_key: other.key", 1)), 0o644)
	code, _, errs := drepo(t, "--config", cfg, "sync")
	if code != exitUsage || !strings.Contains(errs, "not among trusted_keys") {
		t.Fatalf("untrusted key: exit %d %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(s.Root, "index.json")); err == nil {
		t.Fatal("an index was published")
	}
}

// A repository's secret is read only when a command uses that repository; its error names
// file and line.
func TestSecretsResolvedPerRepository(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	src := t.TempDir()
	writeVersion(t, src, 1, 1)
	cfg, _ := adminSetup(t, s, src)
	os.WriteFile(cfg, []byte(mustRead(t, cfg)+"  - {name: stage, url: \"http://127.0.0.1:1/\", priority: -1, password_env: STAGE_PW_UNSET}\n"), 0o644)
	os.Unsetenv("STAGE_PW_UNSET")
	if code, _, errs := drepo(t, "--config", cfg, "ls"); code != 0 {
		t.Fatalf("ls of the source: exit %d %s", code, errs)
	}
	if code, _, errs := drepo(t, "--config", cfg, "sync", "--repo", "r"); code != 0 {
		t.Fatalf("sync --repo r: exit %d %s", code, errs)
	}
	if code, _, errs := drepo(t, "--config", cfg, "verify", "--repo", "r"); code != 0 {
		t.Fatalf("verify --repo r: exit %d %s", code, errs)
	}
	if code, out, _ := drepo(t, "--config", cfg, "config", "show"); code != 0 || strings.Contains(out, "***") {
		t.Fatalf("config show: exit %d, shows a password beside password_env/_file:\n%s", code, out)
	}
	code, _, errs := drepo(t, "--config", cfg, "verify", "--repo", "stage")
	if code != exitUsage || !strings.Contains(errs, "drepo.yaml:7: repositories[1].password_env: environment variable STAGE_PW_UNSET is not set") {
		t.Fatalf("verify --repo stage: exit %d %s", code, errs)
	}
}

// The smaller points of the first-run report.
func TestFirstRunPapercuts(t *testing.T) {
	dir := t.TempDir()
	// keygen into a folder that does not exist yet
	if code, _, errs := drepo(t, "keygen", "--out", filepath.Join(dir, "etc", "drepo", "drepo")); code != 0 {
		t.Fatalf("keygen into a new folder: %d %s", code, errs)
	}
	if fi, err := os.Stat(filepath.Join(dir, "etc", "drepo")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("key folder: %v %v", fi, err)
	}
	// global flags after the command
	if code, _, errs := drepo(t, "version", "--log-level", "warn"); code != 0 {
		t.Fatalf("global flag after the command: %d %s", code, errs)
	}
	// a busy port is a runtime failure (1), not bad usage
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if code, _, errs := drepo(t, "serve", "--root", dir, "--no-auth", "--listen", ln.Addr().String()); code != exitFailure {
		t.Fatalf("serve on a busy port: exit %d %s", code, errs)
	}
	// a file where an app folder belongs, and a symlinked version, are named in a warning;
	// an invalid file name names its app/version folder
	src := filepath.Join(dir, "src")
	writeVersion(t, src, 1, 1)
	os.WriteFile(filepath.Join(src, "stray.bin"), []byte("x"), 0o644)
	os.Symlink(filepath.Join(src, "app", "1.0"), filepath.Join(src, "app", "9.0"))
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	acfg, _ := adminSetup(t, s, src)
	code, _, errs := drepo(t, "--config", acfg, "sync")
	if code != 0 || !strings.Contains(errs, "stray.bin") || !strings.Contains(errs, filepath.Join("app", "9.0")) {
		t.Fatalf("sync with stray entries: exit %d\n%s", code, errs)
	}
	os.WriteFile(filepath.Join(src, "app", "1.0", "bad\x01name"), []byte("x"), 0o644)
	code, _, errs = drepo(t, "--config", acfg, "sync")
	if code == 0 || !strings.Contains(errs, "app@1.0") {
		t.Fatalf("invalid file name: exit %d %s", code, errs)
	}
}

// On a terminal, htpasswd prompts and does not echo the password: each answer is typed only
// after its prompt shows, and nothing after the prompts shows the password.
func TestHtpasswdPromptsOnTerminal(t *testing.T) {
	script := davtest.NeedTool(t, "script")
	file := filepath.Join(t.TempDir(), "users")
	cmd := exec.Command(script, "-q", "-e", "-c", drepoBinary(t)+" htpasswd "+file+" admin", "/dev/null")
	stdin, _ := cmd.StdinPipe()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seen strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 256)
		answered := 0
		for {
			n, err := pr.Read(buf)
			seen.Write(buf[:n])
			for answered < 2 && strings.Count(seen.String(), []string{"Password: ", "Again: "}[answered]) > 0 {
				io.WriteString(stdin, "s3cret-pw\n")
				answered++
			}
			if err != nil {
				return
			}
		}
	}()
	err := cmd.Wait()
	pw.Close()
	<-done
	out := seen.String()
	if err != nil {
		t.Fatalf("htpasswd on a terminal: %v\n%q", err, out)
	}
	if !strings.Contains(out, "Password: ") || strings.Contains(out, "s3cret-pw") {
		t.Fatalf("want a prompt and no echo:\n%q", out)
	}
	if b, _ := os.ReadFile(file); !strings.HasPrefix(string(b), "admin:$2") {
		t.Fatalf("htpasswd file: %q", b)
	}
}

// What a server writes reaches the terminal with its control characters made visible: a
// 500 body cannot rewrite verify's table.
func TestServerTextMadePrintable(t *testing.T) {
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "\x1b[2J\x1b[HFAKE: all repositories ok\r")
	}))
	defer evil.Close()
	dir := t.TempDir()
	if code, _, errs := drepo(t, "keygen", "--out", filepath.Join(dir, "k")); code != 0 {
		t.Fatal(errs)
	}
	cfg := filepath.Join(dir, "drepo.yaml")
	os.WriteFile(cfg, []byte("trusted_keys: [k.pub]\nrepositories:\n  - {name: evil, url: \""+evil.URL+"/\"}\n"), 0o644)
	code, out, errs := drepo(t, "--config", cfg, "--log-level", "error", "verify")
	if code != exitFailure || !strings.Contains(out, `\x1b[2J`) || strings.ContainsAny(out+errs, "\x1b\r") {
		t.Fatalf("exit %d, output carries raw control characters:\n%q\n%q", code, out, errs)
	}
}

// --no-auth refuses a non-loopback listen address unless said twice; a shared state
// folder another user may write is refused.
func TestNoAuthLoopbackAndStateDir(t *testing.T) {
	dir := t.TempDir()
	code, _, errs := drepo(t, "serve", "--root", dir, "--no-auth", "--listen", ":0")
	if code != exitUsage || !strings.Contains(errs, "not a loopback address") {
		t.Fatalf("--no-auth on every interface: exit %d %s", code, errs)
	}
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	src := t.TempDir()
	writeVersion(t, src, 1, 1)
	cfg, _ := adminSetup(t, s, src)
	open := filepath.Join(dir, "state")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	os.WriteFile(cfg, []byte(strings.Replace(mustRead(t, cfg), "state_dir: state", "state_dir: "+open, 1)), 0o644)
	if code, _, errs := drepo(t, "--config", cfg, "sync"); code == 0 || !strings.Contains(errs, "writable by every user") {
		t.Fatalf("world-writable state_dir: exit %d %s", code, errs)
	}
}
