package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror/dav"
	"golang.org/x/sync/errgroup"
)

// DaemonOptions configure Run (drepo peer).
type DaemonOptions struct {
	Store *Store
	Limit int // limit_of_connections
	// Addresses to listen on: host:port (HTTP, default :22335), HTTPS (default :22337),
	// discovery UDP (default :22336).
	HTTPAddr, HTTPSAddr, DiscoveryAddr string
	HTTPS                              bool
	TLSCert, TLSKey                    string
	// CACert is peers.ca_cert: with HTTPS, clients' certificates are checked against it
	// and, with RequireClientCert, required (plain HTTP then serves /metrics only).
	CACert            string
	RequireClientCert bool
	CompleteOnly      bool          // Server.CompleteOnly
	WaitAhead         time.Duration // Server.WaitAhead (default 10 s)
	SendWait          time.Duration // Server.SendWait (default 30 s)
	SendLimit         int64         // bytes per second sent over all transfers (0: no limit)
	Log               *slog.Logger
	// Ready, if set, is told the bound addresses (tests use port 0); https is nil when
	// HTTPS did not start.
	Ready func(http, https, discovery net.Addr)
}

// Run serves the store until ctx ends: HTTP, HTTPS when asked (a missing or unreadable
// certificate or key stops HTTPS only, saying why, while HTTP serves on), and discovery.
func Run(ctx context.Context, opt DaemonOptions) error {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	srv := &Server{Store: opt.Store, Limit: opt.Limit, Log: opt.Log, CompleteOnly: opt.CompleteOnly, WaitAhead: opt.WaitAhead, SendWait: opt.SendWait,
		SendLimit: dav.NewLimiter(opt.SendLimit)}
	instance, err := opt.Store.Instance()
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", opt.HTTPAddr)
	if err != nil {
		return fmt.Errorf("peer: HTTP %s: %w", opt.HTTPAddr, err)
	}
	srv.HTTPPort = hl.Addr().(*net.TCPAddr).Port
	var tl net.Listener
	if opt.RequireClientCert && (!opt.HTTPS || opt.CACert == "") {
		return errors.New("peer: peers.require_client_cert needs peers.https and peers.ca_cert")
	}
	if opt.HTTPS {
		cfg, err := loadTLS(opt.TLSCert, opt.TLSKey)
		if err == nil && opt.CACert != "" {
			err = fleetServerTLS(cfg, opt.CACert, opt.RequireClientCert)
		}
		if err != nil && opt.RequireClientCert {
			hl.Close()
			return err // no store served unauthenticated instead
		}
		if err == nil {
			var l net.Listener
			if l, err = net.Listen("tcp", opt.HTTPSAddr); err == nil {
				tl = tls.NewListener(l, cfg)
				srv.HTTPSPort = l.Addr().(*net.TCPAddr).Port
			}
		}
		if err != nil {
			opt.Log.Error("HTTPS not started; HTTP serves on", "err", err)
		}
	}
	ul, err := net.ListenPacket("udp4", opt.DiscoveryAddr)
	if err != nil {
		hl.Close()
		if tl != nil {
			tl.Close()
		}
		return fmt.Errorf("peer: discovery %s: %w", opt.DiscoveryAddr, err)
	}
	if opt.Ready != nil {
		var ta net.Addr
		if tl != nil {
			ta = tl.Addr()
		}
		opt.Ready(hl.Addr(), ta, ul.LocalAddr())
	}
	h := srv.Handler()
	g, gctx := errgroup.WithContext(ctx)
	serve := func(l net.Listener, h http.Handler) {
		// what the HTTP server says of clients (a refused handshake, a bad request) is the
		// clients' doing: a debug line, not stderr
		hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10,
			ErrorLog: slog.NewLogLogger(opt.Log.Handler(), slog.LevelDebug)}
		g.Go(func() error {
			if err := hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return hs.Shutdown(sctx)
		})
	}
	plain := h
	if opt.RequireClientCert {
		plain = plainOnlyMetrics(h)
	}
	serve(hl, plain)
	if tl != nil {
		serve(tl, h)
	}
	resp := &Responder{Server: srv, Instance: instance, Log: opt.Log}
	g.Go(func() error { return resp.Serve(gctx, ul) })
	opt.Log.Info("peer serving", "http", hl.Addr().String(), "https", srv.HTTPSPort, "discovery", ul.LocalAddr().String(), "limit_of_connections", srv.Limit)
	return g.Wait()
}

// loadTLS loads the device's certificate and key; each missing or unreadable file is named.
func loadTLS(cert, key string) (*tls.Config, error) {
	if cert == "" || key == "" {
		return nil, errors.New("peer: HTTPS needs peers.tls_cert and peers.tls_key")
	}
	pair, err := manifests.LoadKeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("peer: HTTPS %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// Port formats a port for a listen address.
func Port(p int) string { return ":" + strconv.Itoa(p) }
