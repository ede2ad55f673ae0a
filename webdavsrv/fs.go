package webdavsrv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/net/webdav"
)

// internalPrefix starts the name of every file the server keeps for itself (upload
// temporaries). Such names are invisible to clients and refused in requests.
const internalPrefix = ".drepo-"

// rootFS is a webdav.FileSystem confined to one folder by os.Root.
type rootFS struct {
	root *os.Root
}

var _ webdav.FileSystem = (*rootFS)(nil)

// rel maps a WebDAV name ("/a/b") to a name inside the root ("a/b", or "." for the root),
// refusing internal names. The handler already cleaned the path; os.Root refuses anything
// that still resolves outside, symlinks included.
func rel(name string) (string, error) {
	p := strings.TrimPrefix(path.Clean("/"+name), "/")
	if p == "" {
		return ".", nil
	}
	for _, e := range strings.Split(p, "/") {
		if strings.HasPrefix(e, internalPrefix) {
			return "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
	}
	return p, nil
}

// notFound turns "escapes the root" errors into ErrNotExist, so a symlink pointing out of
// the root looks exactly like a missing file.
func notFound(err error) error {
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist) {
		return err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes") {
		return &fs.PathError{Op: pe.Op, Path: pe.Path, Err: fs.ErrNotExist}
	}
	var le *os.LinkError
	if errors.As(err, &le) && strings.Contains(le.Err.Error(), "escapes") {
		return &fs.PathError{Op: le.Op, Path: le.Old, Err: fs.ErrNotExist}
	}
	return err
}

func (r *rootFS) Mkdir(ctx context.Context, name string, perm os.FileMode) error {
	p, err := rel(name)
	if err != nil {
		return err
	}
	return notFound(r.root.Mkdir(p, 0o755))
}

// RemoveAll removes name, except the one removal MOVE and COPY make before replacing a file
// with a file: that one is skipped, and the rename that follows replaces the file atomically,
// so readers never see it missing (x/net/webdav deletes first, then renames).
func (r *rootFS) RemoveAll(ctx context.Context, name string) error {
	p, err := rel(name)
	if err != nil {
		return err
	}
	if p == "." {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrPermission}
	}
	if rq := requestFrom(ctx); rq != nil && rq.replaceDst == p && r.isFile(rq.replaceSrc) && r.isFile(p) {
		return nil
	}
	return notFound(r.root.RemoveAll(p))
}

func (r *rootFS) isFile(p string) bool {
	if p == "" {
		return false
	}
	fi, err := r.root.Lstat(p)
	return err == nil && fi.Mode().IsRegular()
}

func (r *rootFS) Rename(ctx context.Context, oldName, newName string) error {
	o, err := rel(oldName)
	if err != nil {
		return err
	}
	n, err := rel(newName)
	if err != nil {
		return err
	}
	if o == "." || n == "." {
		return &fs.PathError{Op: "rename", Path: oldName, Err: fs.ErrPermission}
	}
	if err := r.root.Rename(o, n); err != nil {
		return notFound(err)
	}
	return syncDir(r.root, path.Dir(n))
}

func (r *rootFS) Stat(ctx context.Context, name string) (os.FileInfo, error) {
	p, err := rel(name)
	if err != nil {
		return nil, err
	}
	fi, err := r.root.Stat(p)
	if err != nil {
		return nil, notFound(err)
	}
	return fileInfo{fi}, nil
}

// OpenFile opens name. A write that truncates or creates goes to an atomic upload; any
// other open is read-only (PROPPATCH opens O_RDWR only to reach the dead properties).
func (r *rootFS) OpenFile(ctx context.Context, name string, flag int, perm os.FileMode) (webdav.File, error) {
	p, err := rel(name)
	if err != nil {
		return nil, err
	}
	if flag&(os.O_TRUNC|os.O_CREATE) != 0 && flag&(os.O_WRONLY|os.O_RDWR) != 0 {
		if p == "." {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
		}
		return newUpload(ctx, r.root, p)
	}
	f, err := r.root.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		return nil, notFound(err)
	}
	return &file{File: f, root: r.root, name: p}, nil
}

// file is an open file or folder: reads pass through; Readdir hides internal names and
// symlinks that lead out of the root; dead properties live in extended attributes.
type file struct {
	*os.File
	root *os.Root
	name string
}

func (f *file) Write([]byte) (int, error) {
	return 0, &fs.PathError{Op: "write", Path: f.name, Err: fs.ErrPermission}
}

func (f *file) Stat() (os.FileInfo, error) {
	fi, err := f.File.Stat()
	if err != nil {
		return nil, err
	}
	return fileInfo{fi}, nil
}

func (f *file) Readdir(count int) ([]os.FileInfo, error) {
	infos, err := f.File.Readdir(count)
	out := infos[:0]
	for _, fi := range infos {
		if strings.HasPrefix(fi.Name(), internalPrefix) {
			continue
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, serr := f.root.Stat(path.Join(f.name, fi.Name()))
			if serr != nil {
				continue // leads out of the root, or nowhere
			}
			fi = target
		}
		out = append(out, fileInfo{fi})
	}
	return out, err
}

func (f *file) DeadProps() (map[xmlName]webdav.Property, error) { return readProps(f.File) }

func (f *file) Patch(p []webdav.Proppatch) ([]webdav.Propstat, error) { return patchProps(f.File, p) }

// fileInfo gives every file the ETag Apache's default would: modification time and size.
type fileInfo struct{ os.FileInfo }

func (fi fileInfo) ETag(context.Context) (string, error) { return etag(fi.FileInfo), nil }

func etag(fi os.FileInfo) string {
	return fmt.Sprintf(`"%x%x"`, fi.ModTime().UnixNano(), fi.Size())
}

// syncDir fsyncs a folder inside the root, so a rename in it survives a crash.
func syncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
