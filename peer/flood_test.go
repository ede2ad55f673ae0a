package peer

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drepo-dev/drepo/manifests"
)

// responder runs a Responder for a fresh store holding one complete blob on a loopback
// address of its own; it returns the server, the blob and the discovery address.
func responder(t *testing.T) (*Server, manifests.Hash, *net.UDPAddr) {
	t.Helper()
	st := newStore(t)
	data := randBytes(testChunk, 81)
	h := manifests.SumBytes(data)
	putBlob(t, st, h, data)
	srv := &Server{Store: st, HTTPPort: 1}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(loopbackIP())})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); (&Responder{Server: srv, Instance: 9}).Serve(ctx, conn) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv, h, conn.LocalAddr().(*net.UDPAddr)
}

// counter receives answers on conn until stop, counting them.
func counter(conn *net.UDPConn, n *atomic.Int64) {
	buf := make([]byte, 1024)
	for {
		if _, _, err := conn.ReadFromUDP(buf); err != nil {
			return
		}
		n.Add(1)
	}
}

// One address flooding discovery is answered at its own rate and costs the store no
// more looks than the answers it gets, while another device's requests are answered.
func TestResponderUnderAFlood(t *testing.T) {
	srv, h, to := responder(t)
	flood, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(loopbackIP())})
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	var flooded atomic.Int64
	go counter(flood, &flooded)
	began := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		qs := [][]byte{EncodeQuery(Query{Instance: 5, Kind: KindBlob, Blob: h}), EncodeQuery(Query{Instance: 5, Kind: KindIndex}),
			EncodeQuery(Query{Instance: 5, Kind: KindBlob, Blob: manifests.SumBytes([]byte("not held"))})}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			flood.WriteToUDP(qs[i%len(qs)], to)
			if i%64 == 0 {
				time.Sleep(time.Millisecond) // ~50k datagrams a second: more than the socket buffer, not a busy loop
			}
		}
	}()
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(loopbackIP())})
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	answered := 0
	buf := make([]byte, 1024)
	for range 20 {
		probe.WriteToUDP(EncodeQuery(Query{Instance: 6, Kind: KindBlob, Blob: h}), to)
		probe.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if n, _, err := probe.ReadFromUDP(buf); err == nil {
			if a, err := DecodeAnswer(buf[:n]); err == nil && a.Blob == h {
				answered++
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(began)
	time.Sleep(100 * time.Millisecond) // answers in flight
	if answered < 18 {
		t.Errorf("another device got %d of 20 answers during the flood", answered)
	}
	bound := int64(answerBurst + answerRate*elapsed.Seconds() + 1)
	if got := flooded.Load(); got > bound {
		t.Errorf("the flooding address got %d answers in %s, over its rate (%d)", got, elapsed, bound)
	}
	// every look at the store answers (or refuses) a datagram the rate let through
	if looks := srv.cache.looks.Load(); looks > bound+int64(answered) {
		t.Errorf("the flood cost %d looks at the store (bound %d)", looks, bound+int64(answered))
	}
	t.Logf("flood of %s: %d answers to the flooder, %d of 20 to another device, %d looks at the store", elapsed.Round(time.Millisecond), flooded.Load(), answered, srv.cache.looks.Load())
}

// Requests from 200 forged source addresses get at most the global answer budget in all.
func TestResponderGlobalBudget(t *testing.T) {
	_, h, to := responder(t)
	var got atomic.Int64
	var socks []*net.UDPConn
	for range 200 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(loopbackIP())})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go counter(c, &got)
		socks = append(socks, c)
	}
	q := EncodeQuery(Query{Instance: 5, Kind: KindBlob, Blob: h})
	began := time.Now()
	for round := range 30 {
		for _, c := range socks {
			c.WriteToUDP(q, to)
		}
		if round%3 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	elapsed := time.Since(began)
	time.Sleep(200 * time.Millisecond)
	bound := int64(globalBurst + globalRate*(elapsed+200*time.Millisecond).Seconds() + 1)
	if n := got.Load(); n > bound {
		t.Errorf("6000 requests from 200 addresses got %d answers in %s, over the global budget (%d)", n, elapsed, bound)
	}
	t.Logf("6000 requests from 200 addresses in %s: %d answers", elapsed.Round(time.Millisecond), got.Load())
}

// /v1/status looks at the store at most once a statusTTL, however often it is asked.
func TestStatusIsCached(t *testing.T) {
	st := newStore(t)
	data := randBytes(testChunk, 82)
	putBlob(t, st, manifests.SumBytes(data), data)
	srv := &Server{Store: st}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	began := time.Now()
	for range 400 {
		resp, err := http.Get(ts.URL + "/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	bound := int64(time.Since(began)/statusTTL) + 1
	if looks := srv.cache.looks.Load(); looks > bound {
		t.Errorf("400 status requests looked at the store %d times (bound %d)", looks, bound)
	}
}
