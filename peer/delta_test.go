package peer

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror"
	"github.com/drepo-dev/drepo/mirror/dav"
)

// Deltas end to end: sync publishes a delta of a file with an insertion near its start
// (and none for a file of new bytes); a device holding the old version fetches the delta,
// rebuilds the file and verifies it, downloading only the new file's chunks; a device
// without the old version ignores deltas; a delta that does not apply (a lying store's)
// falls back to chunks with the right result; chunks verified before are kept (resume).
func TestFetchUsesDeltas(t *testing.T) {
	w := newWorld(t)
	w.sync.DeltaVersions = 2
	base := randBytes(64*testChunk, 101)
	next := append(append(append([]byte{}, base[:3000]...), randBytes(500, 102)...), base[3000:]...)
	fresh := randBytes(8*testChunk, 103)
	w.publish("app", "1", map[string][]byte{"f": base, "g": randBytes(8*testChunk, 104)})
	w.publish("app", "2", map[string][]byte{"f": next, "g": fresh})
	mdoc, err := w.manifestDoc("app", "2")
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifests.DecodeManifest(mdoc)
	if err != nil || m.Schema != manifests.ManifestSchemaDeltas {
		t.Fatalf("app@2's manifest: %v %v", err, m)
	}
	var df manifests.File
	for _, fl := range m.Files {
		if fl.Path == "f" {
			df = fl
		}
		if fl.Path == "g" && len(fl.Deltas) != 0 {
			t.Fatal("a delta of a file of new bytes was published")
		}
	}
	if len(df.Deltas) != 1 || df.Deltas[0].Size > int64(len(next))/20 {
		t.Fatalf("the delta of f: %+v", df.Deltas)
	}
	origin := source(t, "origin", w.srv.URL, 0)
	fetch := func(st *Store) *FetchReport {
		t.Helper()
		rep, err := Fetch(context.Background(), FetchOptions{Store: st, Sources: []Source{origin}, Keys: []minisign.PublicKey{w.pub}, App: "app", Version: "2"})
		if err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{"f": next, "g": fresh} {
			if b, _ := os.ReadFile(st.BlobPath(manifests.SumBytes(data))); !bytes.Equal(b, data) {
				t.Fatalf("%s: wrong bytes in the store", name)
			}
		}
		return rep
	}
	// a device that holds app@1
	st := newStore(t)
	if _, err := w.fetch(st, "app", "1", origin); err != nil {
		t.Fatal(err)
	}
	rep := fetch(st)
	if rep.DeltaBytes != df.Deltas[0].Size || rep.RebuiltFromDelta != int64(len(next)) || rep.Downloaded != int64(len(fresh)) {
		t.Fatalf("with the base: delta %d, rebuilt %d, downloaded %d", rep.DeltaBytes, rep.RebuiltFromDelta, rep.Downloaded)
	}
	t.Logf("%d bytes of delta for %d bytes of file", rep.DeltaBytes, len(next))
	// a device without it
	if rep := fetch(newStore(t)); rep.DeltaBytes != 0 || rep.Downloaded != int64(len(next)+len(fresh)) {
		t.Fatalf("without the base: delta %d, downloaded %d", rep.DeltaBytes, rep.Downloaded)
	}
	// a delta that does not apply: the chunks come from the repository, right
	st2 := newStore(t)
	if _, err := w.fetch(st2, "app", "1", origin); err != nil {
		t.Fatal(err)
	}
	putBlob(t, st2, df.Deltas[0].Blob, bytes.Repeat([]byte{7}, int(df.Deltas[0].Size)))
	if rep := fetch(st2); rep.RebuiltFromDelta != 0 || rep.Downloaded != int64(len(next)+len(fresh)) {
		t.Fatalf("a delta that does not apply: rebuilt %d, downloaded %d", rep.RebuiltFromDelta, rep.Downloaded)
	}
	// resume: chunks verified by an earlier, interrupted run stay; the delta rebuilds the rest
	st3 := newStore(t)
	if _, err := w.fetch(st3, "app", "1", origin); err != nil {
		t.Fatal(err)
	}
	p, err := st3.OpenPartial(df.SHA256, df.Size, m.ChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		markChunk(t, p, next, m.ChunkSize, i)
	}
	p.Close()
	if rep := fetch(st3); rep.AlreadyHeld != 10*m.ChunkSize || rep.RebuiltFromDelta != int64(len(next))-10*m.ChunkSize {
		t.Fatalf("resume: held %d, rebuilt %d", rep.AlreadyHeld, rep.RebuiltFromDelta)
	}
}

// Peers serve deltas too: a device that fetched the delta shares it, and a second device
// of the LAN (peers first) takes it from there; the repository sends the delta once.
func TestDeltaFromAPeer(t *testing.T) {
	w := newWorld(t)
	w.sync.DeltaVersions = 1
	base := randBytes(32*testChunk, 111)
	next := append(append(append([]byte{}, base[:100]...), randBytes(50, 112)...), base[100:]...)
	w.publish("app", "1", map[string][]byte{"f": base})
	w.publish("app", "2", map[string][]byte{"f": next})
	mdoc, _ := w.manifestDoc("app", "2")
	m, err := manifests.DecodeManifest(mdoc)
	if err != nil || len(m.Files[0].Deltas) != 1 {
		t.Fatalf("app@2 has no delta: %v", err)
	}
	origin := newFaultProxy(t, w.srv.URL, m.Files[0].Deltas[0].Blob, nil, false) // counts the delta bytes the repository sends
	repo := source(t, "origin", origin.URL, 10)
	stA, stB := newStore(t), newStore(t)
	for _, st := range []*Store{stA, stB} {
		if _, err := w.fetch(st, "app", "1", source(t, "direct", w.srv.URL, 0)); err != nil {
			t.Fatal(err)
		}
	}
	repA, err := w.fetch(stA, "app", "2", repo)
	if origin.served.Load() != repA.DeltaBytes {
		t.Fatalf("the repository sent %d bytes of the delta to A, want %d", origin.served.Load(), repA.DeltaBytes)
	}
	if err != nil || repA.DeltaBytes == 0 {
		t.Fatalf("device A: %v, delta %d", err, repA.DeltaBytes)
	}
	sentToA := origin.served.Load()
	_, discoA := daemon(t, stA, 1, nil, nil)
	id, _ := stB.Instance()
	g := &PeerGroup{Targets: []*net.UDPAddr{discoA}, Static: []*net.UDPAddr{discoA}, Instance: id, Wait: 200 * time.Millisecond, Stall: time.Second}
	prio := 20
	repB, err := Fetch(context.Background(), FetchOptions{Store: stB, Keys: []minisign.PublicKey{w.pub}, App: "app", Version: "2",
		Sources: WithPeers([]Source{repo}, g.Source(0), &prio)})
	if err != nil || repB.DeltaBytes != repA.DeltaBytes {
		t.Fatalf("device B: %v, delta %d (A's %d)", err, repB.DeltaBytes, repA.DeltaBytes)
	}
	if b, _ := os.ReadFile(stB.BlobPath(manifests.SumBytes(next))); !bytes.Equal(b, next) {
		t.Fatal("device B: wrong bytes")
	}
	var fromPeer int64
	for _, s := range repB.Sources {
		if s.Kind == KindPeer {
			fromPeer += s.Bytes
		}
	}
	if fromPeer < repB.DeltaBytes || origin.served.Load() != sentToA {
		t.Fatalf("the delta came from the peer with %d bytes; the repository sent %d more", fromPeer, origin.served.Load()-sentToA)
	}
}

// A deltas_only repository (a site's own, behind a thin WAN) gets a file's delta instead of
// the file where it holds the base; verify accepts that; a device rebuilds the file, with
// the base it holds or with the base fetched whole; chains stay one step: a file whose
// bases are all absent goes whole.
func TestDeltasOnlyRepository(t *testing.T) {
	w := newWorld(t)
	w.sync.DeltaVersions = 2
	w.sync.Repos[0].DeltasOnly = true
	vs := [][]byte{randBytes(32*testChunk, 121)}
	for i := 1; i < 4; i++ {
		prev := vs[i-1]
		vs = append(vs, append(append(append([]byte{}, prev[:1000*i]...), randBytes(300, uint64(122+i))...), prev[1000*i:]...))
	}
	has := func(data []byte) bool {
		_, err := os.Stat(filepath.Join(w.srv.Root, manifests.BlobPath(manifests.SumBytes(data))))
		return err == nil
	}
	holder := newStore(t)
	origin := source(t, "origin", w.srv.URL, 0)
	for i, data := range vs {
		w.publish("app", fmt.Sprint(i+1), map[string][]byte{"f": data})
		if i == 0 {
			if _, err := w.fetch(holder, "app", "1", origin); err != nil {
				t.Fatal(err)
			}
		}
	}
	// v1 whole; v2 and v3 as deltas from v1 (there whole); v4's bases (v3, v2) are not
	// there whole, so v4 goes whole
	if !has(vs[0]) || has(vs[1]) || has(vs[2]) || !has(vs[3]) {
		t.Fatalf("whole on the repository: v1 %v v2 %v v3 %v v4 %v", has(vs[0]), has(vs[1]), has(vs[2]), has(vs[3]))
	}
	rep := mirror.Verify(context.Background(), w.sync.Repos[0], mustOpen(t, w.sync.Repos[0]), mirror.VerifyOptions{Keys: []minisign.PublicKey{w.pub}})
	if !rep.OK {
		t.Fatalf("verify of a deltas_only repository: %+v", rep.Problems)
	}
	for name, st := range map[string]*Store{"with v1": holder, "without": newStore(t)} {
		r, err := w.fetch(st, "app", "3", origin)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b, _ := os.ReadFile(st.BlobPath(manifests.SumBytes(vs[2]))); !bytes.Equal(b, vs[2]) {
			t.Fatalf("%s: wrong bytes", name)
		}
		if r.RebuiltFromDelta != int64(len(vs[2])) {
			t.Fatalf("%s: rebuilt %d of %d bytes from the delta", name, r.RebuiltFromDelta, len(vs[2]))
		}
	}
}

func mustOpen(t *testing.T, r dav.Repository) dav.Remote {
	t.Helper()
	w, err := dav.Open(r, 1)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// Packed chunks: sync keeps a compressed form of a compressible file; a device without a
// base reads it from the repository (fewer bytes), verifies every chunk; a packed blob that
// does not decompress sends the device to the file itself, with the right result.
func TestFetchReadsPackedChunks(t *testing.T) {
	w := newWorld(t)
	w.sync.Pack = true
	text := bytes.Repeat([]byte("drepo packs compressible files chunk by chunk; "), 40000) // ~1.9 MB
	w.publish("app", "1", map[string][]byte{"doc": text, "noise": randBytes(8*testChunk, 141)})
	mdoc, _ := w.manifestDoc("app", "1")
	m, err := manifests.DecodeManifest(mdoc)
	if err != nil {
		t.Fatal(err)
	}
	var packed *manifests.Packed
	for _, fl := range m.Files {
		switch fl.Path {
		case "doc":
			packed = fl.Packed
		case "noise":
			if fl.Packed != nil {
				t.Fatal("random bytes were packed")
			}
		}
	}
	if packed == nil || packed.Size() > int64(len(text))/10 {
		t.Fatalf("doc's packed blob: %+v", packed)
	}
	origin := source(t, "origin", w.srv.URL, 0)
	st := newStore(t)
	rep, err := w.fetch(st, "app", "1", origin)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(st.BlobPath(manifests.SumBytes(text))); !bytes.Equal(b, text) {
		t.Fatal("doc: wrong bytes")
	}
	if rep.PackedBytes != packed.Size() {
		t.Fatalf("read %d packed bytes, want %d", rep.PackedBytes, packed.Size())
	}
	// damage the packed blob on the repository: the file itself is read, right
	p := filepath.Join(w.srv.Root, manifests.BlobPath(packed.Blob))
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0xff
	os.WriteFile(p, b, 0o644)
	st2 := newStore(t)
	if _, err := w.fetch(st2, "app", "1", origin); err != nil {
		t.Fatalf("with a damaged packed blob: %v", err)
	}
	if b, _ := os.ReadFile(st2.BlobPath(manifests.SumBytes(text))); !bytes.Equal(b, text) {
		t.Fatal("doc: wrong bytes after a damaged packed blob")
	}
}
