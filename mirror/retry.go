package mirror

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"syscall"
	"time"
)

// Retry says how often and how patiently a failed request is tried again.
type Retry struct {
	Attempts int           // total tries; default 5
	Base     time.Duration // first wait; default 500 ms, doubling, with jitter
	Max      time.Duration // longest wait; default 30 s
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 5
	}
	if r.Base <= 0 {
		r.Base = 500 * time.Millisecond
	}
	if r.Max <= 0 {
		r.Max = 30 * time.Second
	}
	return r
}

// do runs fn until it succeeds, fails for good, or the tries run out. Only transient
// failures are retried: connection errors, stalls, 423, 425, 429 and 5xx (Retry-After is
// honoured up to Max).
func (r Retry) do(ctx context.Context, log *slog.Logger, what string, fn func() error) error {
	r = r.withDefaults()
	wait := r.Base
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || attempt >= r.Attempts || !Retryable(err) || ctx.Err() != nil {
			return err
		}
		d := wait/2 + rand.N(wait/2+1)
		var se *StatusError
		if errors.As(err, &se) && se.RetryAfter > 0 {
			d = time.Duration(se.RetryAfter) * time.Second
		}
		d = min(d, r.Max)
		log.Warn("retrying", "what", what, "attempt", attempt, "wait", d.Round(time.Millisecond), "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(wait*2, r.Max)
	}
}

// Retryable reports whether err is worth another try.
func Retryable(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		switch {
		case se.Code == 423, se.Code == 425, se.Code == 429, se.Code == 408:
			return true
		case se.Code >= 500 && se.Code != 501 && se.Code != 505 && se.Code != 507:
			return true
		}
		return false
	}
	if errors.Is(err, context.Canceled) && !errors.Is(err, ErrStalled) {
		return false
	}
	var ne net.Error
	return errors.Is(err, ErrStalled) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.As(err, &ne)
}
