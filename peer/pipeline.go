package peer

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/drepo-dev/drepo/manifests"
	"github.com/drepo-dev/drepo/mirror/dav"
)

// The download pipeline: the network reader fills buffers (pieces of at most pieceSize,
// never across a chunk's end) and hands each to two stages that run side by side on
// their own goroutines: the chunk hasher and the writer. The writer marks a chunk
// verified once its bytes are written and the chunk hasher found them right, so the
// network, the disk and the hash overlap instead of taking turns:
// a fetch costs about its slowest part, not their sum. A fixed set of buffers bounds the
// memory (pipelineDepth × pieceSize) and makes a slow stage hold the reader back.
const (
	pieceSize     = 1 << 20
	pipelineDepth = 12
)

// piece is a run of bytes of one chunk, in a buffer of the pipeline's.
type piece struct {
	buf        []byte // the bytes; buf[:cap] is the pipeline's buffer
	off        int64  // where they go in the blob
	chunk      int
	start, end bool         // first and last piece of the chunk
	refs       atomic.Int32 // stages still using buf
}

// verdict is the chunk hasher's word on one chunk.
type verdict struct {
	chunk int
	err   error
}

type pipeline struct {
	p        *Partial
	chunks   []manifests.Hash
	cancel   func(error) // stops the network read, with the failure as its cause
	verified func(int64) // told the bytes of each chunk the pipeline verified

	free     chan []byte
	hashIn   chan *piece
	writeIn  chan *piece
	verdicts chan verdict
	stages   sync.WaitGroup

	failOnce sync.Once
	failed   chan struct{}
	err      error
}

// newPipeline starts the stages. cancel stops the network read when a stage fails.
func newPipeline(p *Partial, chunks []manifests.Hash, cancel func(error), verified func(int64)) *pipeline {
	pl := &pipeline{
		p: p, chunks: chunks, cancel: cancel, verified: verified,
		free:     make(chan []byte, pipelineDepth),
		hashIn:   make(chan *piece, pipelineDepth),
		writeIn:  make(chan *piece, pipelineDepth),
		verdicts: make(chan verdict, pipelineDepth),
		failed:   make(chan struct{}),
	}
	for range pipelineDepth {
		pl.free <- alignedBuf(pieceSize)
	}
	pl.stages.Add(2)
	go pl.hashStage()
	go pl.writeStage()
	return pl
}

// buffer waits for a free buffer; nil once a stage failed or ctx ended.
func (pl *pipeline) buffer(ctx context.Context) []byte {
	select {
	case b := <-pl.free:
		return b
	case <-pl.failed:
		return nil
	case <-ctx.Done():
		return nil
	}
}

// release gives a buffer back unused.
func (pl *pipeline) release(b []byte) { pl.free <- b[:cap(b)] }

// send hands a full piece to every stage.
func (pl *pipeline) send(pc *piece) {
	pc.refs.Store(2)
	pl.hashIn <- pc
	pl.writeIn <- pc
}

// done is a stage's end with a piece; the last one frees its buffer.
func (pl *pipeline) done(pc *piece) {
	if pc.refs.Add(-1) == 0 {
		pl.free <- pc.buf[:cap(pc.buf)]
	}
}

// fail records the first failure and stops the reader.
func (pl *pipeline) fail(err error) {
	pl.failOnce.Do(func() {
		pl.err = err
		close(pl.failed)
		pl.cancel(err)
	})
}

// close ends the stages once they took every piece sent, and returns the first failure.
func (pl *pipeline) close() error {
	close(pl.hashIn)
	close(pl.writeIn)
	pl.stages.Wait()
	select {
	case <-pl.failed:
		return pl.err
	default:
		return nil
	}
}

// hashStage hashes each chunk and says whether it matches the manifest.
func (pl *pipeline) hashStage() {
	defer pl.stages.Done()
	h := sha256.New()
	for pc := range pl.hashIn {
		if pc.start {
			h.Reset()
		}
		h.Write(pc.buf)
		if pc.end {
			var err error
			if got := manifests.Hash(h.Sum(nil)); got != pl.chunks[pc.chunk] {
				err = fmt.Errorf("chunk %d hashed to %s, the manifest says %s: %w", pc.chunk, got, pl.chunks[pc.chunk], dav.ErrCorrupt)
			}
			pl.verdicts <- verdict{chunk: pc.chunk, err: err}
		}
		pl.done(pc)
	}
}

// writeStage writes each piece where it belongs and, at a chunk's end, marks the chunk
// verified when the hasher found it right: its bytes are in the file by then.
func (pl *pipeline) writeStage() {
	defer pl.stages.Done()
	for pc := range pl.writeIn {
		if !pl.stopped() {
			if err := pl.p.writePiece(pc.buf, pc.off); err != nil {
				pl.fail(fmt.Errorf("peer: writing %s: %w", pl.p.path, err))
			}
		}
		if pc.end {
			v := <-pl.verdicts // the hasher takes the pieces in the same order
			switch {
			case pl.stopped():
			case v.err != nil:
				pl.fail(v.err)
			default:
				if err := pl.p.Verified(v.chunk); err != nil {
					pl.fail(err)
				} else if pl.verified != nil {
					pl.verified(pl.p.chunkLen(v.chunk))
				}
			}
		}
		pl.done(pc)
	}
}

func (pl *pipeline) stopped() bool {
	select {
	case <-pl.failed:
		return true
	default:
		return false
	}
}
