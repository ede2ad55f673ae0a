package manifests

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
)

// hashBufSize is the read size; hashBufs buffers per file in flight bound memory to
// hashBufs*hashBufSize per file being hashed, whatever its size.
const (
	hashBufSize = 1 << 20
	hashBufs    = 4
)

// Sums are the hashes of one stream: the whole-stream SHA-256 (the blob's name) and the
// SHA-256 of each chunk.
type Sums struct {
	Size   int64
	SHA256 Hash
	Chunks []Hash
}

// HashFile hashes the file at path in one read pass. It fails if the file's size changes
// while it is read, so a file being copied into the source is never published half-written.
// onRead, if not nil, is told how many bytes each read brought (for progress bars).
func HashFile(ctx context.Context, path string, chunkSize int64, onRead func(int)) (Sums, error) {
	f, err := os.Open(path)
	if err != nil {
		return Sums{}, fmt.Errorf("manifests: hash: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Sums{}, fmt.Errorf("manifests: hash: %w", err)
	}
	var r io.Reader = f
	if onRead != nil {
		r = countingReader{f, onRead}
	}
	s, err := HashReader(ctx, r, fi.Size(), chunkSize)
	if err != nil {
		return Sums{}, fmt.Errorf("manifests: hash %s: %w", path, err)
	}
	if s.Size != fi.Size() {
		return Sums{}, fmt.Errorf("manifests: hash %s: size changed from %d to %d while reading: %w", path, fi.Size(), s.Size, ErrInvalid)
	}
	return s, nil
}

// HashReader reads r to its end and returns its Sums. sizeHint (or -1) picks the strategy:
// a stream of at most one chunk is hashed once (its chunk hash is its whole hash); a longer
// one is hashed twice at the same time on two goroutines, so the whole pass costs about one
// SHA-256 of the data in wall time, in constant memory.
func HashReader(ctx context.Context, r io.Reader, sizeHint, chunkSize int64) (Sums, error) {
	if chunkSize < MinChunkSize || chunkSize > MaxChunkSize {
		return Sums{}, fmt.Errorf("manifests: chunk size %d outside %d..%d: %w", chunkSize, MinChunkSize, MaxChunkSize, ErrInvalid)
	}
	if sizeHint >= 0 && sizeHint <= chunkSize {
		return hashSmall(ctx, r, sizeHint, chunkSize)
	}
	return hashPipelined(ctx, r, chunkSize)
}

// bufPool holds read buffers of hashBufSize: a sync of many files must not allocate (and
// zero) a fresh megabyte per file.
var bufPool = sync.Pool{New: func() any { b := make([]byte, hashBufSize); return &b }}

// hashSmall hashes a stream expected to fit one chunk; if it turns out longer it falls back
// to chunking inline. Small files read into a buffer of their own size (plus one byte, to
// see the end in one read).
func hashSmall(ctx context.Context, r io.Reader, sizeHint, chunkSize int64) (Sums, error) {
	c := newChunker(chunkSize)
	whole := sha256.New()
	var buf []byte
	if sizeHint+1 < hashBufSize/4 {
		buf = make([]byte, sizeHint+1)
	} else {
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		buf = *bp
	}
	for {
		if err := ctx.Err(); err != nil {
			return Sums{}, err
		}
		n, err := io.ReadFull(r, buf)
		whole.Write(buf[:n])
		c.write(buf[:n])
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return Sums{}, err
		}
	}
	var s Sums
	copy(s.SHA256[:], whole.Sum(nil))
	s.Size, s.Chunks = c.finish()
	return s, nil
}

// hashPipelined reads in one goroutine, which also computes the whole-stream hash, and hands
// each buffer to a second goroutine that computes the chunk hashes. A buffer goes back to the
// pool only when the chunk hasher is done with it, and the reader refills a buffer only after
// it finished hashing its previous one, so no buffer is ever written while being hashed.
func hashPipelined(ctx context.Context, r io.Reader, chunkSize int64) (Sums, error) {
	free := make(chan []byte, hashBufs)
	for range hashBufs {
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		free <- *bp
	}
	work := make(chan []byte, hashBufs)
	chunked := make(chan struct{})
	c := newChunker(chunkSize)
	go func() {
		defer close(chunked)
		for b := range work {
			c.write(b)
			free <- b[:cap(b)]
		}
	}()

	whole := sha256.New()
	var rerr error
	for {
		if rerr = ctx.Err(); rerr != nil {
			break
		}
		b := <-free
		n, err := io.ReadFull(r, b)
		if n > 0 {
			work <- b[:n]
			whole.Write(b[:n])
		} else {
			free <- b
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			rerr = err
			break
		}
	}
	close(work)
	<-chunked
	if rerr != nil {
		return Sums{}, rerr
	}
	var s Sums
	copy(s.SHA256[:], whole.Sum(nil))
	s.Size, s.Chunks = c.finish()
	return s, nil
}

// chunker computes chunk hashes of a stream fed in arbitrary pieces.
type chunker struct {
	size   int64
	h      hash.Hash
	inCur  int64
	total  int64
	chunks []Hash
}

func newChunker(size int64) *chunker { return &chunker{size: size, h: sha256.New()} }

func (c *chunker) write(p []byte) {
	for len(p) > 0 {
		n := min(int64(len(p)), c.size-c.inCur)
		c.h.Write(p[:n])
		c.inCur += n
		c.total += n
		p = p[n:]
		if c.inCur == c.size {
			c.cut()
		}
	}
}

func (c *chunker) cut() {
	var h Hash
	copy(h[:], c.h.Sum(nil))
	c.chunks = append(c.chunks, h)
	c.h.Reset()
	c.inCur = 0
}

func (c *chunker) finish() (int64, []Hash) {
	if c.inCur > 0 {
		c.cut()
	}
	if c.chunks == nil {
		c.chunks = []Hash{}
	}
	return c.total, c.chunks
}

type countingReader struct {
	r  io.Reader
	on func(int)
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.on(n)
	return n, err
}
