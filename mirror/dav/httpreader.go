package dav

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/drepo-dev/drepo/manifests"
)

// HTTPReader reads a repository's files over plain HTTP: one GET per byte range, with
// credentials sent up front, the server's status mapped to StatusError, a stall guard on
// the body and a check that a 206 starts where it was asked to. It is the read side every
// reader shares: WebDAV builds on it, and a device reads a peer's /v1/blobs with it. Its
// client refuses redirects off the base's origin (sameOrigin) and gives small requests an
// answer deadline (answerDeadline).
type HTTPReader struct {
	base   *url.URL
	user   string
	pass   Secret
	client *http.Client
	// Stall is how long a body may move less than MinProgress; 0 means StallTimeout.
	Stall time.Duration
}

// Stat implements Reader with a HEAD: size only (ErrNotFound for a 404).
func (w *HTTPReader) Stat(ctx context.Context, name string) (FileInfo, error) {
	resp, err := w.request(ctx, "HEAD", name, nil, 0, nil)
	if err != nil {
		return FileInfo{}, err
	}
	drain(resp)
	if resp.StatusCode != http.StatusOK {
		return FileInfo{}, statusErr("HEAD", name, resp)
	}
	return FileInfo{Name: strings.Trim(name, "/"), Size: resp.ContentLength, ETag: resp.Header.Get("ETag")}, nil
}

func (w *HTTPReader) stall() time.Duration {
	if w.Stall > 0 {
		return w.Stall
	}
	return StallTimeout
}

// URL returns the absolute URL of name.
func (w *HTTPReader) URL(name string) string {
	u := *w.base
	u.Path = path.Join(w.base.Path, name)
	if strings.HasSuffix(name, "/") || name == "" {
		u.Path += "/"
	}
	return u.String()
}

// request sends one plain request with credentials.
func (w *HTTPReader) request(ctx context.Context, method, name string, body io.Reader, size int64, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, w.URL(name), body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	if w.user != "" {
		req.SetBasicAuth(w.user, w.pass.Reveal())
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mirror: %s %s: %w", method, name, err)
	}
	return resp, nil
}

// drain reads what is left of a response body (bounded) and closes it: a body closed before
// its end takes the connection down with it, and a sync of many files would then dial (and
// allocate buffers for) a new connection per request.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 256<<10))
	resp.Body.Close()
}

// statusErr turns an unexpected status into an error carrying it (see retryable).
func statusErr(method, name string, resp *http.Response) error {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	// The body is the server's text: made printable here, once, for every caller.
	e := &StatusError{Method: method, Name: name, Code: resp.StatusCode, Body: manifests.Printable(strings.TrimSpace(string(msg)))}
	if resp.Request != nil && resp.Request.URL != nil {
		u := *resp.Request.URL
		u.User = nil // never credentials in a message
		e.URL = manifests.Printable(u.String())
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		e.RetryAfter, _ = strconv.Atoi(ra)
	}
	return e
}

// StatusError is an HTTP status a request did not expect.
type StatusError struct {
	Method, Name string
	URL          string // the whole URL asked, when known (what an admin can try by hand)
	Code         int
	Body         string
	RetryAfter   int // seconds, from Retry-After
}

func (e *StatusError) Error() string {
	where := e.Name
	if e.URL != "" {
		where = e.URL
	}
	s := fmt.Sprintf("mirror: %s %s: %d %s", e.Method, where, e.Code, http.StatusText(e.Code))
	if e.Body != "" && len(e.Body) < 200 && !strings.Contains(e.Body, "<") {
		s += ": " + e.Body
	}
	return s
}

func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == http.StatusNotFound
	case ErrPrecondition:
		return e.Code == http.StatusPreconditionFailed
	case ErrUnauthorized:
		return e.Code == http.StatusUnauthorized || e.Code == http.StatusForbidden
	}
	return false
}

// Open implements Reader with one plain GET (a Range header when only part is wanted).
// A server that ignores the range and answers 200 has the skipped bytes read and dropped,
// and the body is cut to length. A 206 must start at offset.
func (w *HTTPReader) Open(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, fmt.Errorf("mirror: GET %s: negative offset %d", name, offset)
	}
	if length == 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	var hdr http.Header
	if offset > 0 || length > 0 {
		end := ""
		if length > 0 {
			end = strconv.FormatInt(offset+length-1, 10)
		}
		hdr = http.Header{"Range": {"bytes=" + strconv.FormatInt(offset, 10) + "-" + end}}
	}
	gctx, g := newStallGuard(ctx, w.stall())
	resp, err := w.request(gctx, "GET", name, nil, 0, hdr)
	if err != nil {
		g.stop()
		return nil, err
	}
	var body io.Reader = g.reader(resp.Body)
	switch {
	case resp.StatusCode == http.StatusOK && offset > 0:
		if _, err := io.CopyN(io.Discard, body, offset); err != nil {
			drain(resp)
			g.stop()
			return nil, fmt.Errorf("mirror: GET %s: skipping to %d: %w", name, offset, err)
		}
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusPartialContent:
		if cr := resp.Header.Get("Content-Range"); hdr == nil || contentRangeStart(cr) != offset {
			drain(resp)
			g.stop()
			return nil, fmt.Errorf("mirror: GET %s: asked for bytes from %d, got Content-Range %.80q: %w", name, offset, cr, ErrProtocol)
		}
	default:
		err := statusErr("GET", name, resp)
		drain(resp)
		g.stop()
		return nil, err
	}
	if length > 0 {
		body = io.LimitReader(body, length)
	}
	return &guardedBody{Reader: body, body: resp.Body, g: g}, nil
}

// contentRangeStart reads the first byte position of "bytes START-END/SIZE" (-1 if absent).
func contentRangeStart(h string) int64 {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return -1
	}
	start, _, ok := strings.Cut(rest, "-")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(start, 10, 64)
	if err != nil {
		return -1
	}
	return n
}
