package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/drepo-dev/drepo/manifests"
)

func keygenCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "keygen",
		Usage: "create a minisign key pair for signing indexes",
		Description: `Writes PREFIX.key (secret, mode 0600, no password: sync runs unattended) and PREFIX.pub.
Refuses to overwrite either file. The files are in minisign's format, so
"minisign -Vm index.json -p PREFIX.pub" verifies what drepo signs.

Examples:
   drepo keygen
   drepo keygen --out /etc/drepo/drepo`,
		Flags: []cli.Flag{&cli.StringFlag{Name: "out", Value: "drepo", Usage: "write `PREFIX`.key and PREFIX.pub"}},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("keygen takes no arguments (use --out PREFIX)")
			}
			prefix := c.String("out")
			// A fresh machine has no /etc/drepo yet: make the folder, private, as a key's home.
			if dir := filepath.Dir(prefix); dir != "." {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					return fmt.Errorf("keygen: cannot create the folder for %s: %w", prefix, err)
				}
			}
			sec, pub, err := manifests.GenerateKey()
			if err != nil {
				return err
			}
			if err := manifests.WriteFileNew(prefix+".key", prefix+".pub", sec, pub); err != nil {
				return err
			}
			e.log.Info("wrote key pair", "secret", prefix+".key", "public", prefix+".pub")
			_, err = fmt.Fprintf(e.stdout, "%s.key\n%s.pub\n", prefix, prefix)
			return err
		},
	}
}
