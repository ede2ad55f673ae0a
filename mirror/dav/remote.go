package dav

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/drepo-dev/drepo/manifests"
)

// Reader is what a reader of a repository needs (fetch, verify, ls): byte ranges and sizes.
// Paths are slash-separated and relative to the repository root.
type Reader interface {
	// Open reads length bytes from offset (length < 0: to the end).
	Open(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error)
	// Stat describes name; ErrNotFound if it does not exist.
	Stat(ctx context.Context, name string) (FileInfo, error)
}

// Remote is what sync needs from a repository server: a Reader that can also write.
type Remote interface {
	Reader
	// Put stores exactly size bytes from r at name, creating parent folders. The body is
	// streamed with a Content-Length (chunked uploads fail on common servers).
	Put(ctx context.Context, name string, r io.Reader, size int64) error
	// List describes the entries of folder dir (one level); ErrNotFound if it does not exist.
	List(ctx context.Context, dir string) ([]FileInfo, error)
	// Remove deletes name (a file, or a folder with its content); a missing name is not an error.
	Remove(ctx context.Context, name string) error
}

// Mover renames within the repository, replacing the target: how the index is committed.
type Mover interface {
	Move(ctx context.Context, from, to string) error
}

// Digester asks the server for a file's SHA-256 (RFC 9530 Repr-Digest) without
// downloading it. ok is false when the server does not offer one.
type Digester interface {
	Digest(ctx context.Context, name string) (sum manifests.Hash, size int64, ok bool, err error)
}

// Walker lists every file under dir in one go (PROPFIND Depth: infinity), calling fn for
// each file. ErrWalkUnsupported when the server refuses; callers then List level by level.
type Walker interface {
	Walk(ctx context.Context, dir string, fn func(FileInfo) error) error
}

// ConditionalPutter stores a small document only if the current one has the given ETag
// (ifMatch), or only if there is none (ifMatch == ""): ErrPrecondition otherwise.
type ConditionalPutter interface {
	PutIf(ctx context.Context, name string, data []byte, ifMatch string) error
}

// FileInfo describes one entry. Name is the path relative to the repository root. List and
// Walk fill Name, Size and IsDir only; Stat fills ModTime and ETag too.
type FileInfo struct {
	Name    string
	Size    int64
	IsDir   bool
	ModTime time.Time
	ETag    string
}

// Sentinel errors, checked with errors.Is.
var (
	ErrNotFound        = errors.New("not found")
	ErrPrecondition    = errors.New("precondition failed")
	ErrWalkUnsupported = errors.New("recursive listing not supported")
	ErrUnauthorized    = errors.New("unauthorized")
	ErrStalled         = errors.New("transfer stalled")
)
