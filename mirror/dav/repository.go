package dav

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/drepo-dev/drepo/manifests"
)

// Repository is one configured WebDAV repository.
type Repository struct {
	Name     string
	URL      string
	Priority int
	Username string
	Password Secret
	CACert   string // PEM file of the CA to trust instead of the system's
	// ClientCert and ClientKey: optional TLS client certificate.
	ClientCert, ClientKey string
	// SmallTimeout overrides the package's SmallTimeout (tests of hung servers).
	SmallTimeout time.Duration
	// DeltasOnly: sync sends this repository the delta of a file instead of the file
	// where the repository holds the delta's base (a site's own repository behind a thin
	// WAN); a device rebuilds the file from base and delta.
	DeltasOnly bool
}

// Staging reports whether devices must never read this repository (priority < 0).
func (r Repository) Staging() bool { return r.Priority < 0 }

// Timeouts of the WebDAV client. There is no whole-request timeout: a 10 GB upload takes as
// long as it takes; a transfer that makes no progress for StallTimeout is cut instead.
const (
	ConnectTimeout = 15 * time.Second
	HeaderTimeout  = 2 * time.Minute // a server may fsync a large upload before answering
	IdleConnTime   = 90 * time.Second
	StallTimeout   = 60 * time.Second
)

// Transport builds the HTTP transport for r: TLS with r's CA and client certificate,
// timeouts on connect, TLS handshake and response headers, enough idle connections for
// parallel transfers.
func (r Repository) Transport(conns int) (*http.Transport, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if r.CACert != "" {
		pool, err := manifests.LoadCertPool(r.CACert)
		if err != nil {
			return nil, fmt.Errorf("mirror: repository %s: ca_cert: %w", r.Name, err)
		}
		tlsCfg.RootCAs = pool
	}
	if r.ClientCert != "" {
		pair, err := manifests.LoadKeyPair(r.ClientCert, r.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("mirror: repository %s: client %w", r.Name, err)
		}
		tlsCfg.Certificates = []tls.Certificate{pair}
	}
	d := &net.Dialer{Timeout: ConnectTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   ConnectTimeout,
		ResponseHeaderTimeout: HeaderTimeout,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       IdleConnTime,
		MaxIdleConnsPerHost:   conns + walkParallel, // verify lists while it downloads
		ForceAttemptHTTP2:     false,                // WebDAV servers speak HTTP/1.1; h2 gains nothing for large bodies
		WriteBufferSize:       256 << 10,
		ReadBufferSize:        256 << 10,
	}, nil
}

// Open connects r as a WebDAV Remote with room for conns parallel transfers.
func Open(r Repository, conns int) (*WebDAV, error) {
	h, err := OpenReader(r, conns)
	if err != nil {
		return nil, err
	}
	return &WebDAV{HTTPReader: h}, nil
}

// OpenReader connects r for reading only (plain HTTP GET and HEAD): what a device needs.
func OpenReader(r Repository, conns int) (*HTTPReader, error) {
	if _, err := parseBase(r); err != nil {
		return nil, err
	}
	t, err := r.Transport(conns)
	if err != nil {
		return nil, err
	}
	return OpenReaderOn(r, t)
}

// OpenReaderOn is OpenReader over a transport the caller shares among many readers: a
// device reads its LAN's peers through one pool of connections, bounded however many
// peers answer (r's own TLS settings are then the transport's business).
func OpenReaderOn(r Repository, t http.RoundTripper) (*HTTPReader, error) {
	u, err := parseBase(r)
	if err != nil {
		return nil, err
	}
	rt := &answerDeadline{rt: &sameOrigin{rt: t, base: u}, d: SmallTimeout}
	if r.SmallTimeout > 0 {
		rt.d = r.SmallTimeout
	}
	return &HTTPReader{base: u, user: r.Username, pass: r.Password,
		client: &http.Client{Transport: rt, CheckRedirect: sameOriginRedirect(u)}}, nil
}

// parseBase checks r's URL and returns it with a trailing slash.
func parseBase(r Repository) (*url.URL, error) {
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("mirror: repository %s: url %q is not an http(s) URL", r.Name, r.URL)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u, nil
}

// sameOriginRedirect lets our client follow a redirect only within the repository's origin
// (a trailing-slash redirect, say); sameOrigin refuses the rest in the transport too, for
// gowebdav's client.
func sameOriginRedirect(base *url.URL) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("mirror: more than 5 redirects")
		}
		if !strings.EqualFold(req.URL.Scheme, base.Scheme) || !strings.EqualFold(hostPort(req.URL), hostPort(base)) {
			return fmt.Errorf("mirror: %w: to %s://%s", ErrRedirectRefused, req.URL.Scheme, req.URL.Host)
		}
		return nil
	}
}
