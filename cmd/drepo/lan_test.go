package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drepo-dev/drepo/peer"
	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// lan is a LAN made of network namespaces: one "switch" namespace holding a bridge, and
// hosts joined to it by veth pairs. Every address lives inside the namespaces; nothing is
// added to the root namespace and no namespace has a default route, so even broadcast
// discovery stays on this bridge.
type lan struct {
	t      *testing.T
	prefix string
	hosts  []string
}

// needRoot skips (or, under CI, fails) a test that needs root and iproute2.
func needRoot(t *testing.T) {
	t.Helper()
	davtest.NeedTool(t, "ip")
	davtest.NeedTool(t, "curl")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (network namespaces)")
		}
		t.Skip("this test needs root (network namespaces)")
	}
}

func (l *lan) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
	}
}

func newLAN(t *testing.T, n int) *lan {
	l := &lan{t: t, prefix: fmt.Sprintf("drp%d", os.Getpid()%100000)}
	sw := l.prefix + "sw"
	t.Cleanup(func() {
		for _, h := range append(l.hosts, sw) {
			exec.Command("ip", "netns", "del", h).Run()
		}
	})
	l.ip("netns", "add", sw)
	l.ip("-n", sw, "link", "add", "br0", "type", "bridge")
	l.ip("-n", sw, "link", "set", "br0", "up")
	for i := 0; i < n; i++ {
		h := fmt.Sprintf("%sh%d", l.prefix, i)
		l.ip("netns", "add", h)
		l.hosts = append(l.hosts, h)
		port := fmt.Sprintf("p%d", i)
		l.ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h)
		l.ip("-n", sw, "link", "set", port, "master", "br0")
		l.ip("-n", sw, "link", "set", port, "up")
		l.ip("-n", h, "addr", "add", fmt.Sprintf("10.77.0.%d/24", i+1), "dev", "eth0")
		l.ip("-n", h, "link", "set", "eth0", "up")
		l.ip("-n", h, "link", "set", "lo", "up")
	}
	return l
}

// in runs a command inside host i's namespace.
func (l *lan) in(ctx context.Context, i int, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.hosts[i], name}, args...)...)
}

// A real LAN: one host holds an app; 8 others fetch it at once with no repository
// reachable, finding each other by broadcast discovery, each serving what it verified
// while it downloads. All end with the right bytes, and no peer ever ran more than
// limit_of_connections transfers.
func TestLANBroadcastFetch(t *testing.T) {
	needRoot(t)
	const n = 9
	data := make([]byte, 24<<20)
	r := rand.New(rand.NewPCG(5, 5))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	// host 0's store is filled from a repository on loopback in the root namespace (the
	// store is only a folder); the LAN never sees a repository
	cfg0, _, _ := deviceSetup(t, map[string][]byte{"image.bin": data}, 1<<20, nil)
	dir := filepath.Dir(cfg0)
	if code, _, errs := drepo(t, "--config", cfg0, "fetch", "app@1"); code != 0 {
		t.Fatal(errs)
	}
	l := newLAN(t, n)
	bin := drepoBinary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var daemons sync.WaitGroup
	logs := make([]*bytes.Buffer, n)
	for i := 0; i < n; i++ {
		store := filepath.Join(dir, fmt.Sprintf("store%d", i))
		if i == 0 {
			store = filepath.Join(dir, "store")
		}
		cfg := filepath.Join(dir, fmt.Sprintf("host%d.yaml", i))
		// a repository on the host's own loopback, not running: fetch finds it refused
		os.WriteFile(cfg, []byte(fmt.Sprintf("trusted_keys: [k.pub]\nstore: %s\npeers: {broadcast: true, limit_of_connections: 1}\nrepositories:\n  - {name: wan, url: \"http://127.0.0.1:1/\", priority: 10}\n", store)), 0o644)
		logs[i] = &bytes.Buffer{}
		d := l.in(ctx, i, bin, "--config", cfg, "--log-level", "info", "peer")
		d.Stderr = logs[i]
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		daemons.Add(1)
		go func() { defer daemons.Done(); d.Wait() }()
	}
	defer func() { cancel(); daemons.Wait() }()
	time.Sleep(300 * time.Millisecond) // the daemons bind their ports
	var wg sync.WaitGroup
	errs := make([]error, n)
	outs := make([][]byte, n)
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fctx, fcancel := context.WithTimeout(ctx, 4*time.Minute)
			defer fcancel()
			cmd := l.in(fctx, i, bin, "--config", filepath.Join(dir, fmt.Sprintf("host%d.yaml", i)), "--log-level", "error",
				"fetch", "app@1", "--json", "--out", filepath.Join(dir, fmt.Sprintf("out%d", i)))
			outs[i], errs[i] = cmd.Output()
		}()
	}
	wg.Wait()
	fromPeers := 0
	for i := 1; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("host %d: %v\n%s", i, errs[i], outs[i])
		}
		got, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("out%d", i), "image.bin"))
		if !bytes.Equal(got, data) {
			t.Fatalf("host %d holds other bytes", i)
		}
		var rep peer.FetchReport
		json.Unmarshal(outs[i], &rep)
		for _, s := range rep.Sources {
			if s.Kind == peer.KindPeer {
				fromPeers += int(s.Bytes)
			}
		}
	}
	if fromPeers < (n-1)*len(data) {
		t.Fatalf("peers served %d bytes, want at least %d", fromPeers, (n-1)*len(data))
	}
	served := 0
	for i := 0; i < n; i++ {
		out, err := l.in(ctx, i, "curl", "-sf", "http://127.0.0.1:22335/v1/status").Output()
		if err != nil {
			t.Fatalf("host %d status: %v\n%s", i, err, logs[i])
		}
		var st peer.Status
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatal(err)
		}
		if st.TransfersMaxActive > int64(st.Limit) {
			t.Fatalf("host %d ran %d transfers at once, limit %d", i, st.TransfersMaxActive, st.Limit)
		}
		if st.BytesServed > 0 {
			served++
		}
	}
	t.Logf("%d of %d hosts served bytes to others", served, n)
}
