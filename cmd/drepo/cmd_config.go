package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"
)

func configCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "inspect the configuration file",
		Description: `Examples:
   drepo --config /etc/drepo/drepo.yaml config show
   DREPO_CONFIG=./drepo.yaml drepo config show --json`,
		Subcommands: []*cli.Command{{
			Name:  "show",
			Usage: "validate the config and print it resolved (defaults filled, paths absolute, secrets masked)",
			Description: `Exits 2 with "file:line: field: reason" if the file is invalid.

Examples:
   drepo --config drepo.yaml config show
   drepo config show --json`,
			Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
			Action: func(c *cli.Context) error {
				cfg, err := e.config()
				if err != nil {
					return err
				}
				if c.Bool("json") {
					enc := json.NewEncoder(e.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(cfg)
				}
				fmt.Fprintf(e.stdout, "# %s\n", cfg.path)
				enc := yaml.NewEncoder(e.stdout)
				enc.SetIndent(2)
				defer enc.Close()
				return enc.Encode(cfg)
			},
		}},
	}
}
