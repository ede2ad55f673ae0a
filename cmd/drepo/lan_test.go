package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/drepo-dev/drepo/peer"
	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

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
	l, err := davtest.NewLAN(davtest.LANPrefix("t"), n, "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
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
		d := l.Command(ctx, i, bin, "--config", cfg, "--log-level", "info", "peer")
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
			cmd := l.Command(fctx, i, bin, "--config", filepath.Join(dir, fmt.Sprintf("host%d.yaml", i)), "--log-level", "error",
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
		out, err := l.Command(ctx, i, "curl", "-sf", "http://127.0.0.1:22335/v1/status").Output()
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
