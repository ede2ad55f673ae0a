package main

import (
	"io"
	"log/slog"
)

// phaseProgress adapts progress to mirror.Progress: one bar (or log ticker) per phase.
type phaseProgress struct {
	stderr io.Writer
	log    *slog.Logger
	cur    *progress
}

func (p *phaseProgress) Start(phase string, total int64) {
	p.cur = newProgress(p.stderr, p.log, phase, total)
}

func (p *phaseProgress) Grow(n int64) {
	if p.cur != nil {
		p.cur.Grow(n)
	}
}

func (p *phaseProgress) Add(n int) {
	if p.cur != nil {
		p.cur.Add(n)
	}
}

func (p *phaseProgress) Finish() {
	if p.cur != nil {
		p.cur.Finish()
		p.cur = nil
	}
}
