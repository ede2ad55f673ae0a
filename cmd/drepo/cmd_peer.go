package main

import (
	"fmt"
	"net"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/drepo-dev/drepo/peer"
)

func peerCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "peer",
		Usage: "serve this device's store to the other devices of the LAN (HTTP, HTTPS, discovery)",
		Description: `Serves the store read-only: GET /v1/index, /v1/blobs/sha256/<hash> (with Range), /v1/status
and /metrics (Prometheus) on peers.http_port (22335); with peers.https, HTTPS on
peers.https_port (22337) with peers.tls_cert and peers.tls_key (missing or unreadable: HTTPS
does not start and says why, HTTP serves on); discovery answers on UDP peers.discovery_port
(22336). At most peers.limit_of_connections (1) blob transfers at once; the next gets 503
with Retry-After. A blob that drepo fetch is still downloading into the same store is
served from its verified chunks as they arrive. Stops on SIGINT/SIGTERM.
Exit 0 stopped, 1 could not serve (a port in use), 2 bad usage or config.

Examples:
   drepo peer
   drepo peer --host 127.0.0.1 --http-port 0 --discovery-port 0`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "host", Usage: "listen on this `ADDRESS` only (default: every interface)"},
			&cli.IntFlag{Name: "http-port", Value: -1, Usage: "override peers.http_port (0: any free port)"},
			&cli.IntFlag{Name: "https-port", Value: -1, Usage: "override peers.https_port"},
			&cli.IntFlag{Name: "discovery-port", Value: -1, Usage: "override peers.discovery_port"},
			&cli.BoolFlag{Name: "complete-only", Usage: "serve and announce complete blobs only (the whole-file cascade; for comparison)"},
			&cli.StringFlag{Name: "bwlimit", Usage: "send at most `RATE` bytes per second over all transfers (e.g. 5M)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("peer takes no arguments")
			}
			cfg, err := e.config()
			if err != nil {
				return err
			}
			st, err := cfg.openStore()
			if err != nil {
				return err
			}
			p := cfg.Peers
			port := func(flag string, v int) string {
				if n := c.Int(flag); n >= 0 {
					v = n
				}
				return net.JoinHostPort(c.String("host"), strconv.Itoa(v))
			}
			sendLimit, err := rateFlag(c, "bwlimit")
			if err != nil {
				return err
			}
			return peer.Run(c.Context, peer.DaemonOptions{
				Store: st, Limit: p.LimitOfConnections, HTTPAddr: port("http-port", p.HTTPPort),
				HTTPSAddr: port("https-port", p.HTTPSPort), DiscoveryAddr: port("discovery-port", p.DiscoveryPort),
				HTTPS: p.HTTPS, TLSCert: p.TLSCert, TLSKey: p.TLSKey, CACert: p.CACert, RequireClientCert: p.RequireClientCert,
				Log: e.log, CompleteOnly: c.Bool("complete-only"), SendLimit: sendLimit,
				Ready: func(h, s, d net.Addr) {
					e.log.Info("peer ready", "http", h.String(), "discovery", d.String())
				},
			})
		},
	}
}

// peerGroup is the LAN's peers as a fetch source, from the config; nil when peers are off.
func (c *Config) peerGroup(st *peer.Store) (*peer.PeerGroup, error) {
	if !c.Peers.Enabled {
		return nil, nil
	}
	targets, err := peer.Targets(c.Peers.Broadcast, c.Peers.Static, c.Peers.DiscoveryPort)
	if err != nil {
		return nil, fmt.Errorf("%s: peers: %w: %w", c.path, err, errConfig)
	}
	if len(targets) == 0 {
		return nil, nil
	}
	static, err := peer.Targets(false, c.Peers.Static, c.Peers.DiscoveryPort)
	if err != nil {
		return nil, fmt.Errorf("%s: peers: %w: %w", c.path, err, errConfig)
	}
	id, err := st.Instance()
	if err != nil {
		return nil, err
	}
	g := &peer.PeerGroup{Targets: targets, Static: static, HTTPPort: c.Peers.HTTPPort, HTTPSPort: c.Peers.HTTPSPort, Instance: id}
	if c.Peers.CACert != "" {
		if g.TLS, err = peer.FleetClientTLS(c.Peers.CACert, c.Peers.TLSCert, c.Peers.TLSKey); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", c.path, err, errConfig)
		}
	}
	return g, nil
}
