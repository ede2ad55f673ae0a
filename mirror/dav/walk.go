package dav

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
)

// propfindList asks for what a listing needs: kind and size. Fewer properties make a
// smaller answer to parse (10,000 entries on Apache: 40% fewer bytes).
const propfindList = `<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/></D:prop></D:propfind>`

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
	resp, err := w.request(gctx, "PROPFIND", d, strings.NewReader(propfindList), int64(len(propfindList)),
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
	return w.decodeMultistatus(g.reader(resp.Body), dir, fn)
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
