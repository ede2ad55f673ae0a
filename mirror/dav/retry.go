package dav

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Retry says how often and how patiently a failed request is tried again.
type Retry struct {
	Attempts int           // total tries; default 5
	Base     time.Duration // first wait; default 500 ms, doubling, with jitter
	Max      time.Duration // longest wait; default 30 s
	// budget, when set, is shared by every operation on one repository in one run: each
	// retry takes one, and when none are left a failure is final (RepoRetryBudget).
	budget *atomic.Int64
}

// RepoRetryBudget is how many retries one repository gets in one sync or verify, all
// operations together: a server that keeps failing ends that repository's run instead of
// holding it for attempts × operations.
const RepoRetryBudget = 30

// SmallAttempts is how often a small request (index, signature, lease, listing) is tried:
// each try is bounded by SmallTimeout, so one small operation gives up within about
// SmallAttempts × SmallTimeout plus the waits between.
const SmallAttempts = 3

// WithBudget returns r with a fresh per-repository retry budget.
func (r Retry) WithBudget() Retry {
	r.budget = new(atomic.Int64)
	r.budget.Store(RepoRetryBudget)
	return r
}

// small returns r for small requests: at most SmallAttempts tries.
func (r Retry) small() Retry {
	r = r.WithDefaults()
	r.Attempts = min(r.Attempts, SmallAttempts)
	return r
}

func (r Retry) WithDefaults() Retry {
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
func (r Retry) Do(ctx context.Context, log *slog.Logger, what string, fn func() error) error {
	r = r.WithDefaults()
	wait := r.Base
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || attempt >= r.Attempts || !Retryable(err) || ctx.Err() != nil {
			return err
		}
		if r.budget != nil && r.budget.Add(-1) < 0 {
			return fmt.Errorf("%w (the repository's %d retries for this run are spent)", err, RepoRetryBudget)
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

// Retryable reports whether err is worth another try. A refused redirect and a certificate
// that does not verify are final: trying again changes nothing.
func Retryable(err error) bool {
	if errors.Is(err, ErrRedirectRefused) || errors.Is(err, ErrTLSVerify) {
		return false
	}
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
