// Command drepo-bench runs drepo side by side with reference tools (curl, openssl, rclone,
// Apache…) in one run, alternating, and prints medians, min–max, the ratio drepo/reference
// and peak RSS. Speed claims in drepo are ratios from this harness, never timed asserts.
//
//	drepo-bench [--runs N] [--workdir DIR] [--json FILE] [--drepo PATH] SCENARIO...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "drepo-bench:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("drepo-bench", flag.ContinueOnError)
	runs := fs.Int("runs", 3, "measured runs per command (after one warm-up run)")
	workdir := fs.String("workdir", filepath.Join(os.TempDir(), "drepo-bench"), "folder for generated data (kept between runs)")
	jsonOut := fs.String("json", "", "also write the results as JSON to `FILE`")
	drepo := fs.String("drepo", "bin/drepo", "the drepo binary to measure")
	compare := fs.String("compare", "", "many-verify: also measure this other drepo `BINARY` (e.g. built with -tags drepo_stdxml)")
	authReads := fs.Bool("apache-auth-reads", false, "sync scenarios: Apache asks a password for reads too (it then runs bcrypt on every request)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: drepo-bench [flags] SCENARIO...\n\nscenarios:\n")
		for _, s := range scenarios() {
			fmt.Fprintf(fs.Output(), "  %-12s %s\n", s.Name, s.Doc)
		}
		fmt.Fprintf(fs.Output(), "\nexamples:\n  drepo-bench --runs 5 --json bench.json hash\n  drepo-bench --apache-auth-reads many-first many-verify\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() == 0 || *runs < 1 {
		fs.Usage()
		return errUsage
	}
	bin, err := filepath.Abs(*drepo)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("drepo binary: %w (run make build, or pass --drepo)", err)
	}
	if err := os.MkdirAll(*workdir, 0o755); err != nil {
		return err
	}
	env := &Env{Drepo: bin, Workdir: *workdir, AuthReads: *authReads}
	if *compare != "" {
		if env.Compare, err = filepath.Abs(*compare); err != nil {
			return err
		}
	}
	var results []Result
	for _, name := range fs.Args() {
		sc, ok := findScenario(name)
		if !ok {
			return fmt.Errorf("no scenario %q (have: %s): %w", name, strings.Join(scenarioNames(), ", "), errUsage)
		}
		res, err := runScenario(ctx, env, sc, *runs)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", name, err)
		}
		printTable(os.Stdout, res)
		results = append(results, res)
	}
	if *jsonOut != "" {
		return writeJSON(*jsonOut, results)
	}
	return nil
}
