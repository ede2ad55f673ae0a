package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror"
	"github.com/drepo-dev/drepo/mirror/dav"
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
Safety (each stops the run with exit 1 before any index is replaced, naming what it found):
a new index that drops more than half of the published app versions (an unmounted source
looks empty) needs --allow-removals; a published app version whose files changed needs
--republish APP@VERSION (versions are immutable: publish a new one instead). Retention is
the config's keep: setting, so every cron run publishes the same catalogue; --prune --keep N
overrides it for one run. A signing key whose public half is not in trusted_keys is refused
(exit 2). Serials never repeat: the next is above every serial in state_dir or any
repository's index.
With publish: gated in the config, sync updates the staging repositories (priority < 0)
only; drepo promote then brings the live ones to the index tested there. A repository
URL whose folder does not exist is refused (exit 2: a typo must not start a new
repository); --init creates it.
Exit 0 when every repository is up to date, 1 when any failed, 2 on bad usage or config.

Examples:
   drepo sync
   drepo sync --init                   # the first sync to a new repository folder
   drepo sync --repo berlin --repo munich --transfers 8
   drepo sync --dry-run
   drepo sync --bwlimit 20M            # bytes per second over all uploads
   drepo sync --prune --keep 3         # publish the newest 3 versions per app, delete other blobs
   drepo sync --full                   # list every blob and re-upload what is missing or the wrong size
   drepo sync --allow-removals         # the source really dropped most versions
   drepo sync --republish tool@1.0     # tool 1.0 changed on purpose (devices holding it keep the old bytes)`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "repo", Usage: "only this repository `NAME` (repeatable)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan; change nothing"},
			&cli.IntFlag{Name: "transfers", Value: 4, Usage: "parallel uploads per repository"},
			&cli.StringFlag{Name: "bwlimit", Usage: "upload `RATE` in bytes per second over all uploads (e.g. 20M)"},
			&cli.BoolFlag{Name: "prune", Usage: "with --keep: remove app versions beyond the newest N and unreferenced blobs"},
			&cli.IntFlag{Name: "keep", Usage: "versions per app to keep with --prune"},
			&cli.BoolFlag{Name: "full", Usage: "check every blob's presence and size, and repair"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.BoolFlag{Name: "allow-removals", Usage: "publish even if more than half of the published app versions go"},
			&cli.StringSliceFlag{Name: "republish", Usage: "let the changed content of published `APP@VERSION` replace it (repeatable)"},
			&cli.BoolFlag{Name: "init", Usage: "create the folder of a repository that does not exist yet"},
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
			if _, err := cfg.sourceDir(""); err != nil {
				return err
			}
			keep, keepApps := cfg.Keep.Versions, cfg.Keep.Apps
			if c.Bool("prune") {
				keep, keepApps = c.Int("keep"), nil
			}
			for _, v := range c.StringSlice("republish") {
				if _, _, err := parseAppVersion("--republish", v); err != nil {
					return err
				}
			}
			repos, err := cfg.syncRepositories(c.StringSlice("repo"))
			if err != nil {
				return err
			}
			key, err := cfg.signingKey()
			if err != nil {
				return err
			}
			keys, err := cfg.trustedKeys()
			if err != nil {
				return err
			}
			chunk, err := cfg.chunkSize()
			if err != nil {
				return err
			}
			rep, err := mirror.Sync(c.Context, mirror.SyncOptions{ChunkSize: chunk,
				Source: cfg.Source, SigningKey: key, Keys: keys, StateDir: cfg.stateDir(), Repos: repos,
				Transfers: c.Int("transfers"), BWLimit: bw, DryRun: c.Bool("dry-run"), Full: c.Bool("full"),
				Keep: keep, KeepApps: keepApps, AllowRemovals: c.Bool("allow-removals"), Republish: c.StringSlice("republish"), Init: c.Bool("init"),
				DeltaVersions: cfg.deltaVersions(), Pack: cfg.packed(),
				Log: e.log, Progress: &phaseProgress{stderr: e.stderr, log: e.log},
			})
			if errors.Is(err, mirror.ErrUntrustedKey) {
				return fmt.Errorf("%s: signing_key %s: %w: %w", cfg.path, cfg.SigningKey, err, errConfig)
			}
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if err := e.printJSON(rep); err != nil {
					return err
				}
			} else {
				printSyncReport(e, rep)
			}
			for _, r := range rep.Repos {
				if r.NoRepository {
					return fmt.Errorf("%s: repository %s: %s: %w", cfg.path, r.Name, r.Error, errConfig)
				}
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
	removed := ""
	if n := len(rep.RemovedVersions); n > 0 {
		removed = fmt.Sprintf(", %d removed: %s", n, strings.Join(rep.RemovedVersions, " "))
	}
	verb := ""
	if slices.ContainsFunc(rep.Repos, func(r mirror.RepoResult) bool { return r.Status == mirror.StatusPlanned }) {
		verb = " (dry run: nothing changed)"
	}
	fmt.Fprintf(e.stdout, "index serial %d (%s), %d app versions%s%s\n", rep.Serial, state, rep.Versions, removed, verb)
	if rep.DeltasBuilt > 0 {
		fmt.Fprintf(e.stdout, "built %d deltas in %s\n", rep.DeltasBuilt, rep.DeltaBuild.Round(time.Millisecond))
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tPRIORITY\tSTATUS\tBLOBS\tBYTES\tDELTA BYTES\tREMOVED\tTIME\tERROR")
	for _, r := range rep.Repos {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Name, r.Priority, r.Status, r.Uploaded, r.UploadedBytes, r.UploadedDeltaBytes,
			r.Removed, r.Duration.Round(time.Millisecond), manifests.Printable(r.Error))
	}
	_ = tw.Flush()
}

// syncRepositories are the repositories a sync updates: those named, else all; with
// publish: gated, the staging ones only (naming a live one is refused: the gate is
// promote).
func (c *Config) syncRepositories(names []string) ([]dav.Repository, error) {
	repos, err := c.repositories(names)
	if err != nil || !c.gated() {
		return repos, err
	}
	var staging []dav.Repository
	for _, r := range repos {
		if !r.Staging() {
			if len(names) > 0 {
				return nil, usageErrorf("publish: gated: %s is live (priority %d); drepo promote brings it the index tested on staging", r.Name, r.Priority)
			}
			continue
		}
		staging = append(staging, r)
	}
	if len(staging) == 0 {
		return nil, fmt.Errorf("%s: publish: gated needs a staging repository (priority < 0) to publish to: %w", c.path, errConfig)
	}
	return staging, nil
}
