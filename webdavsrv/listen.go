package webdavsrv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/drepo-dev/drepo/manifests"
)

// ListenOptions say where and how to listen.
type ListenOptions struct {
	Addr    string // host:port
	TLSCert string // both or neither
	TLSKey  string
	// Grace is how long in-flight requests get after ctx ends; then connections are cut and
	// unfinished uploads are discarded. Default 10 s.
	Grace time.Duration
	// Ready, if set, is called with the bound address once the server accepts connections.
	Ready func(addr net.Addr)
}

// LoadTLS loads a certificate and key pair, naming the file at fault: a missing, unreadable
// or mismatched pair must stop the start, never fall back to plain HTTP.
func LoadTLS(certFile, keyFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("webdavsrv: TLS needs both a certificate and a key")
	}
	pair, err := manifests.LoadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("webdavsrv: TLS file %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// ListenAndServe serves h until ctx ends, then stops gracefully. Timeouts bound slow
// headers and idle connections, never a whole request: a 10 GB upload takes as long as it takes.
func ListenAndServe(ctx context.Context, h http.Handler, opt ListenOptions, log *slog.Logger) error {
	var tlsCfg *tls.Config
	if opt.TLSCert != "" || opt.TLSKey != "" {
		var err error
		if tlsCfg, err = LoadTLS(opt.TLSCert, opt.TLSKey); err != nil {
			return err
		}
	}
	if opt.Grace == 0 {
		opt.Grace = 10 * time.Second
	}
	ln, err := net.Listen("tcp", opt.Addr)
	if err != nil {
		return fmt.Errorf("webdavsrv: listen: %w", err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 20 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		TLSConfig:         tlsCfg,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	log.Info("serving WebDAV", "url", scheme+"://"+ln.Addr().String()+"/")
	if opt.Ready != nil {
		opt.Ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("webdavsrv: serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("stopping; waiting for requests in flight", "grace", opt.Grace)
	sctx, cancel := context.WithTimeout(context.Background(), opt.Grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("grace period over; closing connections", "err", err)
		_ = srv.Close()
	}
	return nil
}

// IsLoopback reports whether the listen address addr (host:port) binds only loopback
// addresses: 127.0.0.0/8, ::1 or localhost. An empty host means every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
