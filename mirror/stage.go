package mirror

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/drepo-dev/drepo/mirror/dav"

	"golang.org/x/sync/errgroup"

	"github.com/drepo-dev/drepo/manifests"
)

// StageMin is the size from which a new source file is uploaded while it is hashed: read
// once, its bytes feed the two hashers and one upload to tmp/ per repository, so a first
// sync of a large file costs about max(hash, upload) instead of hash + upload. Smaller files
// are hashed first, which lets sync skip uploading those a repository already holds.
const StageMin = 64 << 20

// stager hashes large unknown files while uploading them to every repository's tmp/. The
// repositories' leases are taken when the first such file turns up, not before: a sync that
// finds none (a no-op, or small files only) takes no lease early.
type stager struct {
	candidates []*pusher // repositories that could take staged uploads
	cache      *HashCache
	onRead     func(int)
	ctx        context.Context

	once    sync.Once
	pushers []*pusher // those whose lease was taken
}

// ready takes the leases once (concurrent callers wait for the first), every repository at
// the same time: a hung one holds the others for its small-request budget at most.
func (s *stager) ready() []*pusher {
	s.once.Do(func() {
		ok := make([]bool, len(s.candidates))
		var wg sync.WaitGroup
		for i, p := range s.candidates {
			wg.Go(func() {
				if err := p.begin(s.ctx); err != nil {
					p.res.Status, p.res.Error = StatusFailed, err.Error()
					return
				}
				ok[i] = true
			})
		}
		wg.Wait()
		for i, p := range s.candidates {
			if ok[i] {
				s.pushers = append(s.pushers, p)
			}
		}
	})
	return s.pushers
}

// hash is a manifests.BuildOptions.Hash.
func (s *stager) hash(ctx context.Context, path string, fi fs.FileInfo, chunkSize int64) (manifests.Sums, error) {
	if fi.Size() < StageMin || len(s.candidates) == 0 || s.cache.known(path, fi, chunkSize) {
		return s.cache.Hash(s.onRead)(ctx, path, fi, chunkSize)
	}
	pushers := s.ready()
	if len(pushers) == 0 {
		return s.cache.Hash(s.onRead)(ctx, path, fi, chunkSize)
	}
	f, err := os.Open(path)
	if err != nil {
		return manifests.Sums{}, fmt.Errorf("mirror: %w", err)
	}
	defer f.Close()
	size := fi.Size()
	type upload struct {
		p    *pusher
		pipe *bufPipe
		tmp  string
	}
	ups := make([]upload, len(pushers))
	var writers []io.Writer
	var g errgroup.Group
	for i, p := range pushers {
		ups[i] = upload{p: p, pipe: newBufPipe(), tmp: dav.TmpName("stage")}
		writers = append(writers, ups[i].pipe)
		u := ups[i]
		g.Go(func() error {
			// bandwidth limit only: the bytes are already counted by the hash read
			err := p.remote.Put(ctx, u.tmp, p.limit(ctx, u.pipe), size)
			u.pipe.CloseRead()
			if err != nil {
				p.opt.Log.Warn("upload while hashing failed; the blob is uploaded again later", "repository", p.repo.Name, "file", path, "err", err)
				_ = p.remote.Remove(context.WithoutCancel(ctx), u.tmp)
				return nil
			}
			p.mu.Lock()
			p.staged[u.tmp] = manifests.Hash{} // named once the hash is known
			p.mu.Unlock()
			return nil
		})
	}
	var r io.Reader = io.TeeReader(f, io.MultiWriter(writers...))
	if s.onRead != nil {
		r = countingRead{r, s.onRead}
	}
	sums, herr := manifests.HashReader(ctx, r, size, chunkSize)
	if herr == nil && sums.Size != size {
		herr = fmt.Errorf("mirror: %s: size changed from %d to %d while reading: %w", path, size, sums.Size, manifests.ErrInvalid)
	}
	for _, u := range ups {
		u.pipe.CloseWrite(herr)
	}
	_ = g.Wait()
	for _, u := range ups {
		u.p.mu.Lock()
		_, ok := u.p.staged[u.tmp]
		if herr != nil {
			delete(u.p.staged, u.tmp)
		} else if ok {
			u.p.staged[u.tmp] = sums.SHA256
		}
		u.p.mu.Unlock()
		if herr != nil && ok {
			_ = u.p.remote.Remove(context.WithoutCancel(ctx), u.tmp)
		}
	}
	if herr != nil {
		return manifests.Sums{}, herr
	}
	s.cache.store(path, fi, chunkSize, sums)
	return sums, nil
}

type countingRead struct {
	r  io.Reader
	on func(int)
}

func (c countingRead) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.on(n)
	return n, err
}
