package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version is set at build time (-ldflags "-X main.version=v1.2.3"); otherwise the module
// version or VCS revision from the build info is shown.
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}

// license is drepo's license (the LICENSE file).
const license = "Apache-2.0"

// versionLine is what drepo version and drepo --version print.
func versionLine() string {
	return fmt.Sprintf("drepo %s (%s %s/%s), license %s", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH, license)
}

func versionCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print drepo's version",
		Description: `Examples:
   drepo version
   drepo version --json`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: func(c *cli.Context) error {
			v := struct {
				Version string `json:"version"`
				Go      string `json:"go"`
				OS      string `json:"os"`
				Arch    string `json:"arch"`
				License string `json:"license"`
			}{buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH, license}
			if c.Bool("json") {
				return json.NewEncoder(e.stdout).Encode(v)
			}
			_, err := fmt.Fprintln(e.stdout, versionLine())
			return err
		},
	}
}
