package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// SmallTimeout bounds how long a small request (everything but an upload's body: index,
// signature, lease, PROPFIND, HEAD, MOVE, DELETE, MKCOL) waits for the server's answer to
// begin. A server that accepts and never answers costs a repository seconds, not minutes.
// Uploads keep HeaderTimeout, since a server may fsync a large body before answering.
const SmallTimeout = 10 * time.Second

// smallBody is the largest PUT body still treated as a small request.
const smallBody = 1 << 20

// ErrNoAnswer: the server did not begin its answer within the small-request deadline.
var ErrNoAnswer = errors.New("no answer from the server")

// answerDeadline is an http.RoundTripper that gives every small request d to get its
// response headers. It sits under both our own requests and gowebdav's, so no call site
// has to remember it.
type answerDeadline struct {
	rt http.RoundTripper
	d  time.Duration
}

func (a *answerDeadline) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.ContentLength > smallBody {
		return a.rt.RoundTrip(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	t := time.AfterFunc(a.d, func() { cancel(ErrNoAnswer) })
	resp, err := a.rt.RoundTrip(req.WithContext(ctx))
	if !t.Stop() {
		if err == nil {
			resp.Body.Close()
		}
		cancel(nil)
		return nil, fmt.Errorf("%w within %s", ErrNoAnswer, a.d)
	}
	if err != nil {
		cancel(nil)
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose releases the request's context with its body.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel(nil)
	return err
}
