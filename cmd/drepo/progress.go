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
// every logEvery otherwise (cron mails stay readable). The total may be unknown (-1) and
// may grow; the bar appears with the first byte or total, so a phase with nothing to do
// prints nothing. Add and Grow are safe from several goroutines.
type progress struct {
	stderr io.Writer
	log    *slog.Logger
	desc   string
	term   bool
	done   atomic.Int64
	mu     sync.Mutex
	total  int64 // -1: not known
	bar    *progressbar.ProgressBar
	stop   chan struct{}
	wg     sync.WaitGroup
}

const logEvery = 10 * time.Second

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newProgress(stderr io.Writer, log *slog.Logger, desc string, total int64) *progress {
	p := &progress{stderr: stderr, log: log, desc: desc, total: total, term: isTerminal(stderr), stop: make(chan struct{})}
	if p.term {
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
				p.mu.Lock()
				total := p.total
				p.mu.Unlock()
				p.log.Info(p.desc, "bytes", d, "total", total, "rate_mib_s", int64(rate/(1<<20)))
			}
		}
	}()
	return p
}

// barLocked returns the bar, made on first use; p.mu is held.
func (p *progress) barLocked() *progressbar.ProgressBar {
	if p.bar == nil {
		stderr := p.stderr
		p.bar = progressbar.NewOptions64(p.total,
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription(p.desc),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionFullWidth(),
			progressbar.OptionOnCompletion(func() { _, _ = io.WriteString(stderr, "\n") }),
		)
	}
	return p.bar
}

func (p *progress) Add(n int) {
	p.done.Add(int64(n))
	if p.term {
		p.mu.Lock()
		_ = p.barLocked().Add(n)
		p.mu.Unlock()
	}
}

// Grow raises the total by n (from unknown: sets it to n).
func (p *progress) Grow(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.total < 0 {
		p.total = 0
	}
	p.total += n
	if p.term {
		p.barLocked().ChangeMax64(p.total)
	}
}

// Finish stops the reporting; the bar is completed only if all bytes arrived.
func (p *progress) Finish() {
	if !p.term {
		close(p.stop)
		p.wg.Wait()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.bar == nil:
	case p.done.Load() >= p.total:
		_ = p.bar.Finish()
	default:
		_ = p.bar.Exit()
	}
}

// lineClearingWriter starts every log line on a terminal by clearing the line, so a log
// line printed while a progress bar is drawn does not run into the bar; the bar redraws
// itself below it on its next update.
type lineClearingWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineClearingWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := io.WriteString(l.w, "\r\x1b[K"); err != nil {
		return 0, err
	}
	return l.w.Write(b)
}
