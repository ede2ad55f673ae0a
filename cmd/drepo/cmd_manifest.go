package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/drepo-dev/drepo/manifests"
)

func manifestCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "manifest",
		Usage: "build or show the manifest of one app version",
		Description: `Examples:
   drepo manifest build ./apps/base_system/12.7.4 --app base_system --version 12.7.4
   drepo manifest build DIR --app firefox --version 128.0 -o firefox.json
   drepo manifest show firefox.json`,
		Subcommands: []*cli.Command{manifestBuildCommand(e), manifestShowCommand(e)},
	}
}

func manifestBuildCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "build",
		Usage:     "hash a folder and print its manifest JSON",
		ArgsUsage: "DIR",
		Description: `Reads every file under DIR once, computing each file's SHA-256 (its blob name,
the same as sha256sum prints) and the SHA-256 of each chunk. Symlinks and special
files are refused. The manifest goes to stdout, or atomically to -o FILE.

Examples:
   drepo manifest build ./apps/base_system/12.7.4 --app base_system --version 12.7.4
   drepo manifest build DIR --app firefox --version 128.0 -o firefox.json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "app", Usage: "app `NAME` ([A-Za-z0-9._+-], up to 128)"},
			&cli.StringFlag{Name: "version", Usage: "app `VERSION`"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write to `FILE` instead of stdout"},
			&cli.StringFlag{Name: "chunk-size", Value: "1M", Usage: "chunk `SIZE` (64K..256M)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErrorf("manifest build needs exactly one DIR")
			}
			if c.String("app") == "" || c.String("version") == "" {
				return usageErrorf("manifest build needs --app NAME and --version VERSION")
			}
			cs, err := parseSize(c.String("chunk-size"))
			if err != nil {
				return usageErrorf("--chunk-size: %v", err)
			}
			var prog *progress
			opt := manifests.BuildOptions{
				ChunkSize: cs,
				OnScan: func(files int, total int64) {
					e.log.Debug("hashing", "files", files, "bytes", total)
					prog = newProgress(e.stderr, e.log, "hashing", total)
				},
				OnRead: func(n int) { prog.Add(n) },
			}
			m, err := manifests.BuildManifest(c.Context, c.Args().First(), c.String("app"), c.String("version"), opt)
			if prog != nil {
				prog.Finish()
			}
			if err != nil {
				return err
			}
			doc, err := m.Encode()
			if err != nil {
				return err
			}
			if out := c.String("output"); out != "" && out != "-" {
				return manifests.WriteFileAtomic(out, doc, 0o644)
			}
			_, err = e.stdout.Write(doc)
			return err
		},
	}
}

func manifestShowCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "check a manifest file strictly and print it",
		ArgsUsage: "FILE",
		Description: `Exits 1 if the file is not a valid manifest, naming the rule it breaks.

Examples:
   drepo manifest show firefox.json
   drepo manifest show --json firefox.json`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the canonical JSON"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErrorf("manifest show needs exactly one FILE")
			}
			f, err := os.Open(c.Args().First())
			if err != nil {
				return err
			}
			defer f.Close()
			b, err := manifests.ReadLimited(f, manifests.MaxManifestSize)
			if err != nil {
				return fmt.Errorf("%s: %w", f.Name(), err)
			}
			m, err := manifests.DecodeManifest(b)
			if err != nil {
				return fmt.Errorf("%s: %w", f.Name(), err)
			}
			if c.Bool("json") {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", " ")
				return enc.Encode(m)
			}
			fmt.Fprintf(e.stdout, "%s@%s  %d files  %d bytes  chunk size %d  manifest sha256 %s\n",
				m.App, m.Version, len(m.Files), m.TotalSize(), m.ChunkSize, manifests.SumBytes(b))
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SIZE\tCHUNKS\tSHA256\tPATH")
			for _, f := range m.Files {
				x := ""
				if f.Executable {
					x = " (executable)"
				}
				fmt.Fprintf(tw, "%d\t%d\t%s\t%s%s\n", f.Size, len(f.Chunks), f.SHA256, f.Path, x)
			}
			return tw.Flush()
		},
	}
}
