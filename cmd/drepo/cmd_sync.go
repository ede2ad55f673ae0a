package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/drepo-dev/drepo/mirror"
	"github.com/urfave/cli/v2"
)

func syncCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "sync",
		Usage: "publish the source folder to every repository (staging included)",
		Description: `Hashes what changed in the source folder (<app>/<version>/<files…>), signs the next
index when the set of app versions changed, and brings every repository up to it:
missing blobs first (in parallel), each checked on arrival, then the index, replaced
atomically. A crash or kill at any point leaves every repository's previous index valid;
the next run finishes the job. A failing repository does not stop the others.
Exit 0 when every repository is up to date, 1 when any failed, 2 on bad usage or config.

Examples:
   drepo sync
   drepo sync --repo berlin --repo munich --transfers 8
   drepo sync --dry-run
   drepo sync --bwlimit 20M            # bytes per second over all uploads
   drepo sync --prune --keep 3         # publish the newest 3 versions per app, delete other blobs
   drepo sync --full                   # list every blob and re-upload what is missing or the wrong size`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "repo", Usage: "only this repository `NAME` (repeatable)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan; change nothing"},
			&cli.IntFlag{Name: "transfers", Value: 4, Usage: "parallel uploads per repository"},
			&cli.StringFlag{Name: "bwlimit", Usage: "upload `RATE` in bytes per second over all uploads (e.g. 20M)"},
			&cli.BoolFlag{Name: "prune", Usage: "with --keep: remove app versions beyond the newest N and unreferenced blobs"},
			&cli.IntFlag{Name: "keep", Usage: "versions per app to keep with --prune"},
			&cli.BoolFlag{Name: "full", Usage: "check every blob's presence and size, and repair"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("sync takes no arguments")
			}
			if c.Bool("prune") != (c.Int("keep") > 0) {
				return usageErrorf("--prune and --keep N (N ≥ 1) go together")
			}
			if c.Int("transfers") < 1 || c.Int("transfers") > 64 {
				return usageErrorf("--transfers must be 1..64")
			}
			var bw int64
			if s := c.String("bwlimit"); s != "" {
				n, err := parseSize(s)
				if err != nil || n <= 0 {
					return usageErrorf("--bwlimit %q: want a rate such as 20M", s)
				}
				bw = n
			}
			cfg, err := e.config()
			if err != nil {
				return err
			}
			if cfg.Source == "" {
				return fmt.Errorf("%s: source is not set: %w", cfg.path, errConfig)
			}
			repos, err := cfg.repositories(c.StringSlice("repo"))
			if err != nil {
				return err
			}
			key, err := cfg.signingKey()
			if err != nil {
				return err
			}
			keys, _ := cfg.trustedKeys()
			rep, err := mirror.Sync(c.Context, mirror.SyncOptions{
				Source: cfg.Source, SigningKey: key, Keys: keys, StateDir: cfg.stateDir(), Repos: repos,
				Transfers: c.Int("transfers"), BWLimit: bw, DryRun: c.Bool("dry-run"), Full: c.Bool("full"),
				Keep: c.Int("keep"), Log: e.log, Progress: &phaseProgress{stderr: e.stderr, log: e.log},
			})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				printSyncReport(e, rep)
			}
			if rep.Failed() {
				return fmt.Errorf("sync failed for at least one repository")
			}
			return nil
		},
	}
}

func printSyncReport(e *env, rep *mirror.SyncReport) {
	state := "unchanged"
	if rep.Changed {
		state = "new"
	}
	fmt.Fprintf(e.stdout, "index serial %d (%s), %d app versions\n", rep.Serial, state, rep.Versions)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tPRIORITY\tSTATUS\tBLOBS\tBYTES\tREMOVED\tTIME\tERROR")
	for _, r := range rep.Repos {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%s\t%s\n", r.Name, r.Priority, r.Status, r.Uploaded, r.UploadedBytes,
			r.Removed, r.Duration.Round(time.Millisecond), r.Error)
	}
	_ = tw.Flush()
}
