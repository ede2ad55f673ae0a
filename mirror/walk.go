package mirror

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
)

const propfindAll = `<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:getetag/></D:prop></D:propfind>`

// Walk implements Walker with one PROPFIND Depth: infinity, decoding the answer as it
// streams in, one <response> at a time, so a listing of any size takes constant memory.
func (w *WebDAV) Walk(ctx context.Context, dir string, fn func(FileInfo) error) error {
	return w.propfind(ctx, dir, "infinity", func(fi FileInfo) error {
		if fi.IsDir {
			return nil
		}
		return fn(fi)
	})
}

// List implements Remote with one PROPFIND Depth: 1 through the same streaming decoder as
// Walk: gowebdav's ReadDir builds an os.FileInfo per entry and costs twice the CPU, which
// shows when verify lists 10,000 blobs.
func (w *WebDAV) List(ctx context.Context, dir string) ([]FileInfo, error) {
	self := strings.Trim(dir, "/")
	var out []FileInfo
	err := w.propfind(ctx, dir, "1", func(fi FileInfo) error {
		if fi.Name != self {
			out = append(out, fi)
		}
		return nil
	})
	return out, err
}

// propfind asks for the properties sync needs at the given depth and calls fn for each
// entry, folders included, as the answer streams in. A server that refuses the depth
// gives ErrWalkUnsupported.
func (w *WebDAV) propfind(ctx context.Context, dir, depth string, fn func(FileInfo) error) error {
	gctx, g := newStallGuard(ctx, StallTimeout)
	defer g.stop()
	d := strings.Trim(dir, "/") + "/"
	if d == "/" {
		d = ""
	}
	resp, err := w.request(gctx, "PROPFIND", d, strings.NewReader(propfindAll), int64(len(propfindAll)),
		http.Header{"Depth": {depth}, "Content-Type": {"application/xml; charset=utf-8"}})
	if err != nil {
		return err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusMultiStatus:
	case http.StatusForbidden, http.StatusBadRequest, http.StatusNotImplemented, http.StatusMethodNotAllowed:
		if depth == "infinity" {
			return ErrWalkUnsupported
		}
		return statusErr("PROPFIND", dir, resp)
	default:
		return statusErr("PROPFIND", dir, resp)
	}
	return w.decodeMultistatus(g.reader(resp.Body), fn)
}

// decodeMultistatus reads a PROPFIND answer as it streams in, one <response> at a time
// (constant memory for a listing of any size), calling fn for each entry under the base.
func (w *WebDAV) decodeMultistatus(r io.Reader, fn func(FileInfo) error) error {
	dec := xml.NewDecoder(r)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("mirror: PROPFIND answer: %w", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Space != "DAV:" || se.Name.Local != "response" {
			continue
		}
		var resp davResponse
		if err := dec.DecodeElement(&resp, &se); err != nil {
			return fmt.Errorf("mirror: PROPFIND answer: %w", err)
		}
		if fi, ok := w.responseInfo(resp); ok {
			if err := fn(fi); err != nil {
				return err
			}
		}
	}
}

type davResponse struct {
	Href     string `xml:"DAV: href"`
	Propstat []struct {
		Status string `xml:"DAV: status"`
		Prop   struct {
			Type struct {
				Collection *struct{} `xml:"DAV: collection"`
			} `xml:"DAV: resourcetype"`
			Length   string `xml:"DAV: getcontentlength"`
			Modified string `xml:"DAV: getlastmodified"`
			ETag     string `xml:"DAV: getetag"`
		} `xml:"DAV: prop"`
	} `xml:"DAV: propstat"`
}

// responseInfo turns one response into a FileInfo relative to the repository root.
func (w *WebDAV) responseInfo(r davResponse) (FileInfo, bool) {
	if len(r.Href) > 4096 {
		return FileInfo{}, false
	}
	u, err := url.Parse(strings.TrimSpace(r.Href))
	if err != nil {
		return FileInfo{}, false
	}
	rel, ok := strings.CutPrefix(u.Path, w.base.Path)
	if !ok {
		return FileInfo{}, false
	}
	fi := FileInfo{Name: strings.Trim(rel, "/")}
	for _, ps := range r.Propstat {
		if !strings.Contains(ps.Status, " 200") {
			continue
		}
		if ps.Prop.Type.Collection != nil {
			fi.IsDir = true
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(ps.Prop.Length), 10, 64); err == nil {
			fi.Size = n
		}
		if t, err := http.ParseTime(ps.Prop.Modified); err == nil {
			fi.ModTime = t
		}
		if ps.Prop.ETag != "" {
			fi.ETag = ps.Prop.ETag
		}
	}
	return fi, fi.Name != ""
}

// WalkAll calls fn for every file under dir: one recursive listing where the server allows
// it, else a listing per folder, walkParallel folders at a time (Apache refuses Depth:
// infinity by default, and blobs/sha256 has 256 folders). fn is never called concurrently.
// A missing dir is an empty walk.
func WalkAll(ctx context.Context, r Remote, dir string, fn func(FileInfo) error) error {
	if w, ok := r.(Walker); ok {
		err := w.Walk(ctx, dir, fn)
		if !errors.Is(err, ErrWalkUnsupported) {
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		}
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(walkParallel)
	var walk func(d string) error
	walk = func(d string) error {
		ents, err := r.List(gctx, d)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.IsDir {
				if !g.TryGo(func() error { return walk(e.Name) }) {
					if err := walk(e.Name); err != nil {
						return err
					}
				}
				continue
			}
			mu.Lock()
			err := fn(e)
			mu.Unlock()
			if err != nil {
				return err
			}
		}
		return nil
	}
	g.Go(func() error { return walk(dir) })
	return g.Wait()
}

const walkParallel = 8
