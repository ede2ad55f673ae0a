package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// needCommand finds a tool a test needs: missing, the test fails under CI=true and skips
// elsewhere, saying so.
func needCommand(t *testing.T, name string, paths ...string) string {
	t.Helper()
	for _, p := range append(paths, name) {
		if full, err := exec.LookPath(p); err == nil {
			return full
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; make test installs it", name)
	}
	t.Skipf("%s is not installed; run make test to install it", name)
	return ""
}

// make package builds a .deb with the binary, the hardened systemd units, the example
// config as a conffile, the man page and the completions; the units pass systemd-analyze
// verify, the package lintian where it is installed.
func TestPackage(t *testing.T) {
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	needCommand(t, "nfpm", filepath.Join(strings.TrimSpace(string(gopath)), "bin", "nfpm"))
	needCommand(t, "dpkg-deb")
	out := t.TempDir()
	if b, err := exec.Command("make", "-C", "../..", "package", "PKG_OUT="+out).CombinedOutput(); err != nil {
		t.Fatalf("make package: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "drepo_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("want one .deb in %s, got %v", out, debs)
	}
	deb := debs[0]
	list, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"./usr/bin/drepo", "./etc/drepo/drepo.yaml", "./usr/share/man/man1/drepo.1.gz",
		"./usr/share/bash-completion/completions/drepo", "./usr/share/zsh/vendor-completions/_drepo", "./usr/share/fish/vendor_completions.d/drepo.fish",
		"./usr/share/doc/drepo/copyright", "./usr/lib/systemd/system/drepo-peer.service", "./usr/lib/systemd/system/drepo-fetch@.service",
		"./usr/lib/systemd/system/drepo-fetch@.timer", "./usr/lib/systemd/system/drepo-verify.service", "./usr/lib/systemd/system/drepo-verify.timer",
		"./usr/lib/systemd/system/drepo-serve.service"} {
		if !strings.Contains(string(list), " "+want+"\n") {
			t.Errorf("the package has no %s", want)
		}
	}
	info, err := exec.Command("dpkg-deb", "-I", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Package: drepo", "Architecture: ", "conffiles"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("dpkg-deb -I: no %q in\n%s", want, info)
		}
	}
	if conf, _ := exec.Command("dpkg-deb", "-f", deb, "Version").Output(); len(strings.TrimSpace(string(conf))) == 0 || strings.Contains(string(conf), "-") {
		t.Errorf("version %q", conf)
	}
	root := t.TempDir()
	if b, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v %s", err, b)
	}
	if b, err := exec.Command("dpkg-deb", "--ctrl-tarfile", deb).Output(); err != nil || len(b) == 0 {
		t.Fatalf("control: %v", err)
	}
	units := filepath.Join(root, "usr", "lib", "systemd", "system")
	for _, u := range []string{"drepo-peer.service", "drepo-serve.service", "drepo-verify.service", "drepo-fetch@.service"} {
		b, _ := os.ReadFile(filepath.Join(units, u))
		for _, want := range []string{"User=drepo", "ProtectSystem=strict", "StateDirectory=drepo", "NoNewPrivileges=yes"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s: not hardened: no %s", u, want)
			}
		}
	}
	if b, _ := os.ReadFile(filepath.Join(units, "drepo-fetch@.timer")); !strings.Contains(string(b), "RandomizedDelaySec=") || !strings.Contains(string(b), "Persistent=true") {
		t.Error("drepo-fetch@.timer: no RandomizedDelaySec or Persistent")
	}
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		// verify the units as installed, the binary where the package put it here
		dir := t.TempDir()
		ents, _ := os.ReadDir(units)
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(units, e.Name()))
			os.WriteFile(filepath.Join(dir, e.Name()), []byte(strings.ReplaceAll(string(b), "/usr/bin/drepo", filepath.Join(root, "usr", "bin", "drepo"))), 0o644)
		}
		os.Rename(filepath.Join(dir, "drepo-fetch@.timer"), filepath.Join(dir, "drepo-fetch@app.timer"))
		cmd := exec.Command(sa, "verify", "--man=no", "drepo-peer.service", "drepo-serve.service", "drepo-verify.service", "drepo-verify.timer", "drepo-fetch@app.timer", "drepo-fetch@app.service")
		cmd.Dir = dir
		if b, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(b))) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, b)
		}
	} else {
		t.Log("systemd-analyze is not installed: the units' syntax is not checked here")
	}
	if lt, err := exec.LookPath("lintian"); err == nil {
		if b, err := exec.Command(lt, "--fail-on", "error", deb).CombinedOutput(); err != nil {
			t.Errorf("lintian: %v\n%s", err, b)
		}
	} else {
		t.Log("lintian is not installed: not run")
	}
	if b, err := exec.Command(filepath.Join(root, "usr", "bin", "drepo"), "--version").Output(); err != nil || !strings.Contains(string(b), "license Apache-2.0") {
		t.Errorf("the packaged binary: %v %s", err, b)
	}
}
