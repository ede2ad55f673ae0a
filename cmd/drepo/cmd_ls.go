package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/drepo-dev/drepo/mirror"
	"github.com/drepo-dev/drepo/mirror/dav"
)

func lsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "ls",
		Usage: "list the apps and versions of the source folder, or of a repository",
		Description: `Without --repo, lists the source folder (files and sizes, nothing is hashed). With
--repo, lists what that repository's signed index holds (the signature is checked).

Examples:
   drepo ls
   drepo ls --repo berlin
   drepo ls --repo berlin --json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "list this repository `NAME`"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("ls takes no arguments")
			}
			cfg, err := e.config()
			if err != nil {
				return err
			}
			type row struct {
				App     string `json:"app"`
				Version string `json:"version"`
				Files   int    `json:"files,omitempty"`
				Bytes   int64  `json:"bytes"`
			}
			var rows []row
			if name := c.String("repo"); name != "" {
				repos, err := cfg.repositories([]string{name})
				if err != nil {
					return err
				}
				keys, err := cfg.trustedKeys()
				if err != nil {
					return err
				}
				w, err := dav.Open(repos[0], 1)
				if err != nil {
					return err
				}
				idx, err := dav.ReadIndex(c.Context, w, keys, dav.ReadOptions{Log: e.log})
				if err != nil {
					return fmt.Errorf("repository %s: %w", name, err)
				}
				for _, a := range idx.Apps {
					rows = append(rows, row{App: a.App, Version: a.Version, Bytes: a.TotalSize})
				}
			} else {
				src, err := cfg.sourceDir(" (or use --repo NAME)")
				if err != nil {
					return err
				}
				vs, err := mirror.ListSource(src)
				if err != nil {
					return err
				}
				for _, v := range vs {
					rows = append(rows, row{App: v.App, Version: v.Version, Files: v.Files, Bytes: v.Bytes})
				}
			}
			if c.Bool("json") {
				if rows == nil {
					rows = []row{}
				}
				return json.NewEncoder(e.stdout).Encode(rows)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "APP\tVERSION\tBYTES")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", r.App, r.Version, r.Bytes)
			}
			return tw.Flush()
		},
	}
}
