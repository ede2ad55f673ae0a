package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror"
	"github.com/drepo-dev/drepo/mirror/dav"
	"github.com/drepo-dev/drepo/peer"
	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// swarmLAN is a LAN of namespaces at 100 Mbit/s: host 0 runs the repository (drepo
// serve), hosts 1.. are devices with their peer daemons running, peers before the
// repository, broadcast discovery. Device i's instance id is i, so device 1 leads.
type swarmLAN struct {
	t       *testing.T
	lan     *davtest.LAN
	dir     string
	bin     string
	data    []byte
	repoLog string
	daemons map[int]*exec.Cmd
	repo    *davtest.Server // the repository's loopback server, where sync publishes
}

func newSwarmLAN(t *testing.T, n int, data []byte, chunk int64) *swarmLAN {
	needRoot(t)
	cfg0, s, _ := deviceSetup(t, map[string][]byte{"image.bin": data}, chunk, nil)
	dir := filepath.Dir(cfg0)
	l, err := davtest.NewLAN(davtest.LANPrefix("w"), n, "100mbit")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	w := &swarmLAN{t: t, lan: l, dir: dir, bin: drepoBinary(t), data: data, repoLog: filepath.Join(dir, "repo.log"), daemons: map[int]*exec.Cmd{}, repo: s}
	ctx, cancel := context.WithCancel(context.Background())
	var procs sync.WaitGroup
	t.Cleanup(func() { cancel(); procs.Wait() })
	logf, err := os.Create(w.repoLog)
	if err != nil {
		t.Fatal(err)
	}
	serve := l.Command(ctx, 0, w.bin, "serve", "--root", s.Root, "--no-auth", "--no-auth-any-address", "--listen", l.Addr(0)+":8080")
	serve.Stderr = logf
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	procs.Add(1)
	go func() { defer procs.Done(); serve.Wait(); logf.Close() }()
	for i := 1; i < n; i++ {
		store := filepath.Join(dir, fmt.Sprintf("store%d", i))
		os.MkdirAll(store, 0o755)
		os.WriteFile(filepath.Join(store, "instance"), []byte(fmt.Sprintf("%016x", i)), 0o644)
		os.WriteFile(w.cfg(i), []byte(fmt.Sprintf("trusted_keys: [k.pub]\nstore: %s\npeers: {broadcast: true, priority: 20, limit_of_connections: 1}\nrepositories:\n  - {name: wan, url: \"http://%s:8080/\", priority: 10}\n", store, l.Addr(0))), 0o644)
		d := l.Command(ctx, i, w.bin, "--config", w.cfg(i), "--log-level", "error", "peer")
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		w.daemons[i] = d
		procs.Add(1)
		go func() { defer procs.Done(); d.Wait() }()
	}
	for i := 0; ; i++ {
		if b, _ := os.ReadFile(w.repoLog); bytes.Contains(b, []byte("serving WebDAV")) {
			break
		}
		if i == 100 {
			t.Fatal("the repository did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the daemons bind their ports
	return w
}

func (w *swarmLAN) cfg(i int) string { return filepath.Join(w.dir, fmt.Sprintf("device%d.yaml", i)) }

// fetch starts device i's fetch of app@1 into out<i>.
func (w *swarmLAN) fetch(ctx context.Context, i int, flags ...string) *exec.Cmd {
	return w.fetchVersion(ctx, i, "1", flags...)
}

// fetchVersion starts device i's fetch of app@version into out<i>.
func (w *swarmLAN) fetchVersion(ctx context.Context, i int, version string, flags ...string) *exec.Cmd {
	if flags == nil {
		flags = []string{"--log-level", "info"}
	}
	args := append(append([]string{"--config", w.cfg(i)}, flags...), "fetch", "app@"+version, "--out", filepath.Join(w.dir, fmt.Sprintf("out%d", i)))
	cmd := w.lan.Command(ctx, i, w.bin, args...)
	cmd.Stderr = &bytes.Buffer{}
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	return cmd
}

// fetchAll starts every device's fetch of app@version at once.
func (w *swarmLAN) fetchAll(ctx context.Context, version string, flags ...string) map[int]*exec.Cmd {
	cmds := map[int]*exec.Cmd{}
	for i := 1; i < len(w.lan.Hosts); i++ {
		cmds[i] = w.fetchVersion(ctx, i, version, flags...)
	}
	return cmds
}

// holds reports whether device i laid out the app's bytes.
func (w *swarmLAN) holds(i int) bool {
	got, _ := os.ReadFile(filepath.Join(w.dir, fmt.Sprintf("out%d", i), "image.bin"))
	return bytes.Equal(got, w.data)
}

// verified is what device i's store holds verified of partial blobs.
func (w *swarmLAN) verified(i int) int64 {
	st, err := peer.OpenStore(filepath.Join(w.dir, fmt.Sprintf("store%d", i)))
	if err != nil {
		return 0
	}
	return st.PartialBytes()
}

// repoServed sums the bytes of the GETs in the repository's access log.
func (w *swarmLAN) repoServed() int64 {
	time.Sleep(200 * time.Millisecond) // the last lines
	f, err := os.Open(w.repoLog)
	if err != nil {
		return 0
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if !strings.Contains(sc.Text(), "method=GET") {
			continue
		}
		for _, field := range strings.Fields(sc.Text()) {
			if v, ok := strings.CutPrefix(field, "bytes="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total
}

func swarmData(size int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// One device at 10 Mbit/s among nine at 100 Mbit/s, fourth in the order of instance ids
// (so it starts in the middle of the chain): the fast devices do not wait for it. Every
// fast device holds the app while the slow one still holds less than half of it (alone
// it needs ten times as long as a fast one), and the repository sends the app about once.
func TestLANSlowDeviceDoesNotHoldOthersBack(t *testing.T) {
	const n, slow = 10, 4
	w := newSwarmLAN(t, n, swarmData(48<<20, 71), 1<<20)
	if err := w.lan.SetRate(slow, "10mbit"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmds := w.fetchAll(ctx, "1")
	for i := 1; i < n; i++ {
		if i == slow {
			continue
		}
		if err := cmds[i].Wait(); err != nil || !w.holds(i) {
			t.Fatalf("device %d: %v\n%s", i, err, cmds[i].Stderr)
		}
	}
	slowHeld := w.verified(slow)
	if w.holds(slow) || slowHeld >= int64(len(w.data))/2 {
		t.Fatalf("the slow device held %d of %d bytes when the last fast one finished: the fast ones waited for it", slowHeld, len(w.data))
	}
	cmds[slow].Process.Kill()
	cmds[slow].Wait()
	if served := w.repoServed(); served > int64(len(w.data))*3/2 {
		t.Fatalf("the repository served %.2f× the app", float64(served)/float64(len(w.data)))
	}
	t.Logf("the slow device held %d MiB when the fast ones were done", slowHeld>>20)
}

// The device reading the repository (the leader, whom the others follow) is killed with
// its peer daemon at 30 %: every survivor completes, and the repository serves less than
// twice the app (the most advanced survivor resumes the WAN read, the others follow it).
func TestLANLeaderKilled(t *testing.T) {
	const n = 9
	w := newSwarmLAN(t, n, swarmData(48<<20, 72), 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmds := w.fetchAll(ctx, "1")
	leader := 0
	for leader == 0 {
		best, held := 0, int64(0)
		for i := 1; i < n; i++ {
			if v := w.verified(i); v > held {
				best, held = i, v
			}
		}
		if held >= int64(len(w.data))*3/10 {
			leader = best
			cmds[best].Process.Kill()
			w.daemons[best].Process.Kill()
		}
		if ctx.Err() != nil {
			t.Fatal("no device reached 30 %")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 1; i < n; i++ {
		err := cmds[i].Wait()
		if i == leader {
			continue
		}
		if err != nil || !w.holds(i) {
			t.Fatalf("survivor %d: %v\n%s", i, err, cmds[i].Stderr)
		}
	}
	if served := w.repoServed(); served >= 2*int64(len(w.data)) {
		t.Fatalf("the repository served %.2f× the app", float64(served)/float64(len(w.data)))
	} else {
		t.Logf("leader %d killed; the repository served %.2f× the app", leader, float64(served)/float64(len(w.data)))
	}
}

// Every device loses its first 16 discovery requests: its first four rounds, resends
// included (only the directed broadcast leaves these namespaces). No answer is not taken
// for "nobody has it": later rounds find the LAN, and the repository sends the app about
// once.
func TestLANLossyDiscovery(t *testing.T) {
	const n = 6
	w := newSwarmLAN(t, n, swarmData(24<<20, 73), 1<<20)
	davtest.NeedTool(t, "nft")
	for i := 1; i < n; i++ {
		if err := w.lan.DropDiscovery(i, 22336, 16*92); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmds := w.fetchAll(ctx, "1", "--log-level", "debug")
	for i := 1; i < n; i++ {
		if err := cmds[i].Wait(); err != nil || !w.holds(i) {
			t.Fatalf("device %d: %v\n%s", i, err, cmds[i].Stderr)
		}
	}
	if served := w.repoServed(); served > int64(len(w.data))*3/2 {
		for i := 1; i < n; i++ {
			t.Logf("device %d:\n%s", i, cmds[i].Stderr)
		}
		t.Fatalf("the repository served %.2f× the app", float64(served)/float64(len(w.data)))
	}
}

// Every device holds app@1 and updates to app@2 at once, which sync published with a
// delta (64 KiB inserted near the start, 512 KiB replaced): the delta travels like a file,
// so the devices share it while it downloads and the repository sends it about once, not
// once per device.
func TestLANUpdateTakesTheDeltaOnce(t *testing.T) {
	const n = 7
	w := newSwarmLAN(t, n, swarmData(24<<20, 75), 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmds := w.fetchAll(ctx, "1")
	for i := 1; i < n; i++ {
		if err := cmds[i].Wait(); err != nil || !w.holds(i) {
			t.Fatalf("device %d, app@1: %v\n%s", i, err, cmds[i].Stderr)
		}
	}
	next := append(append(append([]byte{}, w.data[:1<<20]...), swarmData(64<<10, 76)...), w.data[1<<20:]...)
	copy(next[12<<20:], swarmData(512<<10, 77))
	delta := w.publish("2", next)
	before := w.repoServed()
	cmds = w.fetchAll(ctx, "2")
	for i := 1; i < n; i++ {
		err := cmds[i].Wait()
		got, _ := os.ReadFile(filepath.Join(w.dir, fmt.Sprintf("out%d", i), "image.bin"))
		if err != nil || !bytes.Equal(got, next) {
			t.Fatalf("device %d, app@2: %v\n%s", i, err, cmds[i].Stderr)
		}
	}
	// the index and a manifest per device come on top: well under 64 KiB here
	served := w.repoServed() - before
	if served > delta*3/2+64<<10 {
		t.Fatalf("the repository served %d bytes for the update, %.2f× the %d-byte delta", served, float64(served)/float64(delta), delta)
	}
	t.Logf("the repository served %d bytes for the update: %.2f× the %d-byte delta (the file is %d bytes)", served, float64(served)/float64(delta), delta, len(next))
}

// publish adds version of the app with image.bin = data to the source and syncs it to the
// repository; it returns the size of the delta sync gave it from version 1.
func (w *swarmLAN) publish(version string, data []byte) int64 {
	w.t.Helper()
	p := filepath.Join(w.dir, "src", "app", version, "image.bin")
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		w.t.Fatal(err)
	}
	key, err := manifests.LoadSecretKey(filepath.Join(w.dir, "k.key"))
	if err != nil {
		w.t.Fatal(err)
	}
	rep, err := mirror.Sync(context.Background(), mirror.SyncOptions{Source: filepath.Join(w.dir, "src"), SigningKey: key, StateDir: filepath.Join(w.dir, "state"), ChunkSize: 1 << 20,
		DeltaVersions: mirror.DefaultDeltaVersions, Repos: []dav.Repository{{Name: "r", URL: w.repo.URL, Username: w.repo.User, Password: dav.NewSecret(w.repo.Password)}}})
	if err != nil || rep.Failed() || rep.DeltasBuilt != 1 {
		w.t.Fatalf("sync of version %s: %+v %v", version, rep, err)
	}
	idx, _ := os.ReadFile(filepath.Join(w.repo.Root, "index.json"))
	x, err := manifests.DecodeIndex(idx)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, a := range x.Apps {
		if a.Version != version {
			continue
		}
		doc, _ := os.ReadFile(filepath.Join(w.repo.Root, manifests.BlobPath(a.Manifest)))
		m, err := manifests.DecodeManifest(doc)
		if err != nil || len(m.Files) != 1 || len(m.Files[0].Deltas) != 1 {
			w.t.Fatalf("the manifest of version %s: %v", version, err)
		}
		return m.Files[0].Deltas[0].Size
	}
	w.t.Fatalf("version %s not in the index", version)
	return 0
}

// A blob from two sources at once: a device whose repository is slow (20 Mbit/s here) and
// placed before the peers reads it, and a complete peer with a free slot takes the second
// half of what is left beside it; both deliver, the bytes are right, and the repository
// sends well under the whole blob.
func TestLANBlobFromTwoSourcesAtOnce(t *testing.T) {
	const n = 4
	w := newSwarmLAN(t, n, swarmData(48<<20, 74), 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if cmd := w.fetch(ctx, 1); cmd.Wait() != nil || !w.holds(1) {
		t.Fatalf("device 1: %s", cmd.Stderr)
	}
	if err := w.lan.SetRate(0, "20mbit"); err != nil {
		t.Fatal(err)
	}
	// device 3: the repository first, the peers after it
	store := filepath.Join(w.dir, "store3")
	os.WriteFile(w.cfg(3), []byte(fmt.Sprintf("trusted_keys: [k.pub]\nstore: %s\npeers: {broadcast: true, limit_of_connections: 1}\nrepositories:\n  - {name: wan, url: \"http://%s:8080/\", priority: 10}\n", store, w.lan.Addr(0))), 0o644)
	before := w.repoServed()
	cmd := w.lan.Command(ctx, 3, w.bin, "--config", w.cfg(3), "--log-level", "debug", "fetch", "app@1", "--json", "--out", filepath.Join(w.dir, "out3"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || !w.holds(3) {
		t.Fatalf("device 3: %v\n%s", err, stderr.String())
	}
	var rep peer.FetchReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	var fromPeer, fromRepo int64
	for _, s := range rep.Sources {
		switch s.Kind {
		case peer.KindPeer:
			fromPeer += s.Bytes
		case peer.KindRepository:
			fromRepo += s.Bytes
		}
	}
	if fromPeer < 8<<20 || fromRepo < 1<<20 {
		t.Fatalf("from the repository %d bytes, from peers %d: want both at once\n%s", fromRepo, fromPeer, stderr.String())
	}
	if served := w.repoServed() - before; served > int64(len(w.data))*3/4 {
		t.Fatalf("the repository served %.2f× the blob beside a complete peer", float64(served)/float64(len(w.data)))
	}
	t.Logf("repository %d MiB, peers %d MiB", fromRepo>>20, fromPeer>>20)
}
