package manifests

import "sync"

// inOrder runs job(i) for every i in [0, n) on goroutines, at most inFlight at once, and
// hands each result to use in the order of i: the work runs in parallel while the output
// is written in sequence (a packed blob's frames, a delta's units). A job's result waits
// for the earlier ones; inFlight bounds how many wait, and so the memory. It returns the
// first error of a job or of use, and only once no job runs any more, so a job may use
// what the caller releases after it returns.
func inOrder(n int64, inFlight int, job func(i int64) ([]byte, error), use func(i int64, out []byte) error) error {
	type result struct {
		out []byte
		err error
	}
	results := make([]chan result, n)
	for i := range results {
		results[i] = make(chan result, 1)
	}
	sem := make(chan struct{}, inFlight)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	wg.Go(func() {
		for i := int64(0); i < n; i++ {
			select {
			case sem <- struct{}{}:
			case <-stop:
				return
			}
			wg.Go(func() {
				out, err := job(i)
				results[i] <- result{out, err}
			})
		}
	})
	for i := range results {
		r := <-results[i]
		<-sem
		if r.err != nil {
			return r.err
		}
		if err := use(int64(i), r.out); err != nil {
			return err
		}
	}
	return nil
}
