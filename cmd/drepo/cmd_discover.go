package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/peer"
)

func discoverCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "discover",
		Usage:     "ask the LAN who has an app version (for admins debugging a site)",
		ArgsUsage: "APP@VERSION",
		Description: `Sends discovery requests (broadcast, and to peers.static) for the app's manifest and each
of its files, as this device's store knows them (fetch it, or part of it, first), and
prints who answers: address, ports, complete or partial, verified bytes, free slots.
Without the app in the store, it asks who has any index.

Examples:
   drepo discover base_system@12.7.4
   drepo discover firefox@128.0 --wait 2s --json`,
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "wait", Value: time.Second, Usage: "collect answers for `DURATION`"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErrorf("discover needs APP@VERSION")
			}
			app, ver, err := parseAppVersion("discover", c.Args().First())
			if err != nil {
				return err
			}
			cfg, err := e.config()
			if err != nil {
				return err
			}
			st, err := cfg.openStore()
			if err != nil {
				return err
			}
			targets, err := peer.Targets(cfg.Peers.Broadcast, cfg.Peers.Static, cfg.Peers.DiscoveryPort)
			if err != nil {
				return fmt.Errorf("%s: peers: %w: %w", cfg.path, err, errConfig)
			}
			id, err := st.Instance()
			if err != nil {
				return err
			}
			type ask struct {
				What string
				Q    peer.Query
			}
			asks := []ask{{"index", peer.Query{Kind: peer.KindIndex}}}
			if doc, _ := st.Index(); doc != nil {
				if x, err := manifests.DecodeIndex(doc); err == nil {
					if en, ok := x.Find(app, ver); ok {
						asks = append(asks, ask{"manifest", peer.Query{Kind: peer.KindBlob, Blob: en.Manifest}})
						if m, _, err := st.Manifest(en.Manifest); err == nil {
							for _, f := range m.Files {
								asks = append(asks, ask{f.Path, peer.Query{Kind: peer.KindBlob, Blob: f.SHA256}})
							}
						}
					}
				}
			}
			type row struct {
				What     string `json:"what"`
				Peer     string `json:"peer"`
				HTTP     uint16 `json:"http_port"`
				HTTPS    uint16 `json:"https_port"`
				Complete bool   `json:"complete"`
				Held     int64  `json:"held_bytes"`
				Serial   uint64 `json:"serial,omitempty"`
				Free     uint8  `json:"free_slots"`
				Nobody   bool   `json:"nobody,omitempty"` // no peer answered for it
			}
			rows := []row{}
			for _, a := range asks {
				a.Q.Instance = id
				found, _, err := peer.Discover(c.Context, a.Q, targets, nil, c.Duration("wait"), peer.DiscoveryResends(c.Duration("wait"), nil))
				if err != nil {
					return err
				}
				for _, f := range found {
					rows = append(rows, row{a.What, f.IP.String(), f.HTTPPort, f.HTTPSPort, f.Complete, f.Held, f.Serial, f.FreeSlots, false})
				}
				if len(found) == 0 {
					rows = append(rows, row{What: a.What, Nobody: true})
				}
			}
			if c.Bool("json") {
				return json.NewEncoder(e.stdout).Encode(rows)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WHAT\tPEER\tHTTP\tHTTPS\tSTATE\tHELD\tSERIAL\tFREE")
			for _, r := range rows {
				state := "partial"
				switch {
				case r.Nobody:
					state, r.Peer = "nobody holds it", "-"
				case r.Complete || r.What == "index":
					state = "complete"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%d\t%d\n", manifests.Printable(r.What), r.Peer, r.HTTP, r.HTTPS, state, r.Held, r.Serial, r.Free)
			}
			return tw.Flush()
		},
	}
}
