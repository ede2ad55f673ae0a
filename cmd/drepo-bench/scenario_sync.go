package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// syncBench is the shared set-up of the sync scenarios: an Apache mod_dav repository, a
// drepo config pointing at it, and rclone's connection flags for the same server. The
// repository takes writes with a password and serves reads without one, as a device
// repository is served, unless env.AuthReads: Apache then runs bcrypt on every request and
// a scenario of many small requests measures that, for every client alike.
type syncBench struct {
	dir, src, cfg, state string
	apache               *davtest.Apache
	rclone               string
	rcFlags              []string
}

// rcloneBinary prefers a current rclone (go install github.com/rclone/rclone@v1.76.0) over
// Debian's 1.60, which pauses 10 ms between requests.
func rcloneBinary() (string, string, error) {
	cands := []string{os.Getenv("RCLONE")}
	if home, err := os.UserHomeDir(); err == nil {
		cands = append(cands, filepath.Join(home, "go", "bin", "rclone"))
	}
	if p, err := exec.LookPath("rclone"); err == nil {
		cands = append(cands, p)
	}
	for _, c := range cands {
		if c == "" {
			continue
		}
		if out, err := exec.Command(c, "version").Output(); err == nil {
			return c, strings.Fields(string(out))[1], nil
		}
	}
	return "", "", fmt.Errorf("rclone is needed (go install github.com/rclone/rclone@v1.76.0)")
}

func newSyncBench(env *Env, name string) (*syncBench, string, error) {
	b := &syncBench{dir: filepath.Join(env.Workdir, name)}
	_ = os.RemoveAll(b.dir)
	b.src, b.state = filepath.Join(b.dir, "source"), filepath.Join(b.dir, "state")
	if err := os.MkdirAll(b.src, 0o755); err != nil {
		return nil, "", err
	}
	bin, err := exec.LookPath("apache2")
	if err != nil {
		bin = "/usr/sbin/apache2"
	}
	abase := filepath.Join(b.dir, "apache")
	if err := os.MkdirAll(abase, 0o755); err != nil {
		return nil, "", err
	}
	if b.apache, err = davtest.LaunchApache(bin, abase, davtest.ApacheOptions{User: benchUser, Password: benchPass, AnonymousRead: !env.AuthReads}); err != nil {
		return nil, "", err
	}
	prefix := filepath.Join(b.dir, "key")
	if out, err := exec.Command(env.Drepo, "keygen", "--out", prefix).CombinedOutput(); err != nil {
		b.apache.Stop()
		return nil, "", fmt.Errorf("keygen: %v %s", err, out)
	}
	b.cfg = filepath.Join(b.dir, "drepo.yaml")
	cfg := fmt.Sprintf("source: %s\nsigning_key: %s.key\nstate_dir: %s\nrepositories:\n  - {name: apache, url: %q, priority: 10, username: %s, password_env: BENCH_PW}\n",
		b.src, prefix, b.state, b.apache.URL+"drepo/", benchUser)
	if err := os.WriteFile(b.cfg, []byte(cfg), 0o644); err != nil {
		b.apache.Stop()
		return nil, "", err
	}
	os.Setenv("BENCH_PW", benchPass)
	rc, ver, err := rcloneBinary()
	if err != nil {
		b.apache.Stop()
		return nil, "", err
	}
	obscured, err := exec.Command(rc, "obscure", benchPass).Output()
	if err != nil {
		b.apache.Stop()
		return nil, "", err
	}
	b.rclone = rc
	b.rcFlags = []string{"--config", "/dev/null", "--webdav-url", b.apache.URL, "--webdav-vendor", "other",
		"--webdav-user", benchUser, "--webdav-pass", strings.TrimSpace(string(obscured)), "--webdav-pacer-min-sleep", "0"}
	return b, "rclone " + ver, nil
}

func (b *syncBench) drepo(env *Env, args ...string) []string {
	return append([]string{env.Drepo, "--config", b.cfg, "--log-level", "error"}, args...)
}

func (b *syncBench) rc(args ...string) []string {
	return append(append([]string{b.rclone}, args...), b.rcFlags...)
}

// clearRemote empties the Apache root (untimed, between runs).
func (b *syncBench) clearRemote() error {
	ents, err := os.ReadDir(b.apache.Root)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(b.apache.Root, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// fresh makes the next drepo run a first sync: no state (so every file is hashed), empty server.
func (b *syncBench) fresh() error {
	if err := os.RemoveAll(b.state); err != nil {
		return err
	}
	return b.clearRemote()
}

// bench2G prepares a sync bench whose source holds the 2 GiB file as base_system@12.7.4
// (hard-linked from the hash scenario's file, made once).
func bench2G(env *Env, name string) (b *syncBench, file, ver string, err error) {
	file = filepath.Join(env.Workdir, "hash", "app", "image.bin")
	if err := ensureRandomFile(file, hashFileSize); err != nil {
		return nil, "", "", err
	}
	if b, ver, err = newSyncBench(env, name); err != nil {
		return nil, "", "", err
	}
	vdir := filepath.Join(b.src, "base_system", "12.7.4")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		b.apache.Stop()
		return nil, "", "", err
	}
	if err := os.Link(file, filepath.Join(vdir, "image.bin")); err != nil {
		b.apache.Stop()
		return nil, "", "", err
	}
	return b, file, ver, nil
}

func sync2GScenario() Scenario {
	return Scenario{
		Name: "sync-2g",
		Doc:  "first sync of one 2 GiB file (hashing included) to Apache vs curl -T and rclone copyto",
		Setup: func(ctx context.Context, env *Env) (*Prepared, error) {
			b, file, ver, err := bench2G(env, "sync-2g")
			if err != nil {
				return nil, err
			}
			curl, err := exec.LookPath("curl")
			if err != nil {
				return nil, err
			}
			return &Prepared{
				Note:    "one 2 GiB file to Apache mod_dav over loopback; " + ver,
				Cleanup: b.apache.Stop,
				Commands: []Command{
					{Name: "drepo sync (first)", Argv: b.drepo(env, "sync", "--init"), Before: b.fresh},
					{Name: "curl -T", Argv: []string{curl, "-sSf", "-u", benchUser + ":" + benchPass, "-T", file, b.apache.URL + "curl.bin"}, Before: b.clearRemote},
					{Name: "rclone copyto", Argv: b.rc("copyto", file, ":webdav:rclone.bin"), Before: b.clearRemote},
					// the floor for any tool that names a blob by its SHA-256: one hash pass
					{Name: "openssl dgst -sha256 (floor)", Argv: []string{"openssl", "dgst", "-sha256", file}},
				},
			}, nil
		},
	}
}

// smallFiles writes n files of 1–4 KiB into dirs folders under root/<app>/1.0/.
func smallFiles(root string, n, dirs int) error {
	buf := make([]byte, 4096)
	for i := 0; i < n; i++ {
		d := filepath.Join(root, fmt.Sprintf("app%03d", i%dirs), "1.0")
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		size := 1024 + (i*7919)%3073
		for j := 0; j < size; j++ {
			buf[j] = byte(i*31 + j*17 + j>>8)
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d", i)), buf[:size], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// manyScenario: 10,000 files of 1–4 KiB in 100 folders. kind: "first" (sync vs rclone copy),
// "noop" (sync vs rclone sync, nothing changed), "verify" (verify --deep vs rclone check
// --download).
func manyScenario(kind string) Scenario {
	docs := map[string]string{
		"first":  "first sync of 10,000 files of 1–4 KiB in 100 folders to Apache vs rclone copy",
		"noop":   "no-op sync of the same vs rclone sync",
		"verify": "verify --deep of the same vs rclone check --download",
	}
	return Scenario{
		Name: "many-" + kind,
		Doc:  docs[kind],
		Setup: func(ctx context.Context, env *Env) (*Prepared, error) {
			b, ver, err := newSyncBench(env, "many-"+kind)
			if err != nil {
				return nil, err
			}
			if err := smallFiles(b.src, 10000, 100); err != nil {
				return nil, err
			}
			reads := "anonymous reads"
			if env.AuthReads {
				reads = "bcrypt on every request"
			}
			p := &Prepared{Note: "10,000 files of 1–4 KiB in 100 folders, Apache mod_dav over loopback (" + reads + "); " + ver, Cleanup: b.apache.Stop}
			// rclone's copy lives beside drepo's repository on the same server
			rcDst := ":webdav:rclone"
			switch kind {
			case "first":
				p.Commands = []Command{
					{Name: "drepo sync (first)", Argv: b.drepo(env, "sync", "--init"), Before: b.fresh},
					{Name: "rclone copy", Argv: b.rc("copy", b.src, rcDst, "--transfers", "4"), Before: b.clearRemote},
				}
			default:
				// both sides uploaded once, untimed
				for _, argv := range [][]string{b.drepo(env, "sync"), b.rc("copy", b.src, rcDst, "--transfers", "4")} {
					if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
						b.apache.Stop()
						return nil, fmt.Errorf("%s: %v %s", argv[0], err, out)
					}
				}
				if kind == "noop" {
					p.Commands = []Command{
						{Name: "drepo sync (no-op)", Argv: b.drepo(env, "sync")},
						{Name: "rclone sync", Argv: b.rc("sync", b.src, rcDst)},
					}
				} else {
					p.Commands = []Command{
						{Name: "drepo verify --deep", Argv: b.drepo(env, "verify", "--deep")},
						{Name: "rclone check --download", Argv: b.rc("check", b.src, rcDst, "--download")},
					}
					if env.Compare != "" {
						argv := b.drepo(env, "verify", "--deep")
						argv[0] = env.Compare
						p.Commands = append(p.Commands, Command{Name: "drepo verify --deep (" + filepath.Base(env.Compare) + ")", Argv: argv})
					}
				}
			}
			return p, nil
		},
	}
}
