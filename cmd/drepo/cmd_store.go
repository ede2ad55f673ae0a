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
   drepo store gc --keep 2`,
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
			Description: `Files laid out with fetch --out stay intact (they are hard links or copies).

Examples:
   drepo store gc --keep 2
   drepo store gc --keep 1 --json`,
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "keep", Usage: "versions per app to keep (≥ 1)"},
				&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			},
			Action: func(c *cli.Context) error {
				if c.Int("keep") < 1 {
					return usageErrorf("store gc needs --keep N (N ≥ 1)")
				}
				st, err := open()
				if err != nil {
					return err
				}
				rep, err := st.GC(c.Context, c.Int("keep"), e.log)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return json.NewEncoder(e.stdout).Encode(rep)
				}
				_, err = fmt.Fprintf(e.stdout, "removed %d versions %v, %d blobs, %d bytes\n", len(rep.RemovedVersions), rep.RemovedVersions, rep.RemovedBlobs, rep.RemovedBytes)
				return err
			},
		}},
	}
}
