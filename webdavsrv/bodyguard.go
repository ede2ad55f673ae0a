package webdavsrv

import (
	"io"
	"net/http"
	"time"
)

// DefaultBodyStall is how long a request body may bring no bytes (Config.BodyStall).
const DefaultBodyStall = 60 * time.Second

// bodyGuard wraps a request body: it counts the bytes read (the access log's bytes_in) and
// gives each read stall to bring something, by moving the connection's read deadline
// forward before every read. Once the body ends the deadline is cleared, so a long response
// written afterwards is not cut.
type bodyGuard struct {
	io.ReadCloser
	rc    *http.ResponseController
	stall time.Duration
	n     int64
	err   error // the body's end (io.EOF) or failure, returned again to later reads
}

func newBodyGuard(w http.ResponseWriter, body io.ReadCloser, stall time.Duration) *bodyGuard {
	if stall <= 0 {
		stall = DefaultBodyStall
	}
	return &bodyGuard{ReadCloser: body, rc: http.NewResponseController(w), stall: stall}
}

func (b *bodyGuard) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	_ = b.rc.SetReadDeadline(time.Now().Add(b.stall))
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err != nil {
		b.err = err
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
