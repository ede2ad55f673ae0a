package main

import (
	"slices"
	"strings"

	"github.com/drepo-dev/drepo/manifests"

	"github.com/urfave/cli/v2"
)

// reorderArgs moves a command's flags in front of its positional arguments, so that
// "drepo manifest build DIR --app a" works: urfave/cli v2 stops parsing flags at the first
// positional argument. Everything after "--" stays as it is.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	flags := app.Flags
	cmds := app.Commands
	cmdAt := -1 // where the command path starts in out
	// global flags and the command path
	for len(rest) > 0 {
		a := rest[0]
		if strings.HasPrefix(a, "-") && a != "-" && a != "--" {
			n := flagTokens(flags, a, rest)
			out = append(out, rest[:n]...)
			rest = rest[n:]
			continue
		}
		c := findCommand(cmds, a)
		if c == nil {
			break
		}
		if cmdAt < 0 {
			cmdAt = len(out)
		}
		out = append(out, a)
		rest = rest[1:]
		flags, cmds = c.Flags, c.Subcommands
		if len(cmds) == 0 {
			break
		}
	}
	var global, fl, pos []string
	for len(rest) > 0 {
		a := rest[0]
		if a == "--" {
			pos = append(pos, rest...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			// A global flag after the command (drepo ls --log-level warn) goes before it,
			// unless the command has a flag of that name.
			if cmdAt >= 0 && hasFlag(app.Flags, a) && !hasFlag(flags, a) {
				n := flagTokens(app.Flags, a, rest)
				global = append(global, rest[:n]...)
				rest = rest[n:]
				continue
			}
			n := flagTokens(flags, a, rest)
			fl = append(fl, rest[:n]...)
			rest = rest[n:]
			continue
		}
		pos = append(pos, a)
		rest = rest[1:]
	}
	if len(global) > 0 {
		out = append(out[:cmdAt], append(global, out[cmdAt:]...)...)
	}
	out = append(out, fl...)
	return append(out, pos...)
}

// hasFlag reports whether flags define the flag token a ("-x", "--name" or "--name=v").
func hasFlag(flags []cli.Flag, a string) bool {
	name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
}

// flagTokens is how many tokens the flag at rest[0] takes: 2 for "--name value" of a flag
// that takes a value, else 1.
func flagTokens(flags []cli.Flag, a string, rest []string) int {
	name := strings.TrimLeft(a, "-")
	if strings.Contains(name, "=") || len(rest) < 2 {
		return 1
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if _, isBool := f.(*cli.BoolFlag); isBool {
				return 1
			}
			return 2
		}
	}
	return 1
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// parseAppVersion reads APP@VERSION (both valid names); what names the argument in the
// usage error (exit 2).
// parseFetchTarget reads APP@VERSION, APP@latest or APP alone (the newest version).
func parseFetchTarget(s string) (app, version string, err error) {
	if !strings.Contains(s, "@") {
		s += "@" + manifests.Latest
	}
	return parseAppVersion("fetch", s)
}

func parseAppVersion(what, s string) (app, version string, err error) {
	app, version, ok := strings.Cut(s, "@")
	if !ok || manifests.ValidateName("app", app) != nil || manifests.ValidateName("version", version) != nil {
		return "", "", usageErrorf("%s %q: want APP@VERSION, e.g. base_system@12.7.4", what, s)
	}
	return app, version, nil
}
