package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// deltaPair is two consecutive versions of a real Debian package: unpacked and packed as
// one uncompressed tar each, the shape of an OS or app image whose every binary a rebuild
// changes.
type deltaPair struct{ pkg, old, new string }

var deltaPairs = []deltaPair{
	{"libreoffice-core", "4:7.4.7-1+deb12u13", "4:7.4.7-1+deb12u14"},
	{"openjdk-17-jre-headless", "17.0.19+10-1~deb12u2", "17.0.21.1+2-1~deb12u1"},
}

// deltaScenario: the WAN bytes of a point release for a device that holds the version
// before (a delta) against the file's size and zstd --patch-from, and what building the
// delta costs sync against hashing the file.
func deltaScenario() Scenario {
	return Scenario{
		Name: "delta",
		Doc:  "a device updating real Debian packages (as tar images): WAN bytes vs the file and zstd --patch-from; sync's delta build vs hashing",
		Setup: func(ctx context.Context, env *Env) (*Prepared, error) {
			var cmds []Command
			var skipped []string
			for _, p := range deltaPairs {
				oldTar, newTar, err := debTars(ctx, filepath.Join(env.Workdir, "delta-debs"), p)
				if err != nil {
					skipped = append(skipped, fmt.Sprintf("%s %s → %s (%v)", p.pkg, p.old, p.new, err))
					continue
				}
				cmds = append(cmds, Command{Name: "update " + p.pkg, Run: func(ctx context.Context) (string, error) {
					return deltaRound(ctx, env, p, oldTar, newTar)
				}})
			}
			if len(cmds) == 0 {
				return nil, fmt.Errorf("no package pair could be downloaded: %s", strings.Join(skipped, "; "))
			}
			note := "Debian packages unpacked and packed as tar (--sort=name --mtime=@0), repository drepo serve on loopback"
			if len(skipped) > 0 {
				note += "; skipped (no longer served?): " + strings.Join(skipped, "; ")
			}
			return &Prepared{Note: note, Commands: cmds, NoWarmup: true}, nil
		},
	}
}

// debTars downloads (once) the pair into dir and packs each version as a tar.
func debTars(ctx context.Context, dir string, p deltaPair) (string, string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	var tars []string
	for _, v := range []string{p.old, p.new} {
		name := strings.NewReplacer(":", "_", "~", "_", "+", "_").Replace(p.pkg + "_" + v)
		tar := filepath.Join(dir, name+".tar")
		tars = append(tars, tar)
		if _, err := os.Stat(tar); err == nil {
			continue
		}
		dl := filepath.Join(dir, name)
		if err := os.MkdirAll(dl, 0o755); err != nil {
			return "", "", err
		}
		get := exec.CommandContext(ctx, "apt-get", "download", p.pkg+"="+v)
		get.Dir = dl
		if out, err := get.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("apt-get download %s=%s: %v %s", p.pkg, v, err, lastLines(string(out), 2))
		}
		debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
		if len(debs) != 1 {
			return "", "", errors.New("apt-get download gave no .deb")
		}
		root := filepath.Join(dl, "root")
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("dpkg-deb -x: %v %s", err, out)
		}
		if out, err := exec.CommandContext(ctx, "tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-C", root, "-cf", tar+".tmp", ".").CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("tar: %v %s", err, out)
		}
		if err := os.Rename(tar+".tmp", tar); err != nil {
			return "", "", err
		}
	}
	return tars[0], tars[1], nil
}

// deltaRound publishes the old version, then the new one (timed: the delta build), lets a
// device fetch the old, then the new (timed), and says what crossed the "WAN" (the
// repository's access log), against the file, zstd --patch-from and hashing.
func deltaRound(ctx context.Context, env *Env, p deltaPair, oldTar, newTar string) (string, error) {
	dir, err := os.MkdirTemp(env.Workdir, "delta-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	if out, err := exec.CommandContext(ctx, env.Drepo, "keygen", "--out", filepath.Join(dir, "key")).CombinedOutput(); err != nil {
		return "", fmt.Errorf("keygen: %v %s", err, out)
	}
	port, err := davtest.FreePort()
	if err != nil {
		return "", err
	}
	repoLog := filepath.Join(dir, "serve.log")
	logf, err := os.Create(repoLog)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	serve := exec.CommandContext(sctx, env.Drepo, "serve", "--root", filepath.Join(dir, "repo"), "--no-auth", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	serve.Stderr = logf
	if err := os.MkdirAll(filepath.Join(dir, "repo"), 0o755); err != nil {
		return "", err
	}
	if err := serve.Start(); err != nil {
		return "", err
	}
	defer func() { stop(); _ = serve.Wait() }()
	src := filepath.Join(dir, "source")
	admin := filepath.Join(dir, "admin.yaml")
	device := filepath.Join(dir, "device.yaml")
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	// r is the repository devices read; site a site's own repository that gets deltas only
	os.WriteFile(admin, []byte(fmt.Sprintf("source: %s\nsigning_key: %s\nstate_dir: %s\nrepositories:\n  - {name: r, url: %q}\n  - {name: site, url: %q, deltas_only: true}\n",
		src, filepath.Join(dir, "key.key"), filepath.Join(dir, "state"), url, url+"site/")), 0o644)
	os.WriteFile(device, []byte(fmt.Sprintf("trusted_keys: [%s]\nstore: %s\npeers: {enabled: false}\nrepositories:\n  - {name: r, url: %q}\n", filepath.Join(dir, "key.pub"), filepath.Join(dir, "store"), url)), 0o644)
	fresh := filepath.Join(dir, "fresh.yaml") // a device without the old version
	os.WriteFile(fresh, []byte(fmt.Sprintf("trusted_keys: [%s]\nstore: %s\npeers: {enabled: false}\nrepositories:\n  - {name: r, url: %q}\n", filepath.Join(dir, "key.pub"), filepath.Join(dir, "store2"), url)), 0o644)
	place := func(version, tar string) error {
		d := filepath.Join(src, "image", version)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		return os.Link(tar, filepath.Join(d, "image.tar"))
	}
	run := func(args ...string) ([]byte, *syscall.Rusage, time.Duration, error) {
		cmd := exec.CommandContext(ctx, env.Drepo, args...)
		start := time.Now()
		out, err := cmd.Output()
		took := time.Since(start)
		var ru *syscall.Rusage
		if cmd.ProcessState != nil {
			ru, _ = cmd.ProcessState.SysUsage().(*syscall.Rusage)
		}
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("%v: %s", err, lastLines(string(ee.Stderr), 3))
			}
		}
		return out, ru, took, err
	}
	if err := place("1", oldTar); err != nil {
		return "", err
	}
	var syncErr error
	for range 50 { // the server may still be starting
		if _, _, _, syncErr = run("--config", admin, "--log-level", "error", "sync", "--init"); syncErr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if syncErr != nil {
		return "", syncErr
	}
	if _, _, _, err := run("--config", device, "--log-level", "error", "fetch", "image@1"); err != nil {
		return "", err
	}
	if err := place("2", newTar); err != nil {
		return "", err
	}
	syncOut, syncRU, syncTook, err := run("--config", admin, "--log-level", "error", "sync", "--json")
	if err != nil {
		return "", err
	}
	var syncRep struct {
		DeltaBuild time.Duration `json:"delta_build_ns"`
		Repos      []struct {
			Name  string `json:"name"`
			Bytes int64  `json:"uploaded_bytes"`
		} `json:"repositories"`
	}
	_ = json.Unmarshal(syncOut, &syncRep)
	var siteBytes int64
	for _, r := range syncRep.Repos {
		if r.Name == "site" {
			siteBytes = r.Bytes
		}
	}
	before := repoBytes(repoLog)
	out, fetchRU, fetchTook, err := run("--config", device, "--log-level", "error", "fetch", "image@2", "--json")
	if err != nil {
		return "", err
	}
	wan := repoBytes(repoLog) - before
	before = repoBytes(repoLog)
	if _, _, _, err := run("--config", fresh, "--log-level", "error", "fetch", "image@2"); err != nil {
		return "", err
	}
	wanFresh := repoBytes(repoLog) - before
	var rep struct {
		Delta      int64 `json:"delta_bytes"`
		Rebuilt    int64 `json:"rebuilt_from_delta_bytes"`
		Downloaded int64 `json:"downloaded_bytes"`
	}
	_ = json.Unmarshal(out, &rep)
	fi, err := os.Stat(newTar)
	if err != nil {
		return "", err
	}
	// the build again with nothing else on the cores, best of three like the hashing it is
	// set against: the cache of deltas emptied, a sync that has nothing to upload rebuilds
	// them (the same bytes)
	alone := time.Duration(1<<63 - 1)
	for range 3 {
		if err := os.RemoveAll(filepath.Join(dir, "state", "deltas")); err != nil {
			return "", err
		}
		out, _, _, err := run("--config", admin, "--log-level", "error", "sync", "--json")
		if err != nil {
			return "", err
		}
		var again struct {
			Built      int           `json:"deltas_built"`
			DeltaBuild time.Duration `json:"delta_build_ns"`
		}
		if err := json.Unmarshal(out, &again); err != nil || again.Built != 1 {
			return "", fmt.Errorf("the sync that rebuilds the delta built %d (%v)", again.Built, err)
		}
		alone = min(alone, again.DeltaBuild)
	}
	hashTook := timeHash(newTar)
	note := fmt.Sprintf("%s: new file %.1f MB; WAN %.1f MB (%.1f %%: delta %.1f MB, chunks %.1f MB); fetch %.2f s, peak RSS %d MiB; delta build %.2f s in the sync (uploads to the loopback repository beside it), %.2f s alone (best of 3) (hashing the file %.2f s: %.1fx and %.1fx); whole sync of the new version %.2f s, peak RSS %d MiB",
		p.pkg, mb(fi.Size()), mb(wan), 100*float64(wan)/float64(fi.Size()), mb(rep.Delta), mb(rep.Downloaded), fetchTook.Seconds(), maxRSS(fetchRU)>>20,
		syncRep.DeltaBuild.Seconds(), alone.Seconds(), hashTook.Seconds(), syncRep.DeltaBuild.Seconds()/hashTook.Seconds(), alone.Seconds()/hashTook.Seconds(),
		syncTook.Seconds(), maxRSS(syncRU)>>20)
	if o := timeOpenSSL(ctx, newTar); o > 0 {
		note += fmt.Sprintf(" (openssl dgst -sha256 %.2f s: alone %.1fx)", o.Seconds(), alone.Seconds()/o.Seconds())
	}
	note += fmt.Sprintf("; upload to a deltas_only repository %.1f MB; a device without the old version: WAN %.1f MB (%.1f %%, packed chunks)", mb(siteBytes), mb(wanFresh), 100*float64(wanFresh)/float64(fi.Size()))
	if z := patchFrom(ctx, oldTar, newTar); z > 0 {
		note += fmt.Sprintf("; zstd -19 --long=31 --patch-from %.1f MB (WAN/zstd %.2fx, upload/zstd %.2fx)", mb(z), float64(wan)/float64(z), float64(siteBytes)/float64(z))
	}
	return note, nil
}

func mb(n int64) float64 { return float64(n) / 1e6 }

func maxRSS(ru *syscall.Rusage) int64 {
	if ru == nil {
		return 0
	}
	return ru.Maxrss << 10 // KiB on Linux
}

// timeHash is how long reading and hashing the file takes (the page cache warm; the best
// of three, the floor most favourable to hashing).
func timeHash(path string) time.Duration {
	best := time.Duration(1<<63 - 1)
	for range 3 {
		f, err := os.Open(path)
		if err != nil {
			return 0
		}
		start := time.Now()
		_, _ = io.Copy(sha256.New(), f)
		best = min(best, time.Since(start))
		f.Close()
	}
	return best
}

// timeOpenSSL is how long `openssl dgst -sha256` takes over the file (best of three); 0
// without openssl.
func timeOpenSSL(ctx context.Context, path string) time.Duration {
	if _, err := exec.LookPath("openssl"); err != nil {
		return 0
	}
	best := time.Duration(1<<63 - 1)
	for range 3 {
		start := time.Now()
		if err := exec.CommandContext(ctx, "openssl", "dgst", "-sha256", path).Run(); err != nil {
			return 0
		}
		best = min(best, time.Since(start))
	}
	return best
}

// patchFrom is the size of zstd --patch-from old → new (computed once, kept beside the
// tar); 0 without zstd.
func patchFrom(ctx context.Context, oldTar, newTar string) int64 {
	out := newTar + ".patch-from.zst"
	if fi, err := os.Stat(out); err == nil {
		return fi.Size()
	}
	if _, err := exec.LookPath("zstd"); err != nil {
		return 0
	}
	if err := exec.CommandContext(ctx, "zstd", "-q", "-f", "-19", "--long=31", "--patch-from="+oldTar, newTar, "-o", out).Run(); err != nil {
		return 0
	}
	fi, err := os.Stat(out)
	if err != nil {
		return 0
	}
	return fi.Size()
}
