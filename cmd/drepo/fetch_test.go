package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror"
	"github.com/drepo-dev/drepo/mirror/dav"
	"github.com/drepo-dev/drepo/peer"
	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// throttle forwards to a server at about rate bytes per second, so a test can kill a
// fetch in the middle of a blob.
func throttle(t *testing.T, backend string, rate int) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, backend+strings.TrimPrefix(r.URL.Path, "/"), nil)
		if rg := r.Header.Get("Range"); rg != "" {
			req.Header.Set("Range", rg)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				time.Sleep(time.Duration(n) * time.Second / time.Duration(rate))
			}
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// deviceSetup publishes files as app@1 (chunks of chunk bytes) on a drepo server and
// writes a device config for a repository at url (the server's, unless url is set).
func deviceSetup(t *testing.T, files map[string][]byte, chunk int64, url func(server string) string) (cfg string, s *davtest.Server, m *manifests.Manifest) {
	t.Helper()
	s = davtest.StartDrepo(t, davtest.DrepoOptions{AnonymousRead: true})
	dir := t.TempDir()
	prefix := filepath.Join(dir, "k")
	if code, _, errs := drepo(t, "keygen", "--out", prefix); code != 0 {
		t.Fatal(errs)
	}
	key, err := manifests.LoadSecretKey(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	for name, data := range files {
		p := filepath.Join(src, "app", "1", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, data, 0o644)
	}
	rep, err := mirror.Sync(context.Background(), mirror.SyncOptions{Source: src, SigningKey: key, StateDir: filepath.Join(dir, "state"), ChunkSize: chunk,
		Repos: []dav.Repository{{Name: "r", URL: s.URL, Username: s.User, Password: dav.NewSecret(s.Password)}}})
	if err != nil || rep.Failed() {
		t.Fatalf("sync: %+v %v", rep, err)
	}
	idx, _ := os.ReadFile(filepath.Join(s.Root, "index.json"))
	x, _ := manifests.DecodeIndex(idx)
	doc, _ := os.ReadFile(filepath.Join(s.Root, manifests.BlobPath(x.Apps[0].Manifest)))
	m, _ = manifests.DecodeManifest(doc)
	u := s.URL
	if url != nil {
		u = url(s.URL)
	}
	cfg = filepath.Join(dir, "device.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("trusted_keys: [k.pub]\nstore: store\npeers: {broadcast: false}\nrepositories:\n  - {name: r, url: %q, priority: 1}\n", u)), 0o644)
	return cfg, s, m
}

// checkDeviceStore: every blob under a final name hashes to its name, and every chunk a
// partial blob's state calls verified hashes to the manifest's chunk hash. Returns the
// verified bytes of f's blob (its size if complete).
func checkDeviceStore(t *testing.T, store string, f manifests.File, chunk int64) int64 {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(store, "blobs", "sha256"))
	held := int64(0)
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(store, "blobs", "sha256", e.Name()))
		if manifests.SumBytes(b).String() != e.Name() {
			t.Fatalf("the store holds unverified bytes under %s", e.Name())
		}
		if e.Name() == f.SHA256.String() {
			held = f.Size
		}
	}
	b, err := os.ReadFile(filepath.Join(store, "partial", f.SHA256.String()+".state"))
	if err != nil {
		return held
	}
	st, err := peer.DecodePartialState(b)
	if err != nil {
		t.Fatalf("partial state: %v", err)
	}
	data, _ := os.ReadFile(filepath.Join(store, "partial", f.SHA256.String()))
	for i := range st.Chunks() {
		if !st.Has(i) {
			continue
		}
		off, n := st.ChunkRange(i)
		if manifests.SumBytes(data[off:off+n]) != f.Chunks[i] {
			t.Fatalf("chunk %d is marked verified but holds other bytes", i)
		}
	}
	if held == 0 {
		held = st.VerifiedBytes()
	}
	return held
}

// SIGKILL a fetch at random moments: the store never holds an unverified blob under its
// final name nor a chunk marked verified that is not, and a rerun downloads exactly what
// was not yet verified.
func TestFetchSurvivesKills(t *testing.T) {
	const chunk = 256 << 10
	data := make([]byte, 16<<20)
	r := rand.New(rand.NewPCG(9, 9))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	cfg, _, m := deviceSetup(t, map[string][]byte{"image.bin": data}, chunk, func(s string) string { return throttle(t, s, 2<<20) })
	var big manifests.File
	for _, f := range m.Files {
		big = f
	}
	store := filepath.Join(filepath.Dir(cfg), "store")
	bin := drepoBinary(t)
	kills := 0
	for i := 0; i < 20; i++ {
		cmd := exec.Command(bin, "--config", cfg, "--log-level", "error", "fetch", "app@1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(100+r.IntN(500)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		if err := cmd.Wait(); err != nil {
			kills++
		}
		checkDeviceStore(t, store, big, chunk)
	}
	if kills < 10 {
		t.Fatalf("only %d of 20 fetches were killed before they finished; the test proves little", kills)
	}
	before := checkDeviceStore(t, store, big, chunk)
	out, err := exec.Command(bin, "--config", cfg, "--log-level", "error", "fetch", "app@1", "--json", "--out", filepath.Join(filepath.Dir(cfg), "out")).Output()
	if err != nil {
		t.Fatalf("rerun: %v %s", err, out)
	}
	var rep peer.FetchReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.AlreadyHeld != before || rep.Downloaded != big.Size-before {
		t.Fatalf("rerun downloaded %d and found %d held; %d were verified before it", rep.Downloaded, rep.AlreadyHeld, before)
	}
	got, _ := os.ReadFile(filepath.Join(filepath.Dir(cfg), "out", "image.bin"))
	if string(got) != string(data) {
		t.Fatal("the laid-out file differs")
	}
	t.Logf("%d kills; %d of %d bytes were verified before the rerun", kills, before, big.Size)
}

// The CLI: --plan names the order and the skipped staging repository; the JSON result; an
// unreachable only repository exits 1 with a line saying why.
func TestFetchCLI(t *testing.T) {
	cfg, _, _ := deviceSetup(t, map[string][]byte{"f": []byte("hello")}, 64<<10, nil)
	os.WriteFile(cfg, []byte(mustRead(t, cfg)+"  - {name: stage, url: \"http://127.0.0.1:1/\", priority: -1, password_env: NOT_SET_ANYWHERE}\n"), 0o644)
	code, out, errs := drepo(t, "--config", cfg, "fetch", "app@1", "--plan")
	if code != 0 || !strings.Contains(out, "1      r       repository  1") || !strings.Contains(out, "skipped stage: priority -1: staging") {
		t.Fatalf("--plan: %d\n%s%s", code, out, errs)
	}
	code, out, errs = drepo(t, "--config", cfg, "fetch", "app@1", "--json")
	var rep peer.FetchReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Files != 1 || rep.Downloaded != 5 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("fetch --json: %d\n%s%s", code, out, errs)
	}
	for _, args := range [][]string{{"fetch"}, {"fetch", "no/pe"}, {"fetch", "a@b", "--bogus"}} {
		if code, _, _ := drepo(t, append([]string{"--config", cfg}, args...)...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	down := filepath.Join(filepath.Dir(cfg), "down.yaml")
	os.WriteFile(down, []byte("trusted_keys: [k.pub]\nstore: store2\npeers: {broadcast: false}\nrepositories:\n  - {name: r, url: \"http://127.0.0.1:1/\", priority: 1}\n  - {name: r2, url: \"http://127.0.0.1:2/\"}\n"), 0o644)
	code, _, errs = drepo(t, "--config", down, "fetch", "app@1")
	if code != exitFailure || !strings.Contains(errs, "r (repository): index:") || !strings.Contains(errs, "r2 (repository): index:") {
		t.Fatalf("unreachable repositories: exit %d\n%s", code, errs)
	}
	if code, out, _ := drepo(t, "--config", down, "store", "ls", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("store ls of an empty store: %d %s", code, out)
	}
}

// store verify exits 0 on an intact store and 1 once it found (and removed) a blob that
// no longer hashes to its name; the next fetch brings it back.
func TestStoreVerifyCLI(t *testing.T) {
	data := bytes.Repeat([]byte("drepo "), 50000)
	cfg, _, _ := deviceSetup(t, map[string][]byte{"f": data}, 64<<10, nil)
	if code, out, errs := drepo(t, "--config", cfg, "fetch", "app@1"); code != 0 {
		t.Fatalf("fetch: %d\n%s%s", code, out, errs)
	}
	code, out, errs := drepo(t, "--config", cfg, "store", "verify", "--json")
	var rep peer.VerifyReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Blobs != 2 || rep.Bad() {
		t.Fatalf("verify of an intact store: %d\n%s%s", code, out, errs)
	}
	blob := filepath.Join(filepath.Dir(cfg), "store", "blobs", "sha256", manifests.SumBytes(data).String())
	os.Chmod(blob, 0o644)
	if err := os.WriteFile(blob, bytes.Repeat([]byte("DREPO "), 50000), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs = drepo(t, "--config", cfg, "store", "verify"); code != exitFailure || !strings.Contains(out, "1 removed") {
		t.Fatalf("verify of an altered blob: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := drepo(t, "--config", cfg, "fetch", "app@1"); code != 0 {
		t.Fatalf("fetch after verify: %d\n%s%s", code, out, errs)
	}
	if b, _ := os.ReadFile(blob); !bytes.Equal(b, data) {
		t.Fatal("the blob was not fetched again")
	}
}

// SIGINT and SIGTERM end a fetch with 130 and 143 and one line that says what was kept; a
// script tells that from "every source failed" (1), and the next run resumes.
func TestFetchInterrupted(t *testing.T) {
	const chunk = 256 << 10
	data := make([]byte, 8<<20)
	r := rand.New(rand.NewPCG(10, 10))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	cfg, _, _ := deviceSetup(t, map[string][]byte{"image.bin": data}, chunk, func(s string) string { return throttle(t, s, 2<<20) })
	bin := drepoBinary(t)
	for _, c := range []struct {
		sig  syscall.Signal
		code int
		name string
	}{{syscall.SIGINT, 130, "SIGINT"}, {syscall.SIGTERM, 143, "SIGTERM"}} {
		cmd := exec.Command(bin, "--config", cfg, "--log-level", "error", "fetch", "app@1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond) // about 3 MiB in
		cmd.Process.Signal(c.sig)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != c.code {
			t.Fatalf("%s: %v, want exit %d\n%s", c.name, err, c.code, stderr.String())
		}
		want := "drepo: interrupted (" + c.name + "); "
		if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], want) || !strings.HasSuffix(lines[0], "bytes kept, the next run resumes") {
			t.Fatalf("%s: stderr %q, want one line %q…", c.name, stderr.String(), want)
		}
	}
	out, err := exec.Command(bin, "--config", cfg, "--log-level", "error", "fetch", "app@1", "--json").Output()
	var rep peer.FetchReport
	if err != nil || json.Unmarshal(out, &rep) != nil || rep.AlreadyHeld == 0 {
		t.Fatalf("the run after: %v, held %d", err, rep.AlreadyHeld)
	}
}

// What a fetch says when it fails names what and where, once, without the code's package
// prefixes: the URL that had no index, the versions that are published.
func TestFetchErrorWording(t *testing.T) {
	cfg, s, _ := deviceSetup(t, map[string][]byte{"f": []byte("hello")}, 64<<10, nil)
	code, _, errs := drepo(t, "--config", cfg, "fetch", "app@9")
	if code != exitFailure || !strings.Contains(errs, "app@9 is not published (index serial 1); available: 1") {
		t.Fatalf("a version not published: exit %d\n%s", code, errs)
	}
	wrong := filepath.Join(filepath.Dir(cfg), "wrong.yaml")
	os.WriteFile(wrong, []byte(fmt.Sprintf("trusted_keys: [k.pub]\nstore: store3\npeers: {enabled: false}\nrepositories:\n  - {name: r, url: %q}\n", s.URL+"aps/")), 0o644)
	code, _, errs = drepo(t, "--config", wrong, "fetch", "app@1")
	if code != exitFailure || !strings.Contains(errs, "no index at "+s.URL+"aps/index.json") {
		t.Fatalf("no index at the URL: exit %d\n%s", code, errs)
	}
	if n := strings.Count(errs, "no source could serve it"); n != 1 {
		t.Errorf("'no source could serve it' said %d times:\n%s", n, errs)
	}
	final := errs[strings.Index(errs, "drepo: "):] // the error; the lines before are the log
	for _, p := range []string{"peer: ", "mirror: ", "manifests: "} {
		if strings.Contains(final, p) {
			t.Errorf("a package prefix %q in what the user reads:\n%s", p, errs)
		}
	}
}

// --bwlimit, --peer-bwlimit and --random-delay are read; a rate that is not one is a usage error.
func TestFetchRateFlags(t *testing.T) {
	cfg, _, _ := deviceSetup(t, map[string][]byte{"f": []byte("hello")}, 64<<10, nil)
	if code, out, errs := drepo(t, "--config", cfg, "fetch", "app@1", "--bwlimit", "2M", "--peer-bwlimit", "512K", "--random-delay", "10ms"); code != 0 {
		t.Fatalf("fetch with limits: %d\n%s%s", code, out, errs)
	}
	if code, _, errs := drepo(t, "--config", cfg, "fetch", "app@1", "--bwlimit", "fast"); code != exitUsage || !strings.Contains(errs, "--bwlimit") {
		t.Fatalf("--bwlimit fast: %d %s", code, errs)
	}
}
