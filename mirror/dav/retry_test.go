package dav

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRetryable(t *testing.T) {
	retry := []error{
		&StatusError{Code: 500}, &StatusError{Code: 503}, &StatusError{Code: 423}, &StatusError{Code: 425},
		&StatusError{Code: 429}, fmt.Errorf("x: %w", syscall.ECONNRESET), fmt.Errorf("x: %w", syscall.ECONNREFUSED),
		io.ErrUnexpectedEOF, fmt.Errorf("mirror: PUT x: %w", ErrStalled),
	}
	for _, err := range retry {
		if !Retryable(err) {
			t.Errorf("Retryable(%v) = false", err)
		}
	}
	final := []error{
		&StatusError{Code: 401}, &StatusError{Code: 403}, &StatusError{Code: 404}, &StatusError{Code: 409},
		&StatusError{Code: 412}, &StatusError{Code: 501}, &StatusError{Code: 507}, context.Canceled,
		fmt.Errorf("mirror: x: %w", errors.New("source file changed since it was hashed")), errors.New("something else"),
	}
	for _, err := range final {
		if Retryable(err) {
			t.Errorf("Retryable(%v) = true", err)
		}
	}
}

func TestRetryDo(t *testing.T) {
	r := Retry{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond}
	n := 0
	err := r.Do(context.Background(), discardLogger(), "x", func() error {
		n++
		if n < 3 {
			return &StatusError{Code: 503}
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("transient failures: err %v after %d tries", err, n)
	}
	n = 0
	err = r.Do(context.Background(), discardLogger(), "x", func() error { n++; return &StatusError{Code: 404} })
	if n != 1 || !errors.Is(err, ErrNotFound) {
		t.Fatalf("a 404 was retried (%d tries): %v", n, err)
	}
	n = 0
	err = r.Do(context.Background(), discardLogger(), "x", func() error { n++; return &StatusError{Code: 500} })
	if n != 3 || err == nil {
		t.Fatalf("tries not bounded: %d, %v", n, err)
	}
}

// TestStallGuard: a body that stops delivering cancels its context with ErrStalled; one that
// keeps delivering does not (the guard is about progress, not total time).
func TestStallGuard(t *testing.T) {
	ctx, g := newStallGuard(context.Background(), time.Second)
	g.minBytes = 1
	r := g.reader(strings.NewReader("some bytes"))
	buf := make([]byte, 1)
	for i := 0; i < 5; i++ {
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // each gap far below the limit
	}
	if ctx.Err() != nil {
		t.Fatal("a progressing transfer was cancelled")
	}
	<-ctx.Done() // no more reads: the guard fires
	if !errors.Is(context.Cause(ctx), ErrStalled) {
		t.Fatalf("cause %v, want ErrStalled", context.Cause(ctx))
	}
	g.stop()
}

// A body that drips (a few bytes per window, under MinProgress) stalls like a silent one.
func TestStallGuardNeedsARate(t *testing.T) {
	ctx, g := newStallGuard(context.Background(), 300*time.Millisecond)
	defer g.stop()
	r := g.reader(strings.NewReader(strings.Repeat("x", 1000)))
	buf := make([]byte, 1)
	for ctx.Err() == nil {
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // 50 bytes a second
	}
	if !errors.Is(context.Cause(ctx), ErrStalled) {
		t.Fatalf("cause %v, want ErrStalled", context.Cause(ctx))
	}
}
