package main

import (
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/drepo-dev/drepo/mirror"
	"github.com/drepo-dev/drepo/mirror/dav"
)

func promoteCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "promote",
		Usage: "bring the live repositories to the index tested on staging (the release gate)",
		Description: `Verifies the staging repository (its index signed by trusted_keys, every blob it names
present with its size), then brings every live repository (priority ≥ 0) to that very
index: the blobs a live repository lacks are copied from staging, each hashed as it passes,
then the same signed index bytes are committed as sync commits them. Devices on the live
repositories then see exactly what was tested. A live repository whose index is newer than
staging's (or another at the same serial) is not touched, and says so. With publish: gated
in the config, this is the only way an index reaches the live repositories.
Exit 0 when every live repository holds the staging index, 1 when staging does not verify
or a live repository failed, 2 on bad usage or config.

Examples:
   drepo promote --dry-run            # what would be copied where
   drepo promote
   drepo promote --from staging --to berlin --json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "the staging repository `NAME` (default: the only one)"},
			&cli.StringSliceFlag{Name: "to", Usage: "only this live repository `NAME` (repeatable; default: every live one)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "say what would be copied; change nothing"},
			&cli.IntFlag{Name: "transfers", Value: 4, Usage: "parallel copies per repository"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("promote takes no arguments")
			}
			cfg, err := e.config()
			if err != nil {
				return err
			}
			all, err := cfg.repositories(nil)
			if err != nil {
				return err
			}
			var from *dav.Repository
			var to []dav.Repository
			for i, r := range all {
				switch {
				case r.Staging() && (c.String("from") == "" || c.String("from") == r.Name):
					if from != nil {
						return usageErrorf("promote: several staging repositories (%s, %s): name one with --from", from.Name, r.Name)
					}
					from = &all[i]
				case r.Staging():
				case len(c.StringSlice("to")) == 0 || slices.Contains(c.StringSlice("to"), r.Name):
					to = append(to, r)
				}
			}
			if from == nil {
				return usageErrorf("promote: no staging repository (priority < 0) %s in %s", c.String("from"), cfg.path)
			}
			for _, n := range c.StringSlice("to") {
				if !slices.ContainsFunc(to, func(r dav.Repository) bool { return r.Name == n }) {
					return usageErrorf("promote: --to %s is not a live repository (priority ≥ 0) in %s", n, cfg.path)
				}
			}
			if len(to) == 0 {
				return usageErrorf("promote: no live repository (priority ≥ 0) in %s", cfg.path)
			}
			keys, err := cfg.trustedKeys()
			if err != nil {
				return err
			}
			rep, err := mirror.Promote(c.Context, mirror.PromoteOptions{From: *from, To: to, Keys: keys, Transfers: c.Int("transfers"),
				DryRun: c.Bool("dry-run"), Log: e.log, Progress: &phaseProgress{stderr: e.stderr, log: e.log}})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if err := e.printJSON(rep); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(e.stdout, "promoting serial %d from %s\n", rep.Serial, rep.From)
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "REPOSITORY\tSTATUS\tCOPIED\tBYTES\tERROR")
				for _, r := range rep.Repos {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", r.Name, r.Status, r.Uploaded, r.UploadedBytes, r.Error)
				}
				_ = tw.Flush()
			}
			if rep.Failed() {
				return fmt.Errorf("promote: at least one live repository failed")
			}
			return nil
		},
	}
}
