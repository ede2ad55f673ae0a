package mirror

import (
	"context"
	"io"
	"time"
)

// stallGuard cancels a request's context when its body makes no progress for a while: the
// transport has no idle timeout for bodies, and a dead peer must not hang a cron job.
type stallGuard struct {
	timer  *time.Timer
	limit  time.Duration
	cancel context.CancelCauseFunc
}

func newStallGuard(ctx context.Context, limit time.Duration) (context.Context, *stallGuard) {
	ctx, cancel := context.WithCancelCause(ctx)
	g := &stallGuard{limit: limit, cancel: cancel}
	g.timer = time.AfterFunc(limit, func() { cancel(ErrStalled) })
	return ctx, g
}

func (g *stallGuard) touch() { g.timer.Reset(g.limit) }

func (g *stallGuard) stop() {
	g.timer.Stop()
	g.cancel(context.Canceled)
}

// reader wraps r so that every read that brings bytes counts as progress.
func (g *stallGuard) reader(r io.Reader) io.Reader { return &stallReader{r: r, g: g} }

type stallReader struct {
	r io.Reader
	g *stallGuard
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.g.touch()
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
