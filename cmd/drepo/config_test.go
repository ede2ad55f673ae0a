package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drepo-dev/drepo/mirror/dav"
)

func TestConfigErrorsNameFileLineField(t *testing.T) {
	cases := map[string]struct{ doc, want string }{
		"wrong type": {"repositories:\n  - name: a\n    url: http://x/\n  - name: b\n    url: http://y/\n    priority: ten\n",
			"drepo.yaml:6: repositories[1].priority: must be an integer"},
		"unknown key":   {"source: /x\nsorce: /y\n", "drepo.yaml:2: sorce: unknown key"},
		"nested unk":    {"peers:\n  http_prot: 1\n", "drepo.yaml:2: peers.http_prot: unknown key"},
		"bad bool":      {"peers:\n  enabled: maybe\n", "drepo.yaml:2: peers.enabled: must be true or false"},
		"bad port":      {"peers:\n  http_port: 70000\n", "drepo.yaml:2: peers.http_port: must be a port number"},
		"bad url":       {"repositories:\n  - name: a\n    url: ftp://x/\n", "drepo.yaml:3: repositories[0].url: must be an http"},
		"url creds":     {"repositories:\n  - name: a\n    url: https://u:p@x/\n", "repositories[0].url: must not carry credentials"},
		"dup name":      {"repositories:\n  - {name: a, url: 'http://x/'}\n  - {name: a, url: 'http://y/'}\n", "drepo.yaml:3: repositories[1].name: duplicate"},
		"two passwords": {"repositories:\n  - name: a\n    url: http://x/\n    password: p\n    password_env: X\n", "drepo.yaml:4: repositories[0].password: set only one"},
		"not a list":    {"repositories: yes\n", "drepo.yaml:1: repositories: must be a list"},
		"syntax":        {"source: [\n", "drepo.yaml: "},
		"limit":         {"peers:\n  limit_of_connections: 0\n", "drepo.yaml:2: peers.limit_of_connections: must be at least 1"},
		"static port":   {"peers:\n  static: [\"10.1.2.3:99999\"]\n", "drepo.yaml:2: peers.static[0]: port must be 1..65535"},
		"max upload":    {"serve:\n  max_upload: lots\n", "drepo.yaml:2: serve.max_upload: size"},
		"alias":         {"source: &a /x\nstore: *a\n", "aliases are not supported"},
		"client cert":   {"peers:\n  require_client_cert: true\n", "peers.require_client_cert: needs peers.ca_cert"},
		"peer tls":      {"peers:\n  tls_cert: a.crt\n", "peers.tls_cert: tls_cert and tls_key go together"},
	}
	for name, c := range cases {
		_, _, err := parseConfig("drepo.yaml", []byte(c.doc))
		if err == nil || !errors.Is(err, errConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", name, err, c.want)
		}
	}
}

func TestConfigDefaultsAndResolve(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DREPO_TEST_PW", "from-env")
	doc := "source: apps\nrepositories:\n  - {name: a, url: 'http://x/', password_file: pw, priority: -1}\n  - {name: b, url: 'http://y/', password_env: DREPO_TEST_PW}\n"
	path := filepath.Join(dir, "drepo.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, warns, err := loadConfig(path)
	if err != nil || len(warns) != 0 {
		t.Fatalf("loadConfig: %v %v", err, warns)
	}
	if cfg.Source != filepath.Join(dir, "apps") {
		t.Errorf("source not resolved: %s", cfg.Source)
	}
	pa, erra := cfg.secret(0)
	pb, errb := cfg.secret(1)
	if pa.Reveal() != "from-file" || pb.Reveal() != "from-env" || erra != nil || errb != nil {
		t.Errorf("passwords not resolved: %v %v", erra, errb)
	}
	if cfg.Repositories[0].Priority != -1 || cfg.Peers.HTTPPort != 22335 || cfg.Peers.DiscoveryPort != 22336 ||
		cfg.Peers.HTTPSPort != 22337 || cfg.Peers.LimitOfConnections != 1 || !cfg.Peers.Enabled {
		t.Errorf("defaults wrong: %+v", cfg)
	}
	t.Setenv("DREPO_TEST_PW", "")
	os.Unsetenv("DREPO_TEST_PW")
	cfg, _, err = loadConfig(path)
	if err != nil {
		t.Fatalf("an unset password_env must not fail loading: %v", err)
	}
	if _, err := cfg.secret(1); err == nil || !strings.Contains(err.Error(), "drepo.yaml:4: repositories[1].password_env: environment variable DREPO_TEST_PW is not set") {
		t.Errorf("unset password_env: %v", err)
	}
}

// TestSecretsNeverShown: config show (YAML and JSON) and the logs carry no password.
func TestSecretsNeverShown(t *testing.T) {
	dir := t.TempDir()
	const secret = "hunter2-very-secret"
	path := filepath.Join(dir, "drepo.yaml")
	doc := "repositories:\n  - name: a\n    url: http://x/\n    username: u\n    password: " + secret + "\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"config", "show"}, {"config", "show", "--json"}, {"--log-level", "debug", "config", "show"}} {
		code, out, errs := drepo(t, append([]string{"--config", path}, args...)...)
		if code != 0 || strings.Contains(out+errs, secret) || !strings.Contains(out, "***") {
			t.Errorf("%v: exit %d, secret shown or not masked:\n%s\n%s", args, code, out, errs)
		}
		if !strings.Contains(errs, "plain password") {
			t.Errorf("%v: no warning about the plain password: %s", args, errs)
		}
	}
	s := dav.NewSecret(secret)
	for _, f := range []string{s.String(), s.GoString()} {
		if strings.Contains(f, secret) {
			t.Errorf("Secret printed itself")
		}
	}
}

func TestConfigSearchOrder(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("DREPO_CONFIG", "")
	os.Unsetenv("DREPO_CONFIG")
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("source: "+src+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("drepo.yaml", "/from-cwd")
	envPath := write("env.yaml", "/from-env")
	flagPath := write("flag.yaml", "/from-flag")
	check := func(flag, want string) {
		t.Helper()
		p, err := findConfig(flag)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _, err := loadConfig(p)
		if err != nil || cfg.Source != want {
			t.Fatalf("flag %q: got %v %v, want %s", flag, cfg, err, want)
		}
	}
	check("", "/from-cwd")
	t.Setenv("DREPO_CONFIG", envPath)
	check("", "/from-env")
	check(flagPath, "/from-flag")
	t.Setenv("DREPO_CONFIG", filepath.Join(dir, "nope.yaml"))
	if _, err := findConfig(""); !errors.Is(err, errConfig) {
		t.Fatalf("missing DREPO_CONFIG file: %v", err)
	}
}

func TestReorderArgs(t *testing.T) {
	app := newApp(os.Stdout, os.Stderr)
	got := strings.Join(reorderArgs(app, []string{"drepo", "--config", "c.yaml", "manifest", "build", "DIR", "--app", "a", "--json", "-o=x", "--", "--lit"}), " ")
	want := "drepo --config c.yaml manifest build --app a --json -o=x DIR -- --lit"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("source: /x\nrepositories:\n  - {name: a, url: 'http://x/', priority: -1}\npeers: {https: false}\n"))
	f.Add([]byte("peers:\n  http_port: 0x10\n"))
	f.Add([]byte("repositories: [[1]]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, _, err := parseConfig("f.yaml", b)
		if err != nil {
			if !errors.Is(err, errConfig) {
				t.Fatalf("error does not classify as a config error: %v", err)
			}
			return
		}
		if cfg.Peers.LimitOfConnections < 1 {
			t.Fatal("accepted an invalid limit")
		}
	})
}
