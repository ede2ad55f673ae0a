package main

import (
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress reports bytes done: a progress bar when stderr is a terminal, a plain log line
// every logEvery otherwise (cron mails stay readable). Add is safe from several goroutines.
type progress struct {
	bar   *progressbar.ProgressBar
	log   *slog.Logger
	desc  string
	total int64
	done  atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
}

const logEvery = 10 * time.Second

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newProgress(stderr io.Writer, log *slog.Logger, desc string, total int64) *progress {
	p := &progress{log: log, desc: desc, total: total, stop: make(chan struct{})}
	if isTerminal(stderr) {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription(desc),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionFullWidth(),
			progressbar.OptionOnCompletion(func() { _, _ = io.WriteString(stderr, "\n") }),
		)
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(logEvery)
		defer t.Stop()
		start := time.Now()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				d := p.done.Load()
				rate := float64(d) / time.Since(start).Seconds()
				p.log.Info(p.desc, "bytes", d, "total", p.total, "rate_mib_s", int64(rate/(1<<20)))
			}
		}
	}()
	return p
}

func (p *progress) Add(n int) {
	p.done.Add(int64(n))
	if p.bar != nil {
		_ = p.bar.Add(n)
	}
}

// Finish stops the reporting; the bar is completed only if all bytes arrived.
func (p *progress) Finish() {
	if p.bar != nil {
		if p.done.Load() >= p.total {
			_ = p.bar.Finish()
		} else {
			_ = p.bar.Exit()
		}
		return
	}
	close(p.stop)
	p.wg.Wait()
}
