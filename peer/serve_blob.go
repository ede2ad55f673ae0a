package peer

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drepo-dev/drepo/manifests"
)

// serveBlob answers GET /v1/blobs/sha256/<h>, complete or still arriving, chunk by chunk
// (so a transfer's rate is known while it runs: Preempt). A blob still arriving is served
// from its verified chunks: a range that starts inside them is answered at once and
// streams on as the fetch verifies more; a range just beyond them waits up to WaitAhead for
// the next chunk, then gets 503. Mid-stream, a chunk that does not arrive within WaitAhead
// cuts the response, so the client keeps what it verified and tries elsewhere.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request) {
	h, err := manifests.ParseHash(r.PathValue("hash"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	v, ok := s.view(h)
	if !ok {
		http.NotFound(w, r)
		return
	}
	t, ok := s.acquire(w, r)
	if !ok {
		return
	}
	defer s.release(t)
	defer func() {
		// one line per transfer (it runs when a cut response panics, too)
		result := t.result
		switch {
		case t.isCut.Load():
			result = "cut: slow, its slot given to another device"
		case result == "":
			result = "client gone or too slow (write deadline)"
		}
		s.Log.Info("transfer", "client", t.client, "blob", h, "bytes", t.sent.Load(), "seconds", time.Since(t.started).Round(time.Millisecond).Seconds(), "result", result)
	}()
	f, err := v.open()
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	s.serveRange(&countingWriter{ResponseWriter: w, n: &s.served, t: t}, r, v, f, t)
}

// serveRange answers a GET of blob v from f, waiting for chunks as the fetch verifies them
// (the time waited is the transfer's t.waited).
func (s *Server) serveRange(w http.ResponseWriter, r *http.Request, v *blobView, f *os.File, t *transfer) {
	st := v.st
	start, end, partial, ok := parseRange(r.Header.Get("Range"), st.Size)
	if !ok {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", st.Size))
		http.Error(w, "range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
		t.result = "416: range not satisfiable"
		return
	}
	// the first chunk waits less than a client's answer deadline (10 s), so a client hears
	// 503 and asks elsewhere rather than giving up on its own
	if st.Size > 0 && !v.wait(r.Context(), int(start/st.ChunkSize), min(s.WaitAhead, firstChunkWait)) {
		w.Header().Set("Retry-After", "2")
		http.Error(w, "not here yet: the chunk is still arriving", http.StatusServiceUnavailable)
		t.result = "503: the first chunk is still arriving"
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(end-start+1, 10))
	w.Header().Set("Content-Type", "application/octet-stream")
	if partial {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, st.Size))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	if r.Method == http.MethodHead || st.Size == 0 {
		t.result = "done"
		return
	}
	for off := start; off <= end; {
		i := int(off / st.ChunkSize)
		waitStart := time.Now()
		ok := v.wait(r.Context(), i, s.WaitAhead)
		t.waited.Add(int64(time.Since(waitStart)))
		if !ok {
			t.result = fmt.Sprintf("cut: chunk %d did not arrive within %s", i, s.WaitAhead)
			panic(http.ErrAbortHandler)
		}
		cOff, cLen := st.ChunkRange(i)
		n := min(cOff+cLen, end+1) - off
		// a chunk the fetch wrote past the page cache (O_DIRECT) is on disk only: ask for
		// all of it at once, so the disk reads it while the network sends the first part,
		// and send it with sendfile (io.CopyN from the file reaches the connection's
		// ReadFrom). Read-then-send in turn made each hop of a LAN chain ~10% slower
		// than its link, and a chain of 16 falls further behind at every hop.
		_ = unix.Fadvise(int(f.Fd()), off, n, unix.FADV_WILLNEED)
		if i+1 < st.Chunks() && v.has(i+1) {
			nOff, nLen := st.ChunkRange(i + 1) // and the next one, while this one is sent
			_ = unix.Fadvise(int(f.Fd()), nOff, nLen, unix.FADV_WILLNEED)
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return
		}
		for left := n; left > 0; {
			k := min(left, sendPiece)
			if s.SendLimit != nil {
				k = min(k, int64(s.SendLimit.Burst()))
				if s.SendLimit.WaitN(r.Context(), int(k)) != nil {
					return
				}
			}
			if !t.extend() {
				return
			}
			if _, err := io.CopyN(w, f, k); err != nil {
				return
			}
			left -= k
		}
		// the chunk's last bytes leave now, not with the next chunk: the peer behind this
		// one can verify it and pass it on while this one waits for more
		_ = http.NewResponseController(w).Flush()
		off += n
	}
	t.result = "done"
}

// statePoll is how often a transfer waiting for a chunk reads the state again: every hop
// of a LAN passing a blob on waits about half of it per chunk, and a read of a small file
// costs microseconds.
const statePoll = 10 * time.Millisecond

// firstChunkWait bounds the wait before a response starts.
const firstChunkWait = 5 * time.Second

// parseRange reads a single "bytes=" range against size: start, end (inclusive), whether
// it was a range at all, and whether it is satisfiable. Several ranges are answered whole.
func parseRange(h string, size int64) (start, end int64, partial, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if h == "" || !found || strings.Contains(spec, ",") {
		return 0, size - 1, false, true
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	if a == "" { // suffix: the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return 0, 0, false, false
		}
		return max(size-n, 0), size - 1, true, size > 0
	}
	s, err := strconv.ParseInt(a, 10, 64)
	if err != nil || s < 0 || s >= size {
		return 0, 0, false, false
	}
	e := size - 1
	if b != "" {
		if e, err = strconv.ParseInt(b, 10, 64); err != nil || e < s {
			return 0, 0, false, false
		}
		e = min(e, size-1)
	}
	return s, e, true, true
}

// countingWriter counts the body bytes written, in all and for the transfer.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
	t *transfer
}

func (c *countingWriter) add(n int64) {
	c.n.Add(n)
	c.t.sent.Add(n)
}

// ReadFrom lets the connection send files with sendfile.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(c.ResponseWriter, r)
	c.add(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (Flush).
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.add(int64(n))
	return n, err
}
