package dav

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/drepo-dev/drepo/manifests"
)

// SmallTimeout bounds how long a small request (everything but an upload's body: index,
// signature, lease, PROPFIND, HEAD, MOVE, DELETE, MKCOL) waits for the server's answer to
// begin. A server that accepts and never answers costs a repository seconds, not minutes.
// Uploads keep HeaderTimeout, since a server may fsync a large body before answering.
const SmallTimeout = 10 * time.Second

// smallBody is the largest PUT body still treated as a small request.
const smallBody = 1 << 20

// ErrNoAnswer: the server did not begin its answer within the small-request deadline.
var ErrNoAnswer = errors.New("no answer from the server")

// ErrRedirectRefused: the server redirected to another scheme, host or port. Credentials
// are never sent there, and an https repository is never followed down to http.
var ErrRedirectRefused = errors.New("redirect to another scheme, host or port refused")

// ErrTLSVerify: the server's certificate does not verify against the system's CAs or the
// repository's ca_cert. Not a passing fault: never retried.
var ErrTLSVerify = errors.New("the server's TLS certificate does not verify (wrong host, expired, or set ca_cert)")

// sameOrigin is an http.RoundTripper that sends requests only to the repository's own
// scheme, host and port. Every request drepo makes goes there, so any other is a redirect
// being followed (by our client or gowebdav's): refused before a byte, credentials
// included, leaves. It also marks certificate failures, which no retry can fix.
type sameOrigin struct {
	rt   http.RoundTripper
	base *url.URL
}

func (s *sameOrigin) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.EqualFold(req.URL.Scheme, s.base.Scheme) || !strings.EqualFold(hostPort(req.URL), hostPort(s.base)) {
		return nil, fmt.Errorf("mirror: %w: to %s://%s (the repository is %s://%s)", ErrRedirectRefused,
			req.URL.Scheme, manifests.Printable(req.URL.Host), s.base.Scheme, s.base.Host)
	}
	resp, err := s.rt.RoundTrip(req)
	var cve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	if err != nil && (errors.As(err, &cve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)) {
		return nil, fmt.Errorf("mirror: %w: %w", ErrTLSVerify, err)
	}
	return resp, err
}

// hostPort is u's host with its scheme's default port made explicit.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if strings.EqualFold(u.Scheme, "https") {
		return u.Hostname() + ":443"
	}
	return u.Hostname() + ":80"
}

// answerDeadline is an http.RoundTripper that gives every small request d to get its
// response headers. It sits under both our own requests and gowebdav's, so no call site
// has to remember it.
type answerDeadline struct {
	rt http.RoundTripper
	d  time.Duration
}

func (a *answerDeadline) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.ContentLength > smallBody {
		return a.rt.RoundTrip(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	t := time.AfterFunc(a.d, func() { cancel(ErrNoAnswer) })
	resp, err := a.rt.RoundTrip(req.WithContext(ctx))
	if !t.Stop() {
		if err == nil {
			resp.Body.Close()
		}
		cancel(nil)
		return nil, fmt.Errorf("%w within %s", ErrNoAnswer, a.d)
	}
	if err != nil {
		cancel(nil)
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose releases the request's context with its body.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel(nil)
	return err
}
