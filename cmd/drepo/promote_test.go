package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drepo-dev/drepo/webdavsrv/davtest"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The release gate end to end: with publish: gated, sync updates the staging repository
// (drepo serve) only; the live ones (Apache mod_dav and drepo serve) keep their index
// until promote, after which each one's index.json and signature are byte-identical to
// staging's. Naming a live repository to sync is refused.
func TestGatedPublishAndPromote(t *testing.T) {
	staging, apache, live := davtest.StartDrepo(t, davtest.DrepoOptions{}), davtest.StartApache(t), davtest.StartDrepo(t, davtest.DrepoOptions{})
	src, cfg := adminConfig(t, fmt.Sprintf(`publish: gated
repositories:
  - {name: staging, url: %q, priority: -1, username: %s, password_env: STAGING_PW}
  - {name: apache, url: %q, priority: 10, username: %s, password_env: APACHE_PW}
  - {name: live, url: %q, priority: 5, username: %s, password_env: LIVE_PW}
`, staging.URL, staging.User, apache.URL, apache.User, live.URL, live.User))
	t.Setenv("STAGING_PW", staging.Password)
	t.Setenv("APACHE_PW", apache.Password)
	t.Setenv("LIVE_PW", live.Password)
	index := func(s *davtest.Server) []byte { b, _ := os.ReadFile(filepath.Join(s.Root, "index.json")); return b }
	sig := func(s *davtest.Server) []byte {
		b, _ := os.ReadFile(filepath.Join(s.Root, "index.json.minisig"))
		return b
	}
	for v := 1; v <= 2; v++ {
		writeVersion(t, src, v, 3)
		before := index(apache)
		if code, out, errs := drepo(t, "--config", cfg, "sync"); code != 0 {
			t.Fatalf("sync v%d: %d\n%s%s", v, code, out, errs)
		}
		if index(staging) == nil || !bytes.Equal(index(apache), before) || !bytes.Equal(index(live), before) {
			t.Fatalf("v%d: a gated sync changed a live repository", v)
		}
		if code, out, errs := drepo(t, "--config", cfg, "promote", "--dry-run"); code != 0 || !strings.Contains(out, "planned") || !bytes.Equal(index(apache), before) {
			t.Fatalf("promote --dry-run: %d\n%s%s", code, out, errs)
		}
		if code, out, errs := drepo(t, "--config", cfg, "promote"); code != 0 {
			t.Fatalf("promote v%d: %d\n%s%s", v, code, out, errs)
		}
		for _, s := range []*davtest.Server{apache, live} {
			if !bytes.Equal(index(s), index(staging)) || !bytes.Equal(sig(s), sig(staging)) {
				t.Fatalf("v%d: a live repository's index is not staging's, byte for byte", v)
			}
		}
		if code, out, errs := drepo(t, "--config", cfg, "verify"); code != 0 {
			t.Fatalf("verify after promote v%d: %d\n%s%s", v, code, out, errs)
		}
	}
	if code, _, errs := drepo(t, "--config", cfg, "sync", "--repo", "apache"); code != exitUsage || !strings.Contains(errs, "promote") {
		t.Fatalf("sync --repo of a live repository under publish: gated: %d %s", code, errs)
	}
}

// verify fails (exit 1) on a repository a sync did not reach (lagging) and on a wrong
// password where reads are open, naming each.
func TestVerifyLaggingAndWrongPassword(t *testing.T) {
	a, b := davtest.StartDrepo(t, davtest.DrepoOptions{AnonymousRead: true}), davtest.StartDrepo(t, davtest.DrepoOptions{AnonymousRead: true})
	src, cfg := adminConfig(t, fmt.Sprintf(`repositories:
  - {name: a, url: %q, priority: 10, username: %s, password_env: A_PW}
  - {name: b, url: %q, priority: 5, username: %s, password_env: B_PW}
`, a.URL, a.User, b.URL, b.User))
	dir := filepath.Dir(cfg)
	t.Setenv("A_PW", a.Password)
	t.Setenv("B_PW", b.Password)
	writeVersion(t, src, 1, 1)
	if code, out, errs := drepo(t, "--config", cfg, "sync"); code != 0 {
		t.Fatalf("sync: %d\n%s%s", code, out, errs)
	}
	if code, out, errs := drepo(t, "--config", cfg, "verify"); code != 0 {
		t.Fatalf("verify of two repositories in step: %d\n%s%s", code, out, errs)
	}
	writeVersion(t, src, 2, 1)
	if code, out, errs := drepo(t, "--config", cfg, "sync", "--repo", "a"); code != 0 {
		t.Fatalf("sync --repo a: %d\n%s%s", code, out, errs)
	}
	prom := filepath.Join(dir, "drepo.prom")
	code, out, _ := drepo(t, "--config", cfg, "verify", "--metrics", prom)
	if code != exitFailure || !strings.Contains(out, "b: lagging index.json: serial 1, behind serial 2") {
		t.Fatalf("verify with b behind: exit %d\n%s", code, out)
	}
	f, err := os.Open(prom)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(f)
	f.Close()
	if err != nil {
		t.Fatalf("verify --metrics wrote what Prometheus cannot read: %v", err)
	}
	okByRepo := map[string]float64{}
	for _, m := range families["drepo_verify_ok"].GetMetric() {
		okByRepo[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
	}
	if okByRepo["a"] != 1 || okByRepo["b"] != 0 || families["drepo_verify_last_run_timestamp_seconds"] == nil {
		t.Fatalf("verify --metrics: %v", okByRepo)
	}
	if code, out, errs := drepo(t, "--config", cfg, "sync"); code != 0 {
		t.Fatalf("sync: %d\n%s%s", code, out, errs)
	}
	t.Setenv("B_PW", "wrong")
	code, out, _ = drepo(t, "--config", cfg, "verify")
	if code != exitFailure || !strings.Contains(out, "b: write "+b.URL) || !strings.Contains(out, "401") {
		t.Fatalf("verify with a wrong password and open reads: exit %d\n%s", code, out)
	}
	if code, out, _ := drepo(t, "--config", cfg, "verify", "--no-check-write"); code != 0 {
		t.Fatalf("verify --no-check-write: exit %d\n%s", code, out)
	}
}

// A repository URL whose folder does not exist (a typo) is refused with exit 2 and how to
// create it; --init creates it.
func TestSyncRefusesAMissingRepositoryFolder(t *testing.T) {
	s := davtest.StartDrepo(t, davtest.DrepoOptions{})
	src, cfg := adminConfig(t, fmt.Sprintf("repositories:\n  - {name: r, url: %q, username: %s, password_env: R_PW}\n", s.URL+"aps/", s.User))
	writeVersion(t, src, 1, 1)
	t.Setenv("R_PW", s.Password)
	code, _, errs := drepo(t, "--config", cfg, "sync")
	if code != exitUsage || !strings.Contains(errs, "no repository at "+s.URL+"aps/") || !strings.Contains(errs, "--init") {
		t.Fatalf("sync to a folder that does not exist: exit %d\n%s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(s.Root, "aps")); err == nil {
		t.Fatal("the refused sync created the folder")
	}
	if code, out, errs := drepo(t, "--config", cfg, "sync", "--init"); code != 0 {
		t.Fatalf("sync --init: %d\n%s%s", code, out, errs)
	}
	if code, out, errs := drepo(t, "--config", cfg, "sync"); code != 0 {
		t.Fatalf("the next sync: %d\n%s%s", code, out, errs)
	}
}

// adminConfig makes a key pair and an admin config (source, signing_key, trusted_keys,
// state_dir, then rest) in a new folder; it returns the source folder and the config.
func adminConfig(t *testing.T, rest string) (src, cfg string) {
	t.Helper()
	dir := t.TempDir()
	if code, _, errs := drepo(t, "keygen", "--out", filepath.Join(dir, "k")); code != 0 {
		t.Fatal(errs)
	}
	src, cfg = filepath.Join(dir, "src"), filepath.Join(dir, "drepo.yaml")
	doc := fmt.Sprintf("source: %s\nsigning_key: k.key\ntrusted_keys: [k.pub]\nstate_dir: state\n%s", src, rest)
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return src, cfg
}
