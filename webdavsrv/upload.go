package webdavsrv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sync"

	"golang.org/x/net/webdav"
	"golang.org/x/sys/unix"
)

// upload is a file being written by PUT or COPY. Bytes go to a hidden temporary file in the
// target's folder; Close renames it over the target only if the whole request body arrived
// and every write succeeded, otherwise it deletes it. The old file stays untouched until the
// rename, so an aborted upload never leaves a truncated file under the real name.
type upload struct {
	root    *os.Root
	tmp     *os.File
	tmpName string
	target  string
	rq      *request
	werr    error
	closed  bool
	written int64 // bytes written so far
	flushed int64 // bytes handed to writeback so far
}

// writebackWindow: every this many bytes the upload starts writeback of the window just
// written and waits for the one two windows back. The final fsync then has little left to do
// and dirty pages stay bounded, so a durable upload costs about the disk's time, not
// network time plus disk time.
const writebackWindow = 8 << 20

// uploadBuf is the copy size for ReadFrom: large writes keep syscalls per GiB low. Buffers
// come from a pool: a sync of many small files must not allocate (and zero) a megabyte per
// request.
const uploadBuf = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, uploadBuf); return &b }}

func newUpload(ctx context.Context, root *os.Root, target string) (*upload, error) {
	if fi, err := root.Stat(target); err == nil && fi.IsDir() {
		return nil, &fs.PathError{Op: "put", Path: target, Err: fs.ErrExist}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, notFound(err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmpName := path.Join(path.Dir(target), internalPrefix+"tmp-"+hex.EncodeToString(rnd[:]))
	f, err := root.OpenFile(tmpName, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, notFound(err)
	}
	return &upload{root: root, tmp: f, tmpName: tmpName, target: target, rq: requestFrom(ctx)}, nil
}

var _ webdav.File = (*upload)(nil)

func (u *upload) Write(p []byte) (int, error) {
	n, err := u.tmp.Write(p)
	if err != nil && u.werr == nil {
		u.werr = err
	}
	u.written += int64(n)
	for u.written-u.flushed >= writebackWindow {
		fd := int(u.tmp.Fd())
		_ = unix.SyncFileRange(fd, u.flushed, writebackWindow, unix.SYNC_FILE_RANGE_WRITE)
		if back := u.flushed - 2*writebackWindow; back >= 0 {
			_ = unix.SyncFileRange(fd, back, writebackWindow,
				unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
		}
		u.flushed += writebackWindow
	}
	return n, err
}

// ReadFrom copies with a large buffer (io.Copy would use 32 KiB writes).
func (u *upload) ReadFrom(r io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := u.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (u *upload) Read([]byte) (int, error) { return 0, fmt.Errorf("webdavsrv: read of an upload") }
func (u *upload) Seek(int64, int) (int64, error) {
	return 0, fmt.Errorf("webdavsrv: seek in an upload")
}
func (u *upload) Readdir(int) ([]os.FileInfo, error) {
	return nil, fmt.Errorf("webdavsrv: not a folder")
}

func (u *upload) Stat() (os.FileInfo, error) {
	fi, err := u.tmp.Stat()
	if err != nil {
		return nil, err
	}
	return renamedInfo{fileInfo{fi}, path.Base(u.target)}, nil
}

func (u *upload) DeadProps() (map[xmlName]webdav.Property, error) { return readProps(u.tmp) }
func (u *upload) Patch(p []webdav.Proppatch) ([]webdav.Propstat, error) {
	return patchProps(u.tmp, p)
}

// Close commits or discards the upload (see upload).
func (u *upload) Close() error {
	if u.closed {
		return nil
	}
	u.closed = true
	complete := u.werr == nil && (u.rq == nil || u.rq.body == nil || u.rq.body.complete())
	if !complete {
		u.discard()
		if u.werr != nil {
			return fmt.Errorf("webdavsrv: upload %s: %w", u.target, u.werr)
		}
		return fmt.Errorf("webdavsrv: upload %s: request body incomplete, discarded", u.target)
	}
	if err := u.tmp.Sync(); err != nil {
		u.discard()
		return fmt.Errorf("webdavsrv: upload %s: fsync: %w", u.target, err)
	}
	if err := u.tmp.Close(); err != nil {
		_ = u.root.Remove(u.tmpName)
		return fmt.Errorf("webdavsrv: upload %s: %w", u.target, err)
	}
	if err := u.commit(); err != nil {
		_ = u.root.Remove(u.tmpName)
		return fmt.Errorf("webdavsrv: upload %s: %w", u.target, err)
	}
	return syncDir(u.root, path.Dir(u.target))
}

// errPrecondition: a conditional PUT's precondition no longer held when its body was in.
var errPrecondition = errors.New("precondition failed")

// commit renames the finished upload over its target; for a conditional PUT, under the
// server's lock and only if the preconditions still hold.
func (u *upload) commit() error {
	if u.rq != nil && u.rq.commitMu != nil {
		u.rq.commitMu.Lock()
		defer u.rq.commitMu.Unlock()
		if !u.rq.precondition() {
			u.rq.preconditionFailed = true
			return errPrecondition
		}
	}
	return u.root.Rename(u.tmpName, u.target)
}

func (u *upload) discard() {
	_ = u.tmp.Close()
	_ = u.root.Remove(u.tmpName)
}

// renamedInfo reports the target's name for the temporary file.
type renamedInfo struct {
	fileInfo
	name string
}

func (r renamedInfo) Name() string { return r.name }
