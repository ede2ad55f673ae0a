package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"aead.dev/minisign"
	"github.com/urfave/cli/v2"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror"
	"github.com/drepo-dev/drepo/mirror/dav"
)

func verifyCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "check that every repository holds every blob its signed index names",
		Description: `Per repository: the index's signature and serial, every referenced blob present with the
right size; --deep also checks the bytes, by downloading and hashing every blob.
--server-digest is the cheap deep check: it takes the server's Repr-Digest (RFC 9530)
where it sends one, and is only as fresh as the server's digest cache (drepo serve's is
valid while a file's size and mtime hold, so bit rot that keeps both slips past it).
Unreferenced blobs and leftover temporary
files are reported but are not failures. A repository whose serial is behind the newest of
its kind (live, or staging) is lagging: a failure. The credentials of every repository that
has them are checked with one harmless request (MKCOL of tmp/, which sync uses anyway):
--check-write does it for every repository, --no-check-write for none. --repair deletes blobs with wrong bytes and runs
sync --full on the repositories that had problems (needs source and signing_key).
Exit 0 all good, 1 a repository is wrong or unreachable, 2 bad usage or config.
JSON (--json): a list with one object per repository: repository, url, priority, ok,
error, serial, versions, blobs, bytes, deep, problems [{kind, name, detail}] with kind
one of index, signature, manifest, missing, size, content, lagging, write;
unreferenced and leftovers.

Examples:
   drepo verify
   drepo verify --deep --json
   drepo verify --server-digest        # nightly, cheap; --deep weekly
   drepo verify --metrics /var/lib/node_exporter/textfile/drepo.prom
   drepo verify --repo berlin --deep --repair`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "repo", Usage: "only this repository `NAME` (repeatable)"},
			&cli.BoolFlag{Name: "deep", Usage: "also check every blob's bytes (download and hash)"},
			&cli.StringFlag{Name: "metrics", Usage: "also write the result as a node_exporter textfile `FILE` (.prom), replaced atomically"},
			&cli.BoolFlag{Name: "check-write", Usage: "check every repository's write access (default: those with credentials)"},
			&cli.BoolFlag{Name: "no-check-write", Usage: "check no repository's write access"},
			&cli.BoolFlag{Name: "server-digest", Usage: "check bytes by the server's Repr-Digest where offered (cheap; trusts its cache)"},
			&cli.BoolFlag{Name: "repair", Usage: "remove blobs with wrong bytes and run sync --full where needed"},
			&cli.IntFlag{Name: "parallel", Value: 4, Usage: "blobs checked at once with --deep"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("verify takes no arguments")
			}
			cfg, err := e.config()
			if err != nil {
				return err
			}
			repos, err := cfg.repositories(c.StringSlice("repo"))
			if err != nil {
				return err
			}
			keys, err := cfg.trustedKeys()
			if err != nil {
				return err
			}
			var reports []*mirror.VerifyReport
			var broken []string
			damaged := map[string][]string{}
			for _, r := range repos {
				w, err := dav.Open(r, c.Int("parallel"))
				var rep *mirror.VerifyReport
				if err != nil {
					rep = &mirror.VerifyReport{Repository: r.Name, URL: r.URL, Priority: r.Priority, Error: err.Error()}
				} else {
					w.Log = e.log.With("repository", r.Name)
					rep = mirror.Verify(c.Context, r, w, mirror.VerifyOptions{Keys: keys, Deep: c.Bool("deep") || c.Bool("server-digest"), ServerDigest: c.Bool("server-digest"), Parallel: c.Int("parallel"), Log: e.log})
					if !c.Bool("no-check-write") && (c.Bool("check-write") || r.Username != "") && rep.Error == "" {
						if err := mirror.CheckWrite(c.Context, w); err != nil {
							rep.Problems = append(rep.Problems, mirror.Problem{Kind: "write", Name: r.URL, Detail: err.Error()})
							rep.OK = false
						}
					}
					if c.Bool("repair") && !rep.OK && rep.Error == "" {
						for _, p := range rep.Problems {
							if p.Kind == "content" {
								damaged[r.Name] = append(damaged[r.Name], p.Name)
							}
						}
						broken = append(broken, r.Name)
					}
				}
				reports = append(reports, rep)
			}
			mirror.MarkLagging(reports)
			if p := c.String("metrics"); p != "" {
				if err := manifests.WriteFileAtomic(p, verifyMetrics(reports, time.Now()), 0o644); err != nil {
					return fmt.Errorf("verify --metrics: %w", err)
				}
			}
			if c.Bool("json") {
				if err := e.printJSON(reports); err != nil {
					return err
				}
			} else {
				printVerify(e, reports)
			}
			if len(broken) > 0 {
				return repair(c, e, cfg, broken, damaged, keys)
			}
			for _, r := range reports {
				if !r.OK {
					return fmt.Errorf("verify: at least one repository is wrong or could not be checked")
				}
			}
			return nil
		},
	}
}

// repair runs sync --full on the named repositories; sync removes the damaged blobs once it
// holds each repository's lease, and uploads them again.
func repair(c *cli.Context, e *env, cfg *Config, names []string, damaged map[string][]string, keys []minisign.PublicKey) error {
	key, err := cfg.signingKey()
	if err != nil {
		return err
	}
	repos, err := cfg.repositories(names)
	if err != nil {
		return err
	}
	rep, err := mirror.Sync(c.Context, mirror.SyncOptions{Source: cfg.Source, SigningKey: key, Keys: keys,
		StateDir: cfg.stateDir(), Repos: repos, Full: true, Damaged: damaged, Keep: cfg.Keep.Versions, KeepApps: cfg.Keep.Apps, Log: e.log})
	if err != nil {
		return err
	}
	printSyncReport(e, rep)
	if rep.Failed() {
		return fmt.Errorf("verify --repair: sync --full failed")
	}
	e.log.Info("repaired; run drepo verify --deep to confirm", "repositories", names)
	return nil
}

func printVerify(e *env, reports []*mirror.VerifyReport) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tPRIORITY\tSERIAL\tVERSIONS\tBLOBS\tBYTES\tRESULT")
	for _, r := range reports {
		res := "ok"
		switch {
		case r.Error != "":
			res = "could not check: " + manifests.Printable(r.Error)
		case !r.OK:
			res = fmt.Sprintf("WRONG (%d problems)", len(r.Problems))
		}
		if r.Deep != "" && r.Error == "" {
			res += " (bytes checked by " + r.Deep + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", r.Repository, r.Priority, r.Serial, r.Versions, r.Blobs, r.Bytes, res)
	}
	_ = tw.Flush()
	for _, r := range reports {
		for _, p := range r.Problems {
			fmt.Fprintf(e.stdout, "%s: %s %s: %s\n", r.Repository, p.Kind, manifests.Printable(p.Name), manifests.Printable(p.Detail))
		}
		if len(r.Unreferenced) > 0 {
			fmt.Fprintf(e.stdout, "%s: %d unreferenced blobs (sync --prune --keep N removes them)\n", r.Repository, len(r.Unreferenced))
		}
		for _, l := range r.Leftovers {
			fmt.Fprintf(e.stdout, "%s: leftover temporary file %s (the next sync removes it)\n", r.Repository, manifests.Printable(l))
		}
	}
}

// verifyMetrics is verify's result in the Prometheus text format, for node_exporter's
// textfile collector: per repository whether it is good, its serial and how many
// problems; and when this ran. Labels are the configured repository names (bounded).
func verifyMetrics(reports []*mirror.VerifyReport, now time.Time) []byte {
	var b strings.Builder
	b.WriteString("# HELP drepo_verify_ok Whether the repository passed drepo verify (1) or not (0).\n# TYPE drepo_verify_ok gauge\n")
	for _, r := range reports {
		ok := 0
		if r.OK {
			ok = 1
		}
		fmt.Fprintf(&b, "drepo_verify_ok{repository=%q} %d\n", r.Repository, ok)
	}
	b.WriteString("# HELP drepo_verify_serial The serial of the repository's index.\n# TYPE drepo_verify_serial gauge\n")
	for _, r := range reports {
		fmt.Fprintf(&b, "drepo_verify_serial{repository=%q} %d\n", r.Repository, r.Serial)
	}
	b.WriteString("# HELP drepo_verify_problems Problems drepo verify found in the repository.\n# TYPE drepo_verify_problems gauge\n")
	for _, r := range reports {
		n := len(r.Problems)
		if r.Error != "" {
			n++
		}
		fmt.Fprintf(&b, "drepo_verify_problems{repository=%q} %d\n", r.Repository, n)
	}
	fmt.Fprintf(&b, "# HELP drepo_verify_last_run_timestamp_seconds When drepo verify last ran.\n# TYPE drepo_verify_last_run_timestamp_seconds gauge\ndrepo_verify_last_run_timestamp_seconds %d\n", now.Unix())
	return []byte(b.String())
}
