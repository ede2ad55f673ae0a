package peer

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// Authenticated peers: with the fleet's CA, a device fetches only over HTTPS from peers
// whose certificate the CA issued, and a peer that requires client certificates serves
// only devices with one. A peer with a certificate from elsewhere (a forged answer's
// target) never gets a request for bytes; its plain HTTP serves no blob.
func TestFleetPeersAreAuthenticated(t *testing.T) {
	w := newWorld(t)
	data := randBytes(6*testChunk+5, 91)
	w.publish("app", "1", map[string][]byte{"f": data})
	h := manifests.SumBytes(data)
	dir := t.TempDir()
	fleet := davtest.GenerateCA(t, dir, "fleet")
	rogue := davtest.GenerateCA(t, dir, "rogue")
	certA, keyA := fleet.Issue(t, "device-a")
	certC, keyC := fleet.Issue(t, "device-c")
	certR, keyR := rogue.Issue(t, "rogue")
	// A: holds the blob, serves it over HTTPS to the fleet only
	stA := newStore(t)
	if _, err := w.fetch(stA, "app", "1", source(t, "origin", w.srv.URL, 0)); err != nil {
		t.Fatal(err)
	}
	urlA, discoA := daemon(t, stA, 1, nil, func(o *DaemonOptions) {
		o.HTTPS, o.TLSCert, o.TLSKey, o.CACert, o.RequireClientCert = true, certA, keyA, fleet.File, true
	})
	// B: a peer with a certificate from elsewhere that sends wrong bytes
	stB := lyingStore(t, w, data, 100)
	_, discoB := daemon(t, stB, 1, nil, func(o *DaemonOptions) { o.HTTPS, o.TLSCert, o.TLSKey = true, certR, keyR })
	if resp, _ := get(t, urlA+"v1/blobs/sha256/"+h.String(), ""); resp.StatusCode != 403 {
		t.Fatalf("plain HTTP of a peer that requires client certificates: %d, want 403", resp.StatusCode)
	}
	fetch := func(cert, key string) (*FetchReport, error) {
		tlsCfg, err := FleetClientTLS(fleet.File, cert, key)
		if err != nil {
			t.Fatal(err)
		}
		st := newStore(t)
		id, _ := st.Instance()
		targets := []*net.UDPAddr{discoB, discoA}
		g := &PeerGroup{Targets: targets, Static: targets, Instance: id, Wait: 200 * time.Millisecond, Stall: time.Second, TLS: tlsCfg}
		rep, err := Fetch(context.Background(), FetchOptions{Store: st, Keys: []minisign.PublicKey{w.pub}, App: "app", Version: "1",
			Sources: WithPeers([]Source{source(t, "down", "http://127.0.0.1:1/", 10)}, g.Source(0), nil)})
		if err == nil {
			if b, _ := os.ReadFile(st.BlobPath(h)); !bytes.Equal(b, data) {
				t.Fatal("wrong bytes in the store")
			}
		}
		return rep, err
	}
	rep, err := fetch(certC, keyC)
	if err != nil {
		t.Fatalf("a fleet device: %v\n%+v", err, rep)
	}
	for _, s := range rep.Sources {
		switch {
		case s.Kind != KindPeer || s.Name == "peers":
		case strings.HasPrefix(s.Name, "peer "+discoA.IP.String()):
			if s.Bytes < int64(len(data)) {
				t.Errorf("the fleet peer delivered %d bytes, want the blob's %d", s.Bytes, len(data))
			}
		default: // B: refused at the handshake, never read from (so never caught lying)
			if s.Bytes != 0 || s.Banned || len(s.Errors) == 0 || !strings.Contains(strings.Join(s.Errors, " "), "fleet's CA") {
				t.Errorf("the rogue peer: %+v", s)
			}
		}
	}
	// a device whose certificate is not from the fleet's CA gets nothing from A
	if rep, err := fetch(certR, keyR); err == nil {
		t.Fatalf("a device with a rogue certificate fetched: %+v", rep)
	}
}
