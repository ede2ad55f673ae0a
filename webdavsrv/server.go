package webdavsrv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/webdav"
)

// Config is what a Server needs. Zero values are safe defaults except Root.
type Config struct {
	Root string // folder served; must exist
	// Htpasswd is an Apache htpasswd file of bcrypt hashes. Without it the server refuses to
	// start unless NoAuth is set explicitly (secure by default).
	Htpasswd string
	NoAuth   bool
	// AnonymousRead opens GET, HEAD, PROPFIND and OPTIONS to everyone; writes still need
	// credentials.
	AnonymousRead bool
	// MaxUpload answers 413 to a PUT body over this many bytes; 0 means no limit.
	MaxUpload int64
	// NoDepthInfinity refuses PROPFIND with Depth: infinity (403 propfind-finite-depth).
	NoDepthInfinity bool
	// BodyStall bounds how long a request body may bring no bytes before the connection is
	// cut (default 60 s): one byte of a declared 1 MiB body must not hold a connection, or a
	// conditional PUT's turn, forever.
	BodyStall time.Duration
	Logger    *slog.Logger
}

// Server is the WebDAV handler; it is an http.Handler.
type Server struct {
	cfg    Config
	root   *os.Root
	dav    *webdav.Handler
	auth   *htpasswd
	digest digester
	log    *slog.Logger
	condMu sync.Mutex // serialises the check-and-rename of conditional PUTs
}

// HealthPath answers 200 without authentication, for load balancers; it is outside the
// WebDAV namespace because no file name starts with "/-/" in a drepo repository.
const HealthPath = "/-/health"

// maxPathLen bounds a request path.
const maxPathLen = 4096

// New opens the root and the htpasswd file and returns a ready Server.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Root == "" {
		return nil, errors.New("webdavsrv: no root folder given")
	}
	fi, err := os.Stat(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("webdavsrv: root: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("webdavsrv: root %s is not a folder", cfg.Root)
	}
	root, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("webdavsrv: root: %w", err)
	}
	if cfg.BodyStall <= 0 {
		cfg.BodyStall = DefaultBodyStall
	}
	removeDebris(root, cfg.BodyStall, cfg.Logger)
	s := &Server{cfg: cfg, root: root, log: cfg.Logger}
	switch {
	case cfg.Htpasswd != "":
		if s.auth, err = loadHtpasswd(cfg.Htpasswd, cfg.Logger); err != nil {
			root.Close()
			return nil, err
		}
	case !cfg.NoAuth:
		root.Close()
		return nil, errors.New("webdavsrv: no htpasswd file given; pass --htpasswd FILE, or --no-auth to serve without credentials")
	}
	s.dav = &webdav.Handler{
		FileSystem: &rootFS{root: root},
		LockSystem: newBoundedLocks(),
		Logger: func(r *http.Request, err error) {
			if err != nil {
				s.log.Debug("webdav", "method", r.Method, "path", r.URL.Path, "err", err)
			}
		},
	}
	return s, nil
}

// Close releases the root folder.
func (s *Server) Close() error { return s.root.Close() }

// readMethods are open to everyone with AnonymousRead.
var readMethods = map[string]bool{"GET": true, "HEAD": true, "PROPFIND": true, "OPTIONS": true}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	user := ""
	// bytes is what the response carried; bytes_in what the request body brought (a PUT's
	// upload), counted as the handler reads it. A body that stalls is cut (BodyStall).
	// The handler works on a copy of the request: net/http decides from its own copy's
	// Body whether to discard an unread body (and answer Expect: 100-continue), which a
	// wrapped body would hide.
	in := newBodyGuard(w, r.Body, s.cfg.BodyStall)
	rc := *r
	rc.Body = in
	r = &rc
	defer func() {
		s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.status(),
			"bytes", sw.n, "bytes_in", in.n, "duration_ms", time.Since(start).Milliseconds(), "user", user, "remote", r.RemoteAddr)
	}()
	if r.URL.Path == HealthPath {
		sw.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(sw, "ok\n")
		return
	}
	if len(r.URL.Path) > maxPathLen {
		http.Error(sw, "path too long", http.StatusRequestURITooLong)
		return
	}
	if s.auth != nil {
		u, p, ok := r.BasicAuth()
		if ok {
			user = u
		}
		if !(s.cfg.AnonymousRead && readMethods[r.Method]) && (!ok || !s.auth.check(u, p)) {
			sw.Header().Set("WWW-Authenticate", `Basic realm="drepo", charset="UTF-8"`)
			http.Error(sw, "authentication required", http.StatusUnauthorized)
			return
		}
	}
	if _, err := rel(r.URL.Path); err != nil {
		http.NotFound(sw, r)
		return
	}
	rq := &request{}
	switch r.Method {
	case "GET", "HEAD":
		s.serveGet(sw, r)
		return
	case "PUT":
		limit := int64(-1)
		if s.cfg.MaxUpload > 0 {
			if r.ContentLength > s.cfg.MaxUpload {
				http.Error(sw, "upload over the server's limit", http.StatusRequestEntityTooLarge)
				return
			}
			limit = s.cfg.MaxUpload
		}
		if r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Match") != "" {
			// x/net/webdav ignores these on PUT; drepo's sync takes its lease with them.
			// Checked once now (an early 412), and again under condMu just before the
			// upload's rename, so two writers cannot both pass, and a slow body holds
			// nobody else's turn.
			if !s.putPreconditions(r) {
				http.Error(sw, "precondition failed", http.StatusPreconditionFailed)
				return
			}
			rq.commitMu = &s.condMu
			rq.precondition = func() bool { return s.putPreconditions(r) }
		}
		rq.body = &bodyState{r: r.Body, limit: limit}
		r.Body = rq.body
		sw.rewrite = func(code int) int {
			switch {
			case code == http.StatusMethodNotAllowed && rq.body.tooLarge():
				return http.StatusRequestEntityTooLarge
			case code == http.StatusMethodNotAllowed && rq.preconditionFailed:
				return http.StatusPreconditionFailed
			}
			return code
		}
	case "MOVE", "COPY":
		// RFC 4918 §10.6: a missing Overwrite header means T.
		if r.Header.Get("Overwrite") == "" {
			r.Header.Set("Overwrite", "T")
		}
		src, dst := s.moveNames(r)
		// x/net/webdav compares the two paths unnormalised: "/v/" onto "/v" deletes the
		// destination (the source itself) first, and "/a" into "/a/x" copies until the
		// path is too long. Both are refused, for files and folders.
		if src != "" && (src == dst || src == "." || strings.HasPrefix(dst+"/", src+"/")) {
			http.Error(sw, "the destination is the source or lies inside it", http.StatusForbidden)
			return
		}
		if r.Header.Get("Overwrite") == "T" {
			rq.replaceSrc, rq.replaceDst = src, dst
		}
	case "PROPFIND", "PROPPATCH", "LOCK":
		if r.Method == "PROPFIND" && s.cfg.NoDepthInfinity && strings.EqualFold(r.Header.Get("Depth"), "infinity") {
			sw.Header().Set("Content-Type", "application/xml; charset=utf-8")
			sw.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(sw, `<?xml version="1.0" encoding="utf-8"?><D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>`)
			return
		}
		limit := maxXMLBody
		if r.Method == "LOCK" {
			limit = maxLockBody
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
		if err != nil {
			http.Error(sw, "reading request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(body) > limit {
			http.Error(sw, fmt.Sprintf("XML body over %d bytes", limit), http.StatusRequestEntityTooLarge)
			return
		}
		if err := checkXML(body); err != nil {
			http.Error(sw, "invalid XML: "+err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	s.dav.ServeHTTP(sw, r.WithContext(withRequest(r.Context(), rq)))
}

// moveNames returns source and destination of a MOVE/COPY relative to the root, or "" if
// the Destination header cannot be read (the WebDAV handler then answers the error).
func (s *Server) moveNames(r *http.Request) (string, string) {
	u, err := url.Parse(r.Header.Get("Destination"))
	if err != nil || (u.Host != "" && u.Host != r.Host) {
		return "", ""
	}
	src, err1 := rel(r.URL.Path)
	dst, err2 := rel(u.Path)
	if err1 != nil || err2 != nil {
		return "", ""
	}
	return src, dst
}

// putPreconditions evaluates If-None-Match and If-Match (RFC 9110 §13.1) for a PUT.
func (s *Server) putPreconditions(r *http.Request) bool {
	name, _ := rel(r.URL.Path)
	fi, err := s.root.Stat(name)
	exists := err == nil && !fi.IsDir()
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if strings.TrimSpace(inm) == "*" && exists {
			return false
		}
		if exists && etagListHas(inm, etag(fi)) {
			return false
		}
	}
	if im := r.Header.Get("If-Match"); im != "" {
		if !exists {
			return false
		}
		if strings.TrimSpace(im) != "*" && !etagListHas(im, etag(fi)) {
			return false
		}
	}
	return true
}

func etagListHas(list, tag string) bool {
	for _, t := range strings.Split(list, ",") {
		if strings.TrimPrefix(strings.TrimSpace(t), "W/") == tag {
			return true
		}
	}
	return false
}

// serveGet answers GET and HEAD itself: http.ServeContent on the *os.File (so the kernel's
// sendfile carries the bytes), Range, If-Range, If-None-Match and ETag, plus Repr-Digest
// when the client asks for it.
func (s *Server) serveGet(w http.ResponseWriter, r *http.Request) {
	name, _ := rel(r.URL.Path)
	f, err := s.root.Open(name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, "stat failed", http.StatusInternalServerError)
		return
	}
	if fi.IsDir() {
		w.Header().Set("Allow", "OPTIONS, PROPFIND, PROPPATCH, MKCOL, DELETE, MOVE, COPY, LOCK, UNLOCK")
		http.Error(w, "a collection has no content; use PROPFIND", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("ETag", etag(fi))
	if wantsSHA256(r.Header.Get("Want-Repr-Digest")) {
		sum, err := s.digest.digest(r.Context(), f, name)
		if err != nil {
			http.Error(w, "digest failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Repr-Digest", reprDigest(sum))
	}
	http.ServeContent(w, r, path.Base(name), fi.ModTime(), f)
}

// statusWriter records status and bytes for the access log, and lets PUT turn the WebDAV
// handler's 405 for an over-limit body into 413.
type statusWriter struct {
	http.ResponseWriter
	code    int
	n       int64
	rewrite func(int) int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code != 0 {
		return
	}
	if s.rewrite != nil {
		code = s.rewrite(code)
	}
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.code == 0 {
		s.WriteHeader(http.StatusOK)
	}
	n, err := s.ResponseWriter.Write(p)
	s.n += int64(n)
	return n, err
}

// ReadFrom keeps sendfile working through the wrapper.
func (s *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if s.code == 0 {
		s.WriteHeader(http.StatusOK)
	}
	n, err := io.Copy(s.ResponseWriter, r)
	s.n += n
	return n, err
}

func (s *statusWriter) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
