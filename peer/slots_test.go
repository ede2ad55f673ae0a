package peer

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/drepo-dev/drepo/manifests"
)

// readSlowly reads a response body at about rate bytes per second until stop, and says
// how it ended.
func readSlowly(body io.Reader, rate int, stop <-chan struct{}) (int64, error) {
	buf := make([]byte, rate/10)
	var n int64
	for {
		select {
		case <-stop:
			return n, nil
		case <-time.After(100 * time.Millisecond):
		}
		k, err := io.ReadFull(body, buf)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
}

// A peer server whose only slot a slow client holds gives it to the next device: the
// probe says so, the next GET gets the slot, the slow transfer is cut (its client keeps
// what it verified and asks elsewhere). A fast transfer is never cut.
func TestServerGivesASlowTransfersSlotAway(t *testing.T) {
	st := newStore(t)
	data := randBytes(48<<20, 61)
	h := manifests.SumBytes(data)
	putBlob(t, st, h, data)
	pol := Policy{SlowFactor: 3, Sample: time.Second, Idle: 10 * time.Second, MaxWait: time.Minute}
	srv := &Server{Store: st, Limit: 1, Policy: &pol}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	blob, probe := ts.URL+"/v1/blobs/sha256/"+h.String(), ts.URL+"/v1/probe/sha256/"+h.String()
	head := func() int {
		resp, err := http.Head(probe)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// a fast client first: the server learns its link (~40 MB/s here)
	resp, err := http.Get(blob)
	if err != nil {
		t.Fatal(err)
	}
	never := make(chan struct{})
	if n, err := readSlowly(resp.Body, 4<<20, never); !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) || n != int64(len(data)) {
		t.Fatalf("fast client: %d bytes, %v", n, err)
	}
	resp.Body.Close()
	if got := head(); got != http.StatusOK {
		t.Fatalf("probe with a free slot: %d", got)
	}
	// a slow client holds the only slot
	slow, err := http.Get(blob)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Body.Close()
	type ended struct {
		n   int64
		err error
	}
	cut := make(chan ended, 1)
	stop := make(chan struct{})
	go func() { n, err := readSlowly(slow.Body, 256<<10, stop); cut <- ended{n, err} }()
	// while it is young, nobody takes its slot
	if got := head(); got != http.StatusServiceUnavailable {
		t.Fatalf("probe while the slow transfer is younger than Sample: %d, want 503", got)
	}
	if resp, err := http.Get(blob); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("GET while the slow transfer is young: %v %v", resp.StatusCode, err)
	}
	waitFor(t, func() bool { return head() == http.StatusOK })
	next, err := http.Get(blob)
	if err != nil || next.StatusCode != http.StatusOK {
		t.Fatalf("the next device: %v %v", next.StatusCode, err)
	}
	defer next.Body.Close()
	// the slow client reads what reached it before the cut, then finds the body cut short
	close(stop)
	e := <-cut
	rest, err := io.Copy(io.Discard, slow.Body)
	if e.err != nil {
		err = e.err
	}
	if err == nil || e.n+rest >= int64(len(data)) {
		t.Fatalf("the slow transfer got %d of %d bytes, %v: it should be cut", e.n+rest, len(data), err)
	}
	if n, _ := io.Copy(io.Discard, next.Body); n != int64(len(data)) {
		t.Fatalf("the next device got %d of %d bytes", n, len(data))
	}
	if srv.preempted.Load() != 1 {
		t.Fatalf("preempted %d transfers, want 1", srv.preempted.Load())
	}
}

// A client that takes the only slot and stops reading loses it within SendWait: the next
// device is served, and the holder's response ends short.
func TestServerFreesASlotHeldWithoutReading(t *testing.T) {
	st := newStore(t)
	data := randBytes(64<<20, 62) // more than the socket buffers hold
	h := manifests.SumBytes(data)
	putBlob(t, st, h, data)
	srv := &Server{Store: st, Limit: 1, SendWait: time.Second}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	blob := ts.URL + "/v1/blobs/sha256/" + h.String()
	holder, err := http.Get(blob)
	if err != nil || holder.StatusCode != http.StatusOK {
		t.Fatalf("holder: %v", err)
	}
	defer holder.Body.Close()
	if resp, err := http.Get(blob); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("GET while the slot is held: %v %v, want 503", resp.StatusCode, err)
	}
	// the holder reads nothing; its slot comes free
	waitFor(t, func() bool { return srv.active.Load() == 0 })
	next, err := http.Get(blob)
	if err != nil || next.StatusCode != http.StatusOK {
		t.Fatalf("the next device: %v", err)
	}
	if n, _ := io.Copy(io.Discard, next.Body); n != int64(len(data)) {
		t.Fatalf("the next device got %d of %d bytes", n, len(data))
	}
	next.Body.Close()
	if n, _ := io.Copy(io.Discard, holder.Body); n >= int64(len(data)) {
		t.Fatal("the holder that stopped reading got the whole blob")
	}
}

// The peer daemon logs one line per transfer: client, blob, bytes, seconds, result.
func TestPeerLogsEveryTransfer(t *testing.T) {
	var log syncBuffer
	st := newStore(t)
	data := randBytes(3*testChunk, 63)
	h := manifests.SumBytes(data)
	putBlob(t, st, h, data)
	url, _ := daemon(t, st, 1, &log, nil)
	if resp, body := get(t, url+"v1/blobs/sha256/"+h.String(), "bytes=10-"); resp.StatusCode != 206 || len(body) != len(data)-10 {
		t.Fatalf("GET: %d, %d bytes", resp.StatusCode, len(body))
	}
	waitFor(t, func() bool { return strings.Contains(log.String(), "msg=transfer") })
	line := log.String()[strings.Index(log.String(), "msg=transfer"):]
	for _, want := range []string{"blob=" + h.String(), fmt.Sprintf("bytes=%d", len(data)-10), "result=done", "client=", "seconds="} {
		if !strings.Contains(strings.SplitN(line, "\n", 2)[0], want) {
			t.Errorf("the transfer's line has no %q: %s", want, line)
		}
	}
}
