// Command drepo mirrors app binaries to WebDAV repositories, verifies them, serves a
// repository, and fetches and shares apps on devices. See README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/drepo-dev/drepo/manifests"
)

// Exit codes, shared by every command (README "Exit codes").
const (
	exitOK      = 0 // success
	exitFailure = 1 // the job ran and found or caused a failure
	exitUsage   = 2 // bad usage or configuration
)

// errUsage marks bad command-line usage (exit code 2).
var errUsage = errors.New("usage error")

func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errUsage)
}

func main() {
	ctx, stop := signalContext()
	// DREPO_CPUPROFILE=FILE writes a CPU profile of the run (for go tool pprof).
	if p := os.Getenv("DREPO_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
	}
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	// DREPO_MEMPROFILE=FILE writes where the run allocated (go tool pprof -sample_index=alloc_space).
	if p := os.Getenv("DREPO_MEMPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	if code != exitOK {
		pprof.StopCPUProfile()
		os.Exit(code)
	}
}

// run executes the CLI and maps the outcome to an exit code; main does nothing else. A run
// that a signal ended (the cause of ctx, signalContext) exits 128+signal with one line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	if len(args) > 1 && args[len(args)-1] == "--generate-bash-completion" {
		// the shell asks what may come next: urfave/cli answers, args as typed
		return exitCode(app.RunContext(ctx, args))
	}
	err := app.RunContext(ctx, reorderArgs(app, args))
	var sig signalCause
	if errors.As(context.Cause(ctx), &sig) {
		line := "interrupted (" + sig.name() + ")"
		var kept *keptError
		if errors.As(err, &kept) {
			line += fmt.Sprintf("; %d bytes kept, the next run resumes", kept.bytes)
		}
		fmt.Fprintf(stderr, "drepo: %s\n", line)
		return 128 + int(sig.sig)
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "drepo: %s\n", printableLines(withoutPrefixes(cleanErr(err))))
	return exitCode(err)
}

// pkgPrefix is the "package: " an error carries in the code (STYLE: errors say where they
// come from), which a person reading the CLI's line has no use for.
var pkgPrefix = regexp.MustCompile(`\b(peer|mirror|manifests|webdavsrv|dav): `)

// withoutPrefixes drops the package prefixes from an error's text.
func withoutPrefixes(s string) string { return pkgPrefix.ReplaceAllString(s, "") }

// signalCause is why a run's context ended: SIGINT or SIGTERM.
type signalCause struct{ sig syscall.Signal }

func (s signalCause) Error() string { return "interrupted by " + s.name() }

func (s signalCause) name() string {
	if s.sig == syscall.SIGINT {
		return "SIGINT"
	}
	return "SIGTERM"
}

// signalContext is a context that SIGINT or SIGTERM ends, with the signal as its cause; a
// second signal exits at once.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		s, ok := <-ch
		if !ok {
			return
		}
		sig := s.(syscall.Signal)
		cancel(signalCause{sig})
		if _, ok := <-ch; ok {
			os.Exit(128 + int(sig))
		}
	}()
	return ctx, func() { signal.Stop(ch); close(ch); cancel(nil) }
}

// keptError is a command's error that says how many verified bytes it kept (a fetch cut
// short: the next run resumes from them).
type keptError struct {
	err   error
	bytes int64
}

func (k *keptError) Error() string { return k.err.Error() }
func (k *keptError) Unwrap() error { return k.err }

func exitCode(err error) int {
	var ec cli.ExitCoder
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage), errors.Is(err, errConfig):
		return exitUsage
	case errors.As(err, &ec):
		return ec.ExitCode()
	}
	return exitFailure
}

// printableLines makes every line of s printable (manifests.Printable): an error may quote
// what a server or peer wrote, and must not drive the terminal.
func printableLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = manifests.Printable(l)
	}
	return strings.Join(lines, "\n")
}

// cleanErr drops the sentinel suffix used only for classifying the error.
func cleanErr(err error) string {
	s := err.Error()
	for _, suffix := range []string{": " + errUsage.Error(), ": " + errConfig.Error()} {
		if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
			return s[:len(s)-len(suffix)]
		}
	}
	return s
}

// env is what every command gets: where to write, the logger and the config lookup.
type env struct {
	stdout, stderr io.Writer
	log            *slog.Logger
	configFlag     string
	notFound       string // a command name that does not exist
}

// printJSON writes v as indented JSON on stdout: what --json prints.
func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// configOptional loads the config file if one is found; without an explicit --config or
// DREPO_CONFIG, having none is fine (nil, nil).
func (e *env) configOptional() (*Config, error) {
	if e.configFlag == "" && os.Getenv("DREPO_CONFIG") == "" {
		if _, err := findConfig(""); err != nil {
			return nil, nil
		}
	}
	return e.config()
}

// config finds and loads the configuration file, logging its warnings.
func (e *env) config() (*Config, error) {
	p, err := findConfig(e.configFlag)
	if err != nil {
		return nil, err
	}
	cfg, warns, err := loadConfig(p)
	if err != nil {
		return nil, err
	}
	for _, w := range warns {
		e.log.Warn(w)
	}
	return cfg, nil
}

func newApp(stdout, stderr io.Writer) *cli.App {
	e := &env{stdout: stdout, stderr: stderr}
	app := &cli.App{
		Name:  "drepo",
		Usage: "mirror app binaries to WebDAV repositories, verify them, and share them on the LAN",
		Description: `Examples:
   drepo keygen --out /etc/drepo/drepo
   drepo manifest build ./apps/base_system/12.7.4 --app base_system --version 12.7.4 -o manifest.json
   drepo --config /etc/drepo/drepo.yaml config show

Exit codes: 0 success, 1 the job ran and found or caused a failure, 2 bad usage or configuration.`,
		Writer:               stdout,
		ErrWriter:            stderr,
		Version:              buildVersion(),
		EnableBashCompletion: true, // drepo completion prints the scripts that use it
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "config `FILE` (else $DREPO_CONFIG, ./drepo.yaml, /etc/drepo/drepo.yaml)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text (key=value lines) or json (one object a line)"},
		},
		Before: func(c *cli.Context) error {
			e.configFlag = c.String("config")
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return usageErrorf("--log-level %q: want debug, info, warn or error", c.String("log-level"))
			}
			logOut := stderr
			if isTerminal(stderr) {
				logOut = &lineClearingWriter{w: stderr}
			}
			opts := &slog.HandlerOptions{Level: lvl}
			switch c.String("log-format") {
			case "text":
				e.log = slog.New(slog.NewTextHandler(logOut, opts))
			case "json":
				e.log = slog.New(slog.NewJSONHandler(logOut, opts))
			default:
				return usageErrorf("--log-format %q: want text or json", c.String("log-format"))
			}
			return nil
		},
		Commands: []*cli.Command{
			versionCommand(e),
			keygenCommand(e),
			manifestCommand(e),
			configCommand(e),
			serveCommand(e),
			htpasswdCommand(e),
			syncCommand(e),
			promoteCommand(e),
			verifyCommand(e),
			lsCommand(e),
			fetchCommand(e),
			storeCommand(e),
			peerCommand(e),
			discoverCommand(e),
			completionCommand(e),
			manCommand(e),
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return fmt.Errorf("%v: %w", err, errUsage)
		},
		// urfave/cli gives CommandNotFound no return value, so it leaves its verdict for After.
		CommandNotFound: func(_ *cli.Context, name string) { e.notFound = name },
		After: func(*cli.Context) error {
			if e.notFound != "" {
				return usageErrorf("no command %q; see drepo --help", e.notFound)
			}
			return nil
		},
		ExitErrHandler: func(*cli.Context, error) {}, // run() maps errors to exit codes
	}
	for _, c := range app.Commands {
		setUsageErrors(c)
	}
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintln(c.App.Writer, versionLine()) }
	return app
}

// setUsageErrors makes flag errors of a command and its subcommands exit with code 2.
func setUsageErrors(c *cli.Command) {
	c.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return fmt.Errorf("%v: %w", err, errUsage)
	}
	for _, s := range c.Subcommands {
		setUsageErrors(s)
	}
}
