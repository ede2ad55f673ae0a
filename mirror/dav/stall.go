package dav

import (
	"context"
	"io"
	"sync"
	"time"
)

// MinProgress is what a transfer must move in each StallTimeout window (about 1 KiB/s): a
// server that drips a byte every few seconds is as stuck as one that sends nothing.
const MinProgress = 64 << 10

// stallGuard cancels a request's context when its body moves less than minBytes in a window
// of limit: the transport has no idle timeout for bodies, and a dead or dripping peer must
// not hang a cron job.
type stallGuard struct {
	mu       sync.Mutex
	timer    *time.Timer
	limit    time.Duration
	minBytes int64
	moved    int64 // bytes since the window started
	cancel   context.CancelCauseFunc
}

func newStallGuard(ctx context.Context, limit time.Duration) (context.Context, *stallGuard) {
	ctx, cancel := context.WithCancelCause(ctx)
	g := &stallGuard{limit: limit, minBytes: MinProgress, cancel: cancel}
	g.timer = time.AfterFunc(limit, func() { cancel(ErrStalled) })
	return ctx, g
}

// progress counts n bytes; a window that has seen minBytes starts a new one.
func (g *stallGuard) progress(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.moved += int64(n)
	if g.moved >= g.minBytes {
		g.moved = 0
		g.timer.Reset(g.limit)
	}
}

func (g *stallGuard) stop() {
	g.timer.Stop()
	g.cancel(context.Canceled)
}

// reader wraps r so that the bytes it brings count as progress.
func (g *stallGuard) reader(r io.Reader) io.Reader { return &stallReader{r: r, g: g} }

type stallReader struct {
	r io.Reader
	g *stallGuard
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.g.progress(n)
	}
	return n, err
}

// guardedBody closes the guard with the body.
type guardedBody struct {
	io.Reader
	body io.Closer
	g    *stallGuard
}

func (b *guardedBody) Close() error {
	err := b.body.Close()
	b.g.stop()
	return err
}
