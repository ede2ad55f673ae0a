package mirror

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

// eachParallel calls fn(ctx, w, i) for every i in [0, n) on at most workers goroutines
// (w, in [0, workers), names the goroutine, so callers can keep per-worker buffers). It
// stops handing out work at the first error and returns that error. The goroutines live for
// the whole run: one goroutine per item grew a fresh stack through net/http for each of
// 10,000 small blobs, 7% of a sync's CPU.
func eachParallel(ctx context.Context, workers, n int, fn func(ctx context.Context, w, i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	for w := range max(1, min(workers, n)) {
		g.Go(func() error {
			for {
				if err := gctx.Err(); err != nil {
					return err
				}
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				if err := fn(gctx, w, i); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}
