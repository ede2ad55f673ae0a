package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/peer"
)

func storeCommand(e *env) *cli.Command {
	open := func() (*peer.Store, error) {
		cfg, err := e.config()
		if err != nil {
			return nil, err
		}
		return cfg.openStore()
	}
	return &cli.Command{
		Name:  "store",
		Usage: "inspect and trim the device's store",
		Description: `Examples:
   drepo store ls
   drepo store verify
   drepo store gc --keep 2
   drepo store rm firefox@127.0`,
		Subcommands: []*cli.Command{{
			Name:  "ls",
			Usage: "list the app versions the store holds (complete or partly fetched)",
			Description: `Examples:
   drepo store ls
   drepo store ls --json`,
			Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
			Action: func(c *cli.Context) error {
				st, err := open()
				if err != nil {
					return err
				}
				vs, err := st.Versions()
				if err != nil {
					return err
				}
				if c.Bool("json") {
					if vs == nil {
						vs = []peer.HeldVersion{}
					}
					return json.NewEncoder(e.stdout).Encode(vs)
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "APP\tVERSION\tFILES\tBYTES\tHELD\tSTATE")
				for _, v := range vs {
					state := "complete"
					if !v.Complete {
						state = "partial"
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", v.App, v.Version, v.Files, v.Bytes, v.Held, state)
				}
				return tw.Flush()
			},
		}, {
			Name:  "verify",
			Usage: "hash every blob in the store again; remove those that no longer match",
			Description: `A blob altered on disk is not served or laid out even without this (its size,
mtime and inode are checked against what was verified); verify re-hashes everything, from
cron, and repairs what it finds: a bad blob is removed (the next fetch brings it again), a
bad chunk of a partial blob is marked missing. Exit code 1 when it found anything.

Examples:
   drepo store verify
   drepo store verify --json`,
			Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
			Action: func(c *cli.Context) error {
				st, err := open()
				if err != nil {
					return err
				}
				rep, err := st.Verify(c.Context, e.log)
				if err != nil {
					return err
				}
				if rep.Removed == nil {
					rep.Removed = []manifests.Hash{}
				}
				if c.Bool("json") {
					err = json.NewEncoder(e.stdout).Encode(rep)
				} else {
					_, err = fmt.Fprintf(e.stdout, "checked %d blobs, %d bytes: %d removed, %d partial chunks marked missing\n", rep.Blobs, rep.Bytes, len(rep.Removed), rep.ChunksDropped)
				}
				if err == nil && rep.Bad() {
					return cli.Exit("", exitFailure)
				}
				return err
			},
		}, {
			Name:  "gc",
			Usage: "keep the newest N versions of every app and remove every blob no kept version names",
			Description: `Removes every blob, complete or partial, that no kept version names. --partial also
removes the partial blobs of kept versions (a fetch that will not be finished: its space comes
back, and the next fetch starts that blob afresh). Files laid out with fetch --out stay
intact (they are hard links or copies).

Examples:
   drepo store gc --keep 2
   drepo store gc --partial          # every partial blob, every version kept
   drepo store gc --keep 1 --json`,
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "keep", Usage: "versions per app to keep (≥ 1; unset: all)"},
				&cli.BoolFlag{Name: "partial", Usage: "remove every partial blob too"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			},
			Action: func(c *cli.Context) error {
				if c.IsSet("keep") && c.Int("keep") < 1 || !c.IsSet("keep") && !c.Bool("partial") {
					return usageErrorf("store gc needs --keep N (N ≥ 1), --partial, or both")
				}
				return storeGC(c, e, open, peer.GCOptions{Keep: c.Int("keep"), Partial: c.Bool("partial")})
			},
		}, {
			Name:      "rm",
			Usage:     "remove app versions from the store, with the blobs no other version names",
			ArgsUsage: "APP@VERSION...",
			Description: `Files laid out with fetch --out stay intact (they are hard links or copies).

Examples:
   drepo store rm firefox@127.0
   drepo store rm base_system@12.7.3 base_system@12.7.4 --json`,
			Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
			Action: func(c *cli.Context) error {
				if c.NArg() == 0 {
					return usageErrorf("store rm needs APP@VERSION")
				}
				for _, a := range c.Args().Slice() {
					if _, _, err := parseAppVersion("store rm", a); err != nil {
						return err
					}
				}
				return storeGC(c, e, open, peer.GCOptions{Remove: c.Args().Slice()})
			},
		}},
	}
}

// storeGC runs a store clean-up and prints what it removed.
func storeGC(c *cli.Context, e *env, open func() (*peer.Store, error), opt peer.GCOptions) error {
	st, err := open()
	if err != nil {
		return err
	}
	rep, err := st.GC(c.Context, opt, e.log)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(e.stdout).Encode(rep)
	}
	_, err = fmt.Fprintf(e.stdout, "removed %d versions %v, %d blobs, %d bytes\n", len(rep.RemovedVersions), rep.RemovedVersions, rep.RemovedBlobs, rep.RemovedBytes)
	return err
}
