package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/drepo-dev/drepo/peer"
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
			// the next version, published with its delta, for the update mode
			next := filepath.Join(dir, "source", "os", "2.0")
			if err := os.MkdirAll(next, 0o755); err != nil {
				return nil, err
			}
			if err := writeUpdatedFile(filepath.Join(next, "image.bin"), filepath.Join(src, "image.bin"), 2); err != nil {
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
			modes := []struct{ mode, name string }{
				{"stream", "drepo: serve while downloading"},
				{"alone", "one device alone, from the repository"},
				{"slow", "stream, device 14 at 10 Mbit/s"},
				{"kill-leader", "stream, the leader killed at 30 %"},
				{"lossy", "stream, first discovery requests lost"},
				{"cascade", "whole-file cascade (complete blobs only)"},
				{"repository", "every device from the repository"},
				{"update", "every device holds 1.0 and updates to 2.0 at once (a delta)"},
			}
			// DREPO_BENCH_LAN_MODES=stream,alone measures only those (the slow modes take minutes)
			var cmds []Command
			for _, m := range modes {
				if sel := os.Getenv("DREPO_BENCH_LAN_MODES"); sel != "" && !slices.Contains(strings.Split(sel, ","), m.mode) {
					continue
				}
				cmds = append(cmds, Command{Name: m.mode + ": " + m.name, Before: func() error { return l.prepare(m.mode) }, Run: func(ctx context.Context) (string, error) { return l.round(ctx, m.mode) }})
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
	daemonCmds  map[int]*exec.Cmd
	stopDaemons func()
}

// slowDevice is the device the slow mode shapes to 10 Mbit/s (the 14th, as found in the
// field), lossyBytes what the lossy mode drops of every device's discovery requests: the
// first 8 datagrams of 92 bytes at the IP layer, which are its first two discovery rounds
// (each sends 4 times; only the directed broadcast leaves these namespaces, which have no
// route for 255.255.255.255).
const (
	slowDevice = 14
	lossyBytes = 8 * 92
)

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
	// DREPO_BENCH_LAN_CHUNK (e.g. 1M) publishes with that chunk size
	chunk := ""
	if c := os.Getenv("DREPO_BENCH_LAN_CHUNK"); c != "" {
		chunk = "chunk_size: " + c + "\n"
	}
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("source: %s\nsigning_key: %s\nstate_dir: %s\n%srepositories:\n  - {name: r, url: \"http://127.0.0.1:%d/\"}\n",
		filepath.Join(dir, "source"), filepath.Join(dir, "key.key"), filepath.Join(dir, "state"), chunk, port)), 0o644); err != nil {
		return err
	}
	var last error
	for range 50 {
		out, err := exec.CommandContext(ctx, drepo, "--config", cfg, "--log-level", "error", "sync", "--init").CombinedOutput()
		if err == nil {
			return nil
		}
		last = fmt.Errorf("sync: %v %s", err, out)
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// prepare readies one round of mode, untimed: empty stores (update: each holding version
// 1.0, hard-linked from one fetched once) and, where peers serve, every device's daemon
// started (a device runs it all the time; the round times the fetches).
func (l *lanBench) prepare(mode string) error {
	for i := 1; i <= l.n; i++ {
		store := filepath.Join(l.dir, fmt.Sprintf("store%d", i))
		if err := os.RemoveAll(store); err != nil {
			return err
		}
		if mode == "update" {
			template, err := l.template()
			if err != nil {
				return err
			}
			if out, err := exec.Command("cp", "-al", template, store).CombinedOutput(); err != nil {
				return fmt.Errorf("cp -al: %v %s", err, out)
			}
		}
	}
	l.before = repoBytes(l.repoLog)
	dctx, stop := context.WithCancel(context.Background())
	l.daemonCmds = map[int]*exec.Cmd{}
	l.stopDaemons = func() {
		stop()
		l.daemons.Wait()
		if mode == "slow" && slowDevice <= l.n {
			_ = l.lan.SetRate(slowDevice, "100mbit")
		}
		if mode == "lossy" {
			for i := 1; i <= l.n; i++ {
				l.lan.ClearDiscoveryDrop(i)
			}
		}
	}
	if mode == "slow" && slowDevice <= l.n {
		if err := l.lan.SetRate(slowDevice, "10mbit"); err != nil {
			return err
		}
	}
	if mode == "lossy" {
		for i := 1; i <= l.n; i++ {
			if err := l.lan.DropDiscovery(i, 22336, lossyBytes); err != nil {
				return err
			}
		}
	}
	if mode != "alone" && mode != "repository" {
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
			l.daemonCmds[i] = d
			l.daemons.Add(1)
			go func() { defer l.daemons.Done(); _ = d.Wait() }()
		}
		time.Sleep(300 * time.Millisecond) // the daemons listening
	}
	return nil
}

// template is a store holding version 1.0, fetched once from the repository by a device
// alone (inside the LAN: the repository is not reachable from outside).
func (l *lanBench) template() (string, error) {
	store := filepath.Join(l.dir, "template-store")
	if _, err := os.Stat(filepath.Join(store, ".template-done")); err == nil {
		return store, nil
	}
	_ = os.RemoveAll(store)
	cfg := filepath.Join(l.dir, "template.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("trusted_keys: [%s]\nstore: %s\npeers: {enabled: false}\nrepositories:\n  - {name: wan, url: \"http://%s:8080/\"}\n",
		filepath.Join(l.dir, "key.pub"), store, l.lan.Addr(0))), 0o644); err != nil {
		return "", err
	}
	if out, err := l.lan.Command(context.Background(), 1, l.env.Drepo, "--config", cfg, "--log-level", "error", "fetch", "os@1.0").CombinedOutput(); err != nil {
		return "", fmt.Errorf("the template store: %v %s", err, lastLines(string(out), 3))
	}
	return store, os.WriteFile(filepath.Join(store, ".template-done"), nil, 0o600)
}

// deltaSize is the size of the delta sync published for 2.0 (the one blob in the state's
// delta cache named by a hash).
func (l *lanBench) deltaSize() int64 {
	entries, _ := os.ReadDir(filepath.Join(l.dir, "state", "deltas"))
	for _, e := range entries {
		if len(e.Name()) == 64 {
			if fi, err := e.Info(); err == nil {
				return fi.Size()
			}
		}
	}
	return 0
}

// round runs one mode after prepare: every device (or one) fetches at once; it returns when
// all hold the app (slow: every 100 Mbit/s device; the slow one is then stopped), with the
// bytes the repository served and the devices' finish times. kill-leader SIGKILLs the
// fetch and the daemon of the first device the repository serves once it served 30 %.
func (l *lanBench) round(ctx context.Context, mode string) (string, error) {
	defer l.stopDaemons()
	devices := l.n
	if mode == "alone" {
		devices = 1
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	errs := make([]error, devices+1)
	took := make([]time.Duration, devices+1)
	cmds := make([]*exec.Cmd, devices+1)
	var wg, fast sync.WaitGroup
	var mu sync.Mutex
	for i := 1; i <= devices; i++ {
		level := "info"
		if v := os.Getenv("DREPO_BENCH_LAN_LOG"); v != "" {
			level = v // debug: every transfer's start and end in the devices' reports
		}
		app := "os@1.0"
		if mode == "update" {
			app = "os@2.0"
		}
		args := []string{"--config", filepath.Join(l.dir, fmt.Sprintf("device%d.yaml", i)), "--log-level", level, "fetch", app, "--json"}
		if mode == "repository" || mode == "alone" {
			args = append(args, "--no-peers")
		}
		cmd := l.lan.Command(rctx, i, l.env.Drepo, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		var stdout strings.Builder
		cmd.Stdout = &stdout
		if err := cmd.Start(); err != nil {
			return "", err
		}
		mu.Lock()
		cmds[i] = cmd
		mu.Unlock()
		wg.Add(1)
		isSlow := mode == "slow" && i == slowDevice
		if !isSlow {
			fast.Add(1)
		}
		go func() {
			defer wg.Done()
			err := cmd.Wait()
			took[i] = time.Since(start)
			if !isSlow {
				fast.Done()
			}
			// each device's report and log, for a look after the run
			_ = os.WriteFile(filepath.Join(l.dir, fmt.Sprintf("%s-device%d.json", mode, i)), []byte(stdout.String()+stderr.String()), 0o644)
			if err != nil {
				errs[i] = fmt.Errorf("device %d: %v %s", i, err, lastLines(stderr.String(), 5))
			}
		}()
	}
	killed := 0
	if mode == "kill-leader" {
		killed = l.killLeader(rctx, cmds)
		if killed > 0 {
			errs[killed] = nil
		}
	}
	fast.Wait()
	if mode == "slow" {
		cancel() // the slow device would take minutes more; its time is not the question
	}
	wg.Wait()
	if killed > 0 {
		errs[killed] = nil
		took[killed] = 0
	}
	if mode == "slow" {
		errs[slowDevice] = nil
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	time.Sleep(200 * time.Millisecond) // the access log's last lines
	served := repoBytes(l.repoLog) - l.before
	var fin []string
	var last time.Duration
	for i := 1; i <= devices; i++ {
		switch {
		case i == killed:
			fin = append(fin, "killed")
		case mode == "slow" && i == slowDevice:
			fin = append(fin, "slow")
		default:
			fin = append(fin, fmt.Sprintf("%.1f", took[i].Seconds()))
			last = max(last, took[i])
		}
	}
	if mode == "update" {
		d := l.deltaSize()
		return fmt.Sprintf("repository served %.1f MiB = %.2f× the delta (%.1f MiB; the app %d MiB); last device %.1f s; devices: %s",
			float64(served)/(1<<20), float64(served)/float64(max(d, 1)), float64(d)/(1<<20), l.size>>20, last.Seconds(), strings.Join(fin, " ")), nil
	}
	return fmt.Sprintf("repository served %d MiB = %.2f× the app; last device %.1f s; devices: %s", served>>20, float64(served)/float64(l.size), last.Seconds(), strings.Join(fin, " ")), nil
}

// killLeader waits until the most advanced device holds 30 % of the app, then SIGKILLs
// the fetch and the peer daemon of the device reading the repository: the one with an
// established connection to its port (ss in each namespace), else the most advanced. It
// returns that device (0: none). The access log cannot tell: it logs a GET at its end.
func (l *lanBench) killLeader(ctx context.Context, cmds []*exec.Cmd) int {
	for ctx.Err() == nil {
		best, held := 0, int64(0)
		for i := 1; i < len(cmds); i++ {
			if v := verifiedBytes(filepath.Join(l.dir, fmt.Sprintf("store%d", i))); v > held {
				best, held = i, v
			}
		}
		if held >= l.size*3/10 {
			for i := 1; i < len(cmds); i++ {
				out, _ := l.lan.Command(ctx, i, "ss", "-Htn", "state", "established", "dst", l.lan.Addr(0)+":8080").Output()
				if strings.TrimSpace(string(out)) != "" {
					best = i
					break
				}
			}
			_ = cmds[best].Process.Kill() // ip netns exec execs drepo: the pid is drepo's
			if d := l.daemonCmds[best]; d != nil {
				_ = d.Process.Kill()
			}
			return best
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0
}

// verifiedBytes is what a device's store holds verified of partial blobs.
func verifiedBytes(store string) int64 {
	st, err := peer.OpenStore(store)
	if err != nil {
		return 0
	}
	return st.PartialBytes()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
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
