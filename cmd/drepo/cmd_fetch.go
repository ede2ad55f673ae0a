package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror/dav"
	"github.com/drepo-dev/drepo/peer"
)

func fetchCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "fetch",
		Usage:     "fetch an app version into the device's store, every byte verified, and lay it out",
		ArgsUsage: "APP@VERSION | APP@latest | APP",
		Description: `Reads the repositories with priority ≥ 0, highest first (equal priorities in random
order; staging repositories, priority < 0, are never contacted). The index must carry a
signature from trusted_keys, a serial not below the highest this device accepted, and must
not be expired; it is stored before anything is fetched under it. Every chunk is checked
against the manifest, every blob against its name. A fetch resumes from verified chunks,
copies chunks the store holds in other versions instead of downloading them, and moves to
the next repository on any failure (a repository that sent wrong bytes is not asked again
in this run). With peers.enabled, the LAN's peers (found by discovery) come after every
repository, or where peers.priority puts them; an index from a peer needs a trusted
signature, always. --out lays the files out (hard links into the store, read-only; executables
copied), replacing the folder only if it holds nothing else, or with --force.
APP@latest (or APP alone) is the newest version in the index, by the version order sync
uses; --plan and --json say which one.
Exit 0 fetched, 1 every source failed or refused (one line per source), 2 bad usage or config.

Examples:
   drepo fetch base_system@12.7.4 --out /target
   drepo fetch firefox --out /opt/firefox       # the newest version
   drepo fetch firefox@128.0 --plan            # the sources in order, and the skipped ones
   drepo fetch firefox@128.0 --out /opt/firefox --force --json
   drepo fetch base_system --random-delay 30m --bwlimit 2M --out /target   # from a fleet's timer`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Usage: "lay the app's files out in `DIR`"},
			&cli.BoolFlag{Name: "force", Usage: "replace --out even if it holds other files"},
			&cli.BoolFlag{Name: "plan", Usage: "print the sources in the order they would be tried, and why others are skipped; fetch nothing"},
			&cli.DurationFlag{Name: "stall", Value: 60 * time.Second, Usage: "move to the next source after `DURATION` with less than 64 KiB moved"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
			&cli.BoolFlag{Name: "no-peers", Usage: "do not ask the LAN's peers"},
			&cli.StringFlag{Name: "bwlimit", Usage: "download from repositories at most `RATE` bytes per second (e.g. 2M)"},
			&cli.StringFlag{Name: "peer-bwlimit", Usage: "download from LAN peers at most `RATE` bytes per second"},
			&cli.DurationFlag{Name: "random-delay", Usage: "wait a random time up to `DURATION` first (a fleet's timers spread over it)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErrorf("fetch needs APP@VERSION")
			}
			app, ver, err := parseFetchTarget(c.Args().First())
			if err != nil {
				return err
			}
			repoLimit, err := rateFlag(c, "bwlimit")
			if err != nil {
				return err
			}
			peerLimit, err := rateFlag(c, "peer-bwlimit")
			if err != nil {
				return err
			}
			cfg, err := e.config()
			if err != nil {
				return err
			}
			repos, err := cfg.deviceRepositories()
			if err != nil {
				return err
			}
			sources, skips := peer.PlanSources(repos, c.Duration("stall"))
			var st *peer.Store
			if cfg.Store != "" {
				if st, err = cfg.openStore(); err != nil {
					return err
				}
			}
			if cfg.Peers.Enabled && !c.Bool("no-peers") && st != nil {
				g, err := cfg.peerGroup(st)
				if err != nil {
					return err
				}
				if g != nil {
					g.Stall, g.Log = c.Duration("stall"), e.log
					sources = peer.WithPeers(sources, g.Source(0), cfg.Peers.Priority)
					if p := cfg.Peers.Priority; p != nil && slices.ContainsFunc(sources, func(s peer.Source) bool { return s.Kind == peer.KindRepository && s.Priority < *p }) {
						g.Settle = 500 * time.Millisecond // peers before a repository: let the first starter lead
						g.Patience = true
					}
				}
			} else if !cfg.Peers.Enabled {
				skips = append(skips, peer.Skip{Name: "peers", Reason: "peers.enabled is false"})
			}
			for _, s := range sources {
				e.log.Debug("source", "name", s.Name, "kind", s.Kind, "priority", s.Priority)
			}
			for _, s := range skips {
				e.log.Debug("source skipped", "name", s.Name, "reason", s.Reason)
			}
			if c.Bool("plan") {
				return printPlan(e, c.Bool("json"), ver == manifests.Latest, planVersion(st, app, ver), sources, skips)
			}
			keys, err := cfg.deviceKeys()
			if err != nil {
				return err
			}
			if st == nil {
				if _, err := cfg.openStore(); err != nil {
					return err
				}
			}
			if d := c.Duration("random-delay"); d > 0 {
				wait := rand.N(d)
				e.log.Info("waiting before the fetch (--random-delay)", "wait", wait.Round(time.Second))
				select {
				case <-c.Context.Done():
					return c.Context.Err()
				case <-time.After(wait):
				}
			}
			rep, err := peer.Fetch(c.Context, peer.FetchOptions{
				Store: st, Sources: sources, Keys: keys, AllowUnsigned: cfg.AllowUnsigned,
				App: app, Version: ver, Out: c.String("out"), Force: c.Bool("force"),
				Log: e.log, Progress: &phaseProgress{stderr: e.stderr, log: e.log},
				RepoLimit: dav.NewLimiter(repoLimit), PeerLimit: dav.NewLimiter(peerLimit),
			})
			if c.Bool("json") && rep != nil {
				if jerr := e.printJSON(rep); jerr != nil && err == nil {
					err = jerr
				}
			} else if err == nil {
				printFetch(e, rep)
			}
			if err != nil && c.Context.Err() != nil && rep != nil {
				return &keptError{err: err, bytes: rep.Downloaded + rep.ReusedLocal + rep.AlreadyHeld}
			}
			return err
		},
	}
}

// planVersion is the version a fetch of app@ver would take as far as the device knows
// without asking anyone: ver, or for latest the newest in the index it accepted last
// ("" when it has none).
func planVersion(st *peer.Store, app, ver string) string {
	if ver != manifests.Latest {
		return ver
	}
	if st == nil {
		return ""
	}
	doc, _ := st.Index()
	if doc == nil {
		return ""
	}
	x, err := manifests.DecodeIndex(doc)
	if err != nil {
		return ""
	}
	e, _ := x.Resolve(app, ver)
	return e.Version
}

func printPlan(e *env, asJSON, latest bool, version string, sources []peer.Source, skips []peer.Skip) error {
	type row struct {
		Name     string `json:"name"`
		Kind     string `json:"kind"`
		Priority int    `json:"priority"`
	}
	var rows []row
	for _, s := range sources {
		rows = append(rows, row{s.Name, s.Kind, s.Priority})
	}
	if asJSON {
		return e.printJSON(struct {
			Version string      `json:"version"` // "" : latest, and no index accepted yet
			Sources []row       `json:"sources"`
			Skipped []peer.Skip `json:"skipped"`
		}{version, rows, skips})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORDER\tSOURCE\tKIND\tPRIORITY")
	for i, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\n", i+1, r.Name, r.Kind, r.Priority)
	}
	_ = tw.Flush()
	for _, s := range skips {
		fmt.Fprintf(e.stdout, "skipped %s: %s\n", s.Name, manifests.Printable(s.Reason))
	}
	switch {
	case !latest:
		fmt.Fprintf(e.stdout, "version: %s\n", manifests.Printable(version))
	case version == "":
		fmt.Fprintln(e.stdout, "version: the newest in the first index a source gives (this device has accepted none yet)")
	default:
		fmt.Fprintf(e.stdout, "version: %s (the newest in the index this device accepted last; the sources' index is read first)\n", manifests.Printable(version))
	}
	return nil
}

func printFetch(e *env, rep *peer.FetchReport) {
	fmt.Fprintf(e.stdout, "%s@%s (index serial %d): %d files, %d bytes; downloaded %d, reused from the store %d, already held %d, in %s\n",
		rep.App, rep.Version, rep.Serial, rep.Files, rep.Bytes, rep.Downloaded, rep.ReusedLocal, rep.AlreadyHeld, rep.Duration.Round(time.Millisecond))
	if rep.DeltaBytes > 0 || rep.RebuiltFromDelta > 0 {
		fmt.Fprintf(e.stdout, "deltas: %d bytes downloaded, %d bytes of files rebuilt from versions the store holds\n", rep.DeltaBytes, rep.RebuiltFromDelta)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tKIND\tBYTES\tPROBLEMS")
	for _, s := range rep.Sources {
		problems := ""
		if len(s.Errors) > 0 {
			problems = s.Errors[0]
			if len(s.Errors) > 1 {
				problems += fmt.Sprintf(" (+%d more)", len(s.Errors)-1)
			}
		}
		if s.Banned {
			problems = "SENT WRONG BYTES: " + problems
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", s.Name, s.Kind, s.Bytes, manifests.Printable(problems))
	}
	_ = tw.Flush()
	if rep.Out != "" {
		fmt.Fprintf(e.stdout, "laid out in %s\n", rep.Out)
	}
}

// rateFlag reads a bytes-per-second flag (20M, 512K); unset is 0, no limit.
func rateFlag(c *cli.Context, name string) (int64, error) {
	s := c.String(name)
	if s == "" {
		return 0, nil
	}
	n, err := parseSize(s)
	if err != nil || n <= 0 {
		return 0, usageErrorf("--%s %q: want a rate such as 2M (bytes per second)", name, s)
	}
	return n, nil
}
