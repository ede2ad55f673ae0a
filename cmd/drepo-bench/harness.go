package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// Env is what scenarios get: the drepo binary and a work folder for generated data.
type Env struct {
	Drepo     string
	Workdir   string
	AuthReads bool   // sync scenarios: Apache asks a password for reads too
	Compare   string // another drepo binary to measure beside Drepo (many-verify)
}

// Scenario prepares a set of commands to compare. The first command is drepo's; the others
// are references. Setup may start servers; Cleanup stops them.
type Scenario struct {
	Name  string
	Doc   string
	Setup func(ctx context.Context, env *Env) (*Prepared, error)
}

// Prepared is a scenario ready to run.
type Prepared struct {
	Note     string // what was measured (sizes, versions), printed above the table
	Commands []Command
	Cleanup  func()
	NoWarmup bool // a round takes minutes: measure from the first
}

// Command is one contender. Before runs untimed ahead of every run (to reset state);
// RSS, if set, reports the peak RSS that matters (e.g. a server's) instead of the child's.
type Command struct {
	Name   string
	Argv   []string
	Before func() error
	RSS    func() int64
	// Run, instead of Argv, is a whole orchestration timed as one (the LAN scenario); its
	// note (e.g. bytes the repository served) goes into the table.
	Run func(ctx context.Context) (note string, err error)
}

// Sample is one timed run.
type Sample struct {
	Seconds float64 `json:"seconds"`
	RSS     int64   `json:"peak_rss_bytes"`
	Note    string  `json:"note,omitempty"`
}

// Row is one command's results.
type Row struct {
	Name    string   `json:"name"`
	Argv    []string `json:"argv"`
	Samples []Sample `json:"samples"`
	Median  float64  `json:"median_seconds"`
	Min     float64  `json:"min_seconds"`
	Max     float64  `json:"max_seconds"`
	PeakRSS int64    `json:"peak_rss_bytes"`
	// Ratio is drepo's median divided by this command's median (below 1: drepo is faster).
	Ratio float64 `json:"ratio_drepo_over_this"`
}

// Result is one scenario's table.
type Result struct {
	Scenario string    `json:"scenario"`
	Note     string    `json:"note"`
	Runs     int       `json:"runs"`
	When     time.Time `json:"when"`
	Rows     []Row     `json:"rows"`
}

// runScenario runs one warm-up round, then runs rounds, each running every command once;
// the order rotates each round so that no command always follows the same neighbour.
func runScenario(ctx context.Context, env *Env, sc Scenario, runs int) (Result, error) {
	fmt.Fprintf(os.Stderr, "== %s: preparing\n", sc.Name)
	p, err := sc.Setup(ctx, env)
	if err != nil {
		return Result{}, err
	}
	if p.Cleanup != nil {
		defer p.Cleanup()
	}
	rows := make([]Row, len(p.Commands))
	for i, c := range p.Commands {
		rows[i] = Row{Name: c.Name, Argv: c.Argv}
	}
	first := 0
	if p.NoWarmup {
		first = 1
	}
	for round := first; round <= runs; round++ {
		for k := range p.Commands {
			i := (k + round) % len(p.Commands)
			s, err := runOnce(ctx, p.Commands[i])
			if err != nil {
				return Result{}, fmt.Errorf("%s: %w", p.Commands[i].Name, err)
			}
			if round == 0 {
				fmt.Fprintf(os.Stderr, "   warm-up %-28s %7.2f s\n", p.Commands[i].Name, s.Seconds)
				continue
			}
			fmt.Fprintf(os.Stderr, "   run %d   %-28s %7.2f s  %6.1f MiB  %s\n", round, p.Commands[i].Name, s.Seconds, float64(s.RSS)/(1<<20), s.Note)
			rows[i].Samples = append(rows[i].Samples, s)
		}
	}
	for i := range rows {
		var secs []float64
		for _, s := range rows[i].Samples {
			secs = append(secs, s.Seconds)
			rows[i].PeakRSS = max(rows[i].PeakRSS, s.RSS)
		}
		slices.Sort(secs)
		rows[i].Min, rows[i].Max = secs[0], secs[len(secs)-1]
		rows[i].Median = median(secs)
	}
	for i := range rows {
		rows[i].Ratio = rows[0].Median / rows[i].Median
	}
	return Result{Scenario: sc.Name, Note: p.Note, Runs: runs, When: time.Now().UTC(), Rows: rows}, nil
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// runOnce times one command and measures its peak RSS (davtest.RunPeakRSS).
func runOnce(ctx context.Context, c Command) (Sample, error) {
	if c.Before != nil {
		if err := c.Before(); err != nil {
			return Sample{}, fmt.Errorf("before: %w", err)
		}
	}
	if c.Run != nil {
		start := time.Now()
		note, err := c.Run(ctx)
		return Sample{Seconds: time.Since(start).Seconds(), Note: note}, err
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	var stderr strings.Builder
	cmd.Stdout = io.Discard
	cmd.Stderr = &limitedWriter{w: &stderr, n: 4096}
	start := time.Now()
	peak, err := davtest.RunPeakRSS(cmd)
	d := time.Since(start)
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w\n%s", strings.Join(c.Argv, " "), err, stderr.String())
	}
	s := Sample{Seconds: d.Seconds(), RSS: peak}
	if c.RSS != nil {
		s.RSS = c.RSS()
	}
	return s, nil
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		_, _ = l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

func printTable(w io.Writer, r Result) {
	fmt.Fprintf(w, "\n%s — %s (%d runs, medians)\n", r.Scenario, r.Note, r.Runs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "command\tmedian s\tmin–max s\tdrepo/this\tpeak RSS MiB\t")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f–%.2f\t%.2f\t%.1f\t\n", row.Name, row.Median, row.Min, row.Max, row.Ratio, float64(row.PeakRSS)/(1<<20))
	}
	_ = tw.Flush()
	for _, row := range r.Rows {
		if n := len(row.Samples); n > 0 && row.Samples[n-1].Note != "" {
			fmt.Fprintf(w, "  %s: %s\n", row.Name, row.Samples[n-1].Note)
		}
	}
	fmt.Fprintln(w)
}

func writeJSON(path string, results []Result) error {
	b, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
