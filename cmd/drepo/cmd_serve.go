package main

import (
	"errors"
	"net"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/drepo-dev/drepo/webdavsrv"
)

func serveCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run a WebDAV repository server",
		Description: `Serves --root over WebDAV. Uploads are atomic (an interrupted PUT leaves the old file),
paths cannot leave the root, and GET/HEAD answer "Want-Repr-Digest: sha-256=1" with the
file's SHA-256 (RFC 9530), which drepo verify --server-digest uses instead of downloading.
Settings come from the config's serve: section; flags override them.
GET /-/health answers 200 without credentials. Stops gracefully on SIGINT/SIGTERM.

Examples:
   drepo serve --root /srv/dav --htpasswd /etc/drepo/htpasswd
   drepo serve --root /srv/dav --htpasswd users --anonymous-read --listen :8443 --tls-cert c.pem --tls-key k.pem
   drepo serve --root /tmp/dav --no-auth --listen 127.0.0.1:8080`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Usage: "serve this `DIR`"},
			&cli.StringFlag{Name: "listen", Usage: "listen on `ADDR` (default :8080)"},
			&cli.StringFlag{Name: "htpasswd", Usage: "users `FILE` in Apache htpasswd bcrypt format (htpasswd -B, or drepo htpasswd)"},
			&cli.BoolFlag{Name: "anonymous-read", Usage: "allow GET, HEAD, PROPFIND, OPTIONS without credentials"},
			&cli.BoolFlag{Name: "no-auth", Usage: "serve without any credentials (refused unless --listen is a loopback address)"},
			&cli.BoolFlag{Name: "no-auth-any-address", Usage: "with --no-auth: allow a non-loopback --listen (everyone on the network may write)"},
			&cli.StringFlag{Name: "tls-cert", Usage: "TLS certificate `FILE` (PEM)"},
			&cli.StringFlag{Name: "tls-key", Usage: "TLS key `FILE` (PEM)"},
			&cli.StringFlag{Name: "max-upload", Usage: "answer 413 to uploads over `SIZE` (e.g. 20G); default no limit"},
			&cli.BoolFlag{Name: "no-depth-infinity", Usage: "refuse PROPFIND with Depth: infinity"},
			&cli.DurationFlag{Name: "grace", Value: 10 * time.Second, Usage: "time in-flight requests get on stop"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErrorf("serve takes no arguments (use --root DIR)")
			}
			sc := defaultConfig().Serve
			if cfg, err := e.configOptional(); err != nil {
				return err
			} else if cfg != nil {
				sc = cfg.Serve
			}
			str := func(name string, v *string) {
				if c.IsSet(name) {
					*v = c.String(name)
				}
			}
			str("root", &sc.Root)
			str("listen", &sc.Listen)
			str("htpasswd", &sc.Htpasswd)
			str("tls-cert", &sc.TLSCert)
			str("tls-key", &sc.TLSKey)
			str("max-upload", &sc.MaxUpload)
			if c.IsSet("anonymous-read") {
				sc.AnonymousRead = c.Bool("anonymous-read")
			}
			if c.IsSet("no-depth-infinity") {
				sc.DepthInfinity = !c.Bool("no-depth-infinity")
			}
			if sc.Root == "" {
				return usageErrorf("serve needs --root DIR (or serve.root in the config)")
			}
			if c.Bool("no-auth") && !webdavsrv.IsLoopback(sc.Listen) && !c.Bool("no-auth-any-address") {
				return usageErrorf("--no-auth serves without credentials: --listen %q is not a loopback address (127.0.0.1:PORT, [::1]:PORT); add --no-auth-any-address if everyone who reaches it may write", sc.Listen)
			}
			var maxUpload int64
			if sc.MaxUpload != "" {
				n, err := parseSize(sc.MaxUpload)
				if err != nil {
					return usageErrorf("--max-upload: %v", err)
				}
				maxUpload = n
			}
			srv, err := webdavsrv.New(webdavsrv.Config{
				Root: sc.Root, Htpasswd: sc.Htpasswd, NoAuth: c.Bool("no-auth"), AnonymousRead: sc.AnonymousRead,
				MaxUpload: maxUpload, NoDepthInfinity: !sc.DepthInfinity, Logger: e.log,
			})
			if err != nil {
				return usageErrorf("%v", err)
			}
			defer srv.Close()
			err = webdavsrv.ListenAndServe(c.Context, srv, webdavsrv.ListenOptions{
				Addr: sc.Listen, TLSCert: sc.TLSCert, TLSKey: sc.TLSKey, Grace: c.Duration("grace"),
			}, e.log)
			// A port in use or a failing listener is a runtime failure (exit 1); a bad TLS
			// file or address is configuration (exit 2).
			var opErr *net.OpError
			if err != nil && !errors.As(err, &opErr) {
				return usageErrorf("%v", err)
			}
			return err
		},
	}
}
