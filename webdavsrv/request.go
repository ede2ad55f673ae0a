package webdavsrv

import (
	"context"
	"errors"
	"io"
	"sync"
)

// request carries what the filesystem layer must know about the HTTP request it serves:
// whether a PUT body arrived whole, and which file a MOVE/COPY replaces.
type request struct {
	body       *bodyState
	replaceSrc string // MOVE/COPY source, relative to the root
	replaceDst string // MOVE/COPY destination, relative to the root
	// A conditional PUT's preconditions, checked again under commitMu just before the
	// upload replaces its target; preconditionFailed records a refusal there (412).
	commitMu           *sync.Mutex
	precondition       func() bool
	preconditionFailed bool
}

type requestKey struct{}

func withRequest(ctx context.Context, rq *request) context.Context {
	return context.WithValue(ctx, requestKey{}, rq)
}

func requestFrom(ctx context.Context) *request {
	rq, _ := ctx.Value(requestKey{}).(*request)
	return rq
}

// errTooLarge is returned by a body over --max-upload.
var errTooLarge = errors.New("webdavsrv: request body over the upload limit")

// bodyState wraps a request body and records whether it was read to a clean end: net/http
// reports io.EOF only after Content-Length bytes (or the last chunk) arrived; a client that
// went away gives io.ErrUnexpectedEOF or a connection error instead.
type bodyState struct {
	r     io.ReadCloser
	limit int64 // -1: none
	mu    sync.Mutex
	n     int64
	eof   bool
	err   error
}

func (b *bodyState) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += int64(n)
	if b.limit >= 0 && b.n > b.limit {
		b.err = errTooLarge
		return n, errTooLarge
	}
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil && b.err == nil:
		b.err = err
	}
	return n, err
}

func (b *bodyState) Close() error { return b.r.Close() }

func (b *bodyState) complete() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof && b.err == nil
}

func (b *bodyState) tooLarge() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return errors.Is(b.err, errTooLarge)
}
