package davtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/drepo-dev/drepo/webdavsrv"
)

// DrepoOptions tune StartDrepo.
type DrepoOptions struct {
	AnonymousRead   bool
	MaxUpload       int64
	NoDepthInfinity bool
	TLS             bool            // serve HTTPS with a certificate generated for 127.0.0.1
	Log             io.Writer       // access log; default discarded
	Root            string          // serve this folder instead of a new one
	Pool            **x509.CertPool // with TLS: receives the pool that trusts the server
	BodyStall       time.Duration   // webdavsrv.Config.BodyStall
}

// StartDrepo runs the embedded server (drepo serve) on a free 127.0.0.1 port with a bcrypt
// htpasswd user, and stops it when the test ends.
func StartDrepo(t testing.TB, opt DrepoOptions) *Server {
	t.Helper()
	base := t.TempDir()
	s := &Server{Root: opt.Root, User: "drepo", Password: "test-password", Name: "drepo"}
	if s.Root == "" {
		s.Root = filepath.Join(base, "dav")
		if err := os.MkdirAll(s.Root, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte(s.Password), bcrypt.MinCost)
	htp := filepath.Join(base, "htpasswd")
	if err := os.WriteFile(htp, []byte(s.User+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := opt.Log
	if w == nil {
		w = io.Discard
	}
	log := slog.New(slog.NewTextHandler(w, nil))
	srv, err := webdavsrv.New(webdavsrv.Config{Root: s.Root, Htpasswd: htp, AnonymousRead: opt.AnonymousRead,
		MaxUpload: opt.MaxUpload, NoDepthInfinity: opt.NoDepthInfinity, BodyStall: opt.BodyStall, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	lo := webdavsrv.ListenOptions{Addr: "127.0.0.1:0", Grace: 2 * time.Second}
	scheme := "http"
	if opt.TLS {
		cert, key, pool := GenerateCert(t, base, "127.0.0.1")
		lo.TLSCert, lo.TLSKey = cert, key
		if opt.Pool != nil {
			*opt.Pool = pool
		}
		scheme = "https"
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	lo.Ready = func(a net.Addr) { ready <- a }
	done := make(chan error, 1)
	go func() { done <- webdavsrv.ListenAndServe(ctx, srv, lo, log) }()
	select {
	case a := <-ready:
		s.URL = scheme + "://" + a.String() + "/"
	case err := <-done:
		cancel()
		t.Fatalf("drepo serve did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("drepo serve: %v", err)
		}
		srv.Close()
	})
	return s
}

// TLSClientConfig trusts pool only.
func TLSClientConfig(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
