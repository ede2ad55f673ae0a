package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// lanScenario: N devices in network namespaces, each link shaped with tc tbf, a repository
// on one more host; the time until all N hold a 256 MiB app and the bytes the repository
// served, for drepo as built (peers before the repository, serving while downloading), the
// whole-file cascade (peers serve complete blobs only), every device from the repository,
// and one device alone. A round is timed from the moment the fetches start until all hold
// the app; the devices' peer daemons are started before, untimed, as they run all the time
// on a device. Needs root, iproute2 and tc; everything stays in the namespaces.
func lanScenario() Scenario {
	return Scenario{
		Name: "lan",
		Doc:  "16 devices, 100 Mbit/s links (tc tbf), a 256 MiB app on one repository host: time until all hold it (root)",
		Setup: func(ctx context.Context, env *Env) (*Prepared, error) {
			if os.Geteuid() != 0 {
				return nil, errors.New("lan needs root (network namespaces, tc)")
			}
			n, size, rate := 16, int64(256<<20), "100mbit"
			if v, err := strconv.Atoi(os.Getenv("DREPO_BENCH_LAN_N")); err == nil && v > 0 {
				n = v // a quicker look
			}
			dir := filepath.Join(env.Workdir, "lan")
			_ = os.RemoveAll(dir)
			src := filepath.Join(dir, "source", "os", "1.0")
			if err := os.MkdirAll(src, 0o755); err != nil {
				return nil, err
			}
			if err := ensureRandomFile(filepath.Join(src, "image.bin"), size); err != nil {
				return nil, err
			}
			repo := filepath.Join(dir, "repo")
			if err := publishLocal(ctx, env.Drepo, dir, repo); err != nil {
				return nil, err
			}
			lan, err := davtest.NewLAN(davtest.LANPrefix("b"), n+1, rate)
			if err != nil {
				return nil, err
			}
			repoLog := filepath.Join(dir, "repo.log")
			logf, err := os.Create(repoLog)
			if err != nil {
				lan.Close()
				return nil, err
			}
			sctx, stop := context.WithCancel(context.Background())
			serve := lan.Command(sctx, 0, env.Drepo, "serve", "--root", repo, "--no-auth", "--no-auth-any-address", "--listen", lan.Addr(0)+":8080")
			serve.Stderr = logf
			if err := serve.Start(); err != nil {
				stop()
				lan.Close()
				return nil, err
			}
			cleanup := func() { stop(); _ = serve.Wait(); logf.Close(); lan.Close() }
			// the repository listening before the first round (which no longer starts with
			// daemons and a pause)
			for i := 0; ; i++ {
				if b, _ := os.ReadFile(repoLog); strings.Contains(string(b), "serving WebDAV") {
					break
				}
				if i == 100 {
					cleanup()
					return nil, errors.New("the repository server did not start")
				}
				time.Sleep(100 * time.Millisecond)
			}
			l := &lanBench{env: env, lan: lan, dir: dir, n: n, size: size, repoLog: repoLog}
			for i := 1; i <= n; i++ {
				cfg := fmt.Sprintf("trusted_keys: [%s]\nstore: %s\npeers: {broadcast: true, priority: 20, limit_of_connections: 1}\nrepositories:\n  - {name: wan, url: \"http://%s:8080/\", priority: 10}\n",
					filepath.Join(dir, "key.pub"), filepath.Join(dir, fmt.Sprintf("store%d", i)), lan.Addr(0))
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("device%d.yaml", i)), []byte(cfg), 0o644); err != nil {
					cleanup()
					return nil, err
				}
			}
			cmds := []Command{
				{Name: "drepo: serve while downloading", Before: func() error { return l.prepare("stream") }, Run: func(ctx context.Context) (string, error) { return l.round(ctx, "stream") }},
				{Name: "one device alone, from the repository", Before: func() error { return l.prepare("alone") }, Run: func(ctx context.Context) (string, error) { return l.round(ctx, "alone") }},
				{Name: "whole-file cascade (complete blobs only)", Before: func() error { return l.prepare("cascade") }, Run: func(ctx context.Context) (string, error) { return l.round(ctx, "cascade") }},
				{Name: "every device from the repository", Before: func() error { return l.prepare("repository") }, Run: func(ctx context.Context) (string, error) { return l.round(ctx, "repository") }},
			}
			// DREPO_BENCH_LAN_MODES=stream,alone measures only those (the slow modes take minutes)
			if m := os.Getenv("DREPO_BENCH_LAN_MODES"); m != "" {
				var keep []Command
				for i, mode := range []string{"stream", "alone", "cascade", "repository"} {
					if strings.Contains(m, mode) {
						keep = append(keep, cmds[i])
					}
				}
				cmds = keep
			}
			return &Prepared{
				Note:     fmt.Sprintf("%d devices and a repository host in network namespaces, every link %s both ways (tc tbf), one %d MiB file", n, rate, size>>20),
				Cleanup:  cleanup,
				NoWarmup: true,
				Commands: cmds,
			}, nil
		},
	}
}

type lanBench struct {
	env     *Env
	lan     *davtest.LAN
	dir     string
	n       int
	size    int64
	repoLog string

	before      int64 // repository bytes served before the round
	daemons     sync.WaitGroup
	stopDaemons func()
}

// publishLocal signs and syncs the source into repo through a drepo serve on loopback.
func publishLocal(ctx context.Context, drepo, dir, repo string) error {
	if out, err := exec.CommandContext(ctx, drepo, "keygen", "--out", filepath.Join(dir, "key")).CombinedOutput(); err != nil {
		return fmt.Errorf("keygen: %v %s", err, out)
	}
	if err := os.MkdirAll(repo, 0o755); err != nil {
		return err
	}
	port, err := davtest.FreePort()
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	serve := exec.CommandContext(sctx, drepo, "serve", "--root", repo, "--no-auth", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	if err := serve.Start(); err != nil {
		return err
	}
	defer func() { stop(); _ = serve.Wait() }()
	cfg := filepath.Join(dir, "admin.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("source: %s\nsigning_key: %s\nstate_dir: %s\nrepositories:\n  - {name: r, url: \"http://127.0.0.1:%d/\"}\n",
		filepath.Join(dir, "source"), filepath.Join(dir, "key.key"), filepath.Join(dir, "state"), port)), 0o644); err != nil {
		return err
	}
	var last error
	for range 50 {
		out, err := exec.CommandContext(ctx, drepo, "--config", cfg, "--log-level", "error", "sync").CombinedOutput()
		if err == nil {
			return nil
		}
		last = fmt.Errorf("sync: %v %s", err, out)
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// prepare readies one round of mode, untimed: empty stores and, where peers serve, every
// device's daemon started (a device runs it all the time; the round times the fetches).
func (l *lanBench) prepare(mode string) error {
	for i := 1; i <= l.n; i++ {
		if err := os.RemoveAll(filepath.Join(l.dir, fmt.Sprintf("store%d", i))); err != nil {
			return err
		}
	}
	l.before = repoBytes(l.repoLog)
	dctx, stop := context.WithCancel(context.Background())
	l.stopDaemons = func() { stop(); l.daemons.Wait() }
	if mode == "stream" || mode == "cascade" {
		for i := 1; i <= l.n; i++ {
			args := []string{"--config", filepath.Join(l.dir, fmt.Sprintf("device%d.yaml", i)), "--log-level", "error", "peer"}
			if mode == "cascade" {
				args = append(args, "--complete-only")
			}
			d := l.lan.Command(dctx, i, l.env.Drepo, args...)
			if err := d.Start(); err != nil {
				l.stopDaemons()
				return err
			}
			l.daemons.Add(1)
			go func() { defer l.daemons.Done(); _ = d.Wait() }()
		}
		time.Sleep(300 * time.Millisecond) // the daemons listening
	}
	return nil
}

// round runs one mode after prepare: every device (or one) fetches at once; it returns when
// all hold the app, with the bytes the repository served.
func (l *lanBench) round(ctx context.Context, mode string) (string, error) {
	defer l.stopDaemons()
	devices := l.n
	if mode == "alone" {
		devices = 1
	}
	errs := make([]error, devices+1)
	var wg sync.WaitGroup
	for i := 1; i <= devices; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"--config", filepath.Join(l.dir, fmt.Sprintf("device%d.yaml", i)), "--log-level", "info", "fetch", "os@1.0", "--json"}
			if mode == "repository" || mode == "alone" {
				args = append(args, "--no-peers")
			}
			cmd := l.lan.Command(ctx, i, l.env.Drepo, args...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			// each device's report and log, for a look after the run
			_ = os.WriteFile(filepath.Join(l.dir, fmt.Sprintf("%s-device%d.json", mode, i)), append(out, []byte(stderr.String())...), 0o644)
			if err != nil {
				errs[i] = fmt.Errorf("device %d: %v %s", i, err, stderr.String())
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	time.Sleep(200 * time.Millisecond) // the access log's last lines
	served := repoBytes(l.repoLog) - l.before
	return fmt.Sprintf("repository served %d MiB = %.2f× the app", served>>20, float64(served)/float64(l.size)), nil
}

// repoBytes sums the bytes of the GETs in drepo serve's access log.
func repoBytes(log string) int64 {
	f, err := os.Open(log)
	if err != nil {
		return 0
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "method=GET") {
			continue
		}
		for _, field := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(field, "bytes="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total
}
