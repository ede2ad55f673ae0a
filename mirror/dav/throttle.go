package dav

import (
	"context"
	"io"

	"golang.org/x/time/rate"
)

// Throttle reads r no faster than lim allows (nil: as fast as it comes): each read is cut
// to lim's burst and waits for its bytes. Every bandwidth limit goes through it: sync's
// uploads, a device's downloads (--bwlimit) and a peer's sending.
func Throttle(ctx context.Context, r io.Reader, lim *rate.Limiter) io.Reader {
	if lim == nil {
		return r
	}
	return &throttled{ctx: ctx, r: r, lim: lim}
}

type throttled struct {
	ctx context.Context
	r   io.Reader
	lim *rate.Limiter
}

func (t *throttled) Read(b []byte) (int, error) {
	if len(b) > t.lim.Burst() {
		b = b[:t.lim.Burst()]
	}
	n, err := t.r.Read(b)
	if n > 0 {
		if werr := t.lim.WaitN(t.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// NewLimiter is a limiter of bytesPerSecond (0: none, nil) whose burst is a second's
// worth, between 4 KiB and 1 MiB: reads and writes under it go in pieces of its burst.
func NewLimiter(bytesPerSecond int64) *rate.Limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(bytesPerSecond), int(min(max(bytesPerSecond, 4<<10), 1<<20)))
}
