package dav

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"

	"github.com/studio-b12/gowebdav"

	"github.com/drepo-dev/drepo/manifests"
)

// WebDAV is a Remote on any WebDAV server (Apache mod_dav, nginx, drepo serve). Listing,
// stat, range reads, removal, folder creation and MOVE go through gowebdav. PUT is one plain
// request with Content-Length and credentials sent up front: gowebdav's default auto-auth
// first sends a request without credentials and, to resend a body it cannot seek, copies it
// into memory (GBs for a large blob), and its WriteStream issues a MKCOL before every PUT.
type WebDAV struct {
	*HTTPReader
	dirs    sync.Map   // folders known to exist
	mkdirMu sync.Mutex // one folder creation at a time
	// Log receives warnings about what the server sent (names skipped); nil discards them.
	Log *slog.Logger
}

// skipName warns that a listing entry was skipped, with the server's name made printable.
func (w *WebDAV) skipName(name, why string) {
	if w.Log != nil {
		w.Log.Warn("skipping a listing entry the server sent", "name", manifests.Printable(name), "why", why)
	}
}

var (
	_ Reader            = (*HTTPReader)(nil)
	_ Remote            = (*WebDAV)(nil)
	_ Mover             = (*WebDAV)(nil)
	_ Digester          = (*WebDAV)(nil)
	_ Walker            = (*WebDAV)(nil)
	_ ConditionalPutter = (*WebDAV)(nil)
)

// dav returns a gowebdav client bound to ctx (gowebdav's calls take no context, so each
// call gets a light client whose interceptor puts ctx on its requests).
func (w *WebDAV) dav(ctx context.Context) *gowebdav.Client {
	c := gowebdav.NewAuthClient(w.base.String(), gowebdav.NewPreemptiveAuth(&basicAuth{w.user, w.pass}))
	c.SetTransport(w.client.Transport)
	c.SetInterceptor(func(_ string, rq *http.Request) { *rq = *rq.WithContext(ctx) })
	return c
}

// mapErr turns gowebdav's errors into ours.
func mapErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	var pe *os.PathError
	var se gowebdav.StatusError
	if errors.As(err, &pe) && errors.As(pe.Err, &se) {
		return &StatusError{Method: op, Name: name, Code: se.Status}
	}
	if errors.As(err, &se) {
		return &StatusError{Method: op, Name: name, Code: se.Status}
	}
	return fmt.Errorf("mirror: %s %s: %w", op, name, err)
}

// Put implements Remote.
func (w *WebDAV) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := w.ensureDir(ctx, path.Dir(name)); err != nil {
		return err
	}
	gctx, g := newStallGuard(ctx, StallTimeout)
	defer g.stop()
	resp, err := w.request(gctx, "PUT", name, g.reader(r), size, nil)
	if err != nil {
		if c := context.Cause(gctx); errors.Is(c, ErrStalled) {
			return fmt.Errorf("mirror: PUT %s: %w", name, ErrStalled)
		}
		return err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated, http.StatusNoContent:
		return nil
	case http.StatusConflict: // the folder went away since we made it
		w.dirs.Delete(path.Dir(name))
	}
	return statusErr("PUT", name, resp)
}

// ensureDir creates dir and its parents once per process. Creation is serialised: parallel
// uploads would race to MKCOL the same parents, and Apache answers the loser 403.
func (w *WebDAV) ensureDir(ctx context.Context, dir string) error {
	if dir == "." || dir == "" || dir == "/" {
		return nil
	}
	if _, ok := w.dirs.Load(dir); ok {
		return nil
	}
	w.mkdirMu.Lock()
	defer w.mkdirMu.Unlock()
	if _, ok := w.dirs.Load(dir); ok {
		return nil
	}
	if err := mapErr("MKCOL", dir, w.dav(ctx).MkdirAll(dir, 0o755)); err != nil {
		if fi, serr := w.Stat(ctx, dir); serr != nil || !fi.IsDir {
			return err
		}
	}
	for d := dir; d != "." && d != "/"; d = path.Dir(d) {
		w.dirs.Store(d, true)
	}
	return nil
}

// Stat implements Remote.
func (w *WebDAV) Stat(ctx context.Context, name string) (FileInfo, error) {
	fi, err := w.dav(ctx).Stat(name)
	if err != nil {
		return FileInfo{}, mapErr("PROPFIND", name, err)
	}
	return toInfo(name, fi), nil
}

func toInfo(name string, fi os.FileInfo) FileInfo {
	info := FileInfo{Name: strings.Trim(name, "/"), Size: fi.Size(), IsDir: fi.IsDir(), ModTime: fi.ModTime()}
	switch f := fi.(type) { // Stat gives *File, ReadDir File
	case gowebdav.File:
		info.ETag = f.ETag()
	case *gowebdav.File:
		info.ETag = f.ETag()
	}
	return info
}

// Remove implements Remote.
func (w *WebDAV) Remove(ctx context.Context, name string) error {
	err := mapErr("DELETE", name, w.dav(ctx).RemoveAll(name))
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Move implements Mover: MOVE with Overwrite: T.
func (w *WebDAV) Move(ctx context.Context, from, to string) error {
	if err := w.ensureDir(ctx, path.Dir(to)); err != nil {
		return err
	}
	return mapErr("MOVE", from, w.dav(ctx).Rename(from, to, true))
}

// Digest implements Digester: HEAD with Want-Repr-Digest: sha-256.
func (w *WebDAV) Digest(ctx context.Context, name string) (manifests.Hash, int64, bool, error) {
	resp, err := w.request(ctx, "HEAD", name, nil, 0, http.Header{"Want-Repr-Digest": {"sha-256=10"}})
	if err != nil {
		return manifests.Hash{}, 0, false, err
	}
	drain(resp)
	if resp.StatusCode != http.StatusOK {
		return manifests.Hash{}, 0, false, statusErr("HEAD", name, resp)
	}
	sum, ok := parseReprDigest(resp.Header.Get("Repr-Digest"))
	return sum, resp.ContentLength, ok, nil
}

// parseReprDigest reads the sha-256 member of a Repr-Digest header (RFC 9530: a structured
// dictionary whose values are byte sequences, ":base64:").
func parseReprDigest(h string) (manifests.Hash, bool) {
	if len(h) > 4096 {
		return manifests.Hash{}, false
	}
	for _, item := range strings.Split(h, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || strings.TrimSpace(k) != "sha-256" {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) < 2 || v[0] != ':' || v[len(v)-1] != ':' {
			return manifests.Hash{}, false
		}
		b, err := base64.StdEncoding.DecodeString(v[1 : len(v)-1])
		if err != nil || len(b) != len(manifests.Hash{}) {
			return manifests.Hash{}, false
		}
		var sum manifests.Hash
		copy(sum[:], b)
		return sum, true
	}
	return manifests.Hash{}, false
}

// PutIf implements ConditionalPutter with If-Match / If-None-Match: *.
func (w *WebDAV) PutIf(ctx context.Context, name string, data []byte, ifMatch string) error {
	if err := w.ensureDir(ctx, path.Dir(name)); err != nil {
		return err
	}
	h := http.Header{}
	if ifMatch == "" {
		h.Set("If-None-Match", "*")
	} else {
		h.Set("If-Match", ifMatch)
	}
	resp, err := w.request(ctx, "PUT", name, bytes.NewReader(data), int64(len(data)), h)
	if err != nil {
		return err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated, http.StatusNoContent:
		return nil
	}
	return statusErr("PUT", name, resp)
}

// basicAuth sends credentials with every request (gowebdav.Authenticator). String never
// shows the password.
type basicAuth struct {
	user string
	pass Secret
}

func (b *basicAuth) Authorize(_ *http.Client, rq *http.Request, _ string) error {
	if b.user != "" {
		rq.SetBasicAuth(b.user, b.pass.Reveal())
	}
	return nil
}

func (b *basicAuth) Verify(_ *http.Client, rs *http.Response, p string) (bool, error) {
	if rs.StatusCode == http.StatusUnauthorized {
		return false, fmt.Errorf("mirror: %s: 401: %w", p, ErrUnauthorized)
	}
	return false, nil
}

func (b *basicAuth) Close() error                  { return nil }
func (b *basicAuth) Clone() gowebdav.Authenticator { return b }
func (b *basicAuth) String() string                { return "basic " + b.user }

// EnsureRoot creates the repository's base folder (and its parents) if it is missing, so a
// new repository URL works without preparing the server by hand.
func (w *WebDAV) EnsureRoot(ctx context.Context) error {
	if _, err := w.Stat(ctx, ""); err == nil {
		return nil
	}
	segs := strings.Split(strings.Trim(w.base.Path, "/"), "/")
	for i := range segs {
		u := *w.base
		u.Path = "/" + strings.Join(segs[:i+1], "/") + "/"
		req, err := http.NewRequestWithContext(ctx, "MKCOL", u.String(), nil)
		if err != nil {
			return err
		}
		if w.user != "" {
			req.SetBasicAuth(w.user, w.pass.Reveal())
		}
		resp, err := w.client.Do(req)
		if err != nil {
			return fmt.Errorf("mirror: MKCOL %s: %w", u.Path, err)
		}
		drain(resp)
		switch resp.StatusCode {
		case http.StatusCreated, http.StatusMethodNotAllowed, http.StatusOK, http.StatusNoContent:
		default:
			return &StatusError{Method: "MKCOL", Name: u.Path, Code: resp.StatusCode}
		}
	}
	return nil
}

// CheckWrite asks, in one harmless request, whether the repository takes writes with these
// credentials: MKCOL of tmp/ (created if missing, as sync would; 405 when it exists). A
// server checks credentials before it looks at the folder, so a wrong password is 401 or
// 403 here even where reads are open.
func (w *WebDAV) CheckWrite(ctx context.Context) error {
	resp, err := w.request(ctx, "MKCOL", TmpDir+"/", nil, 0, nil)
	if err != nil {
		return err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusCreated, http.StatusMethodNotAllowed, http.StatusOK, http.StatusNoContent:
		return nil
	}
	return statusErr("MKCOL", TmpDir+"/", resp)
}
