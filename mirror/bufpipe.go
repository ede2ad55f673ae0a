package mirror

import (
	"io"
	"sync"
)

// bufPipe is an io.Pipe with a bounded buffer: the writer copies each write into the buffer
// and goes on (until bufPipeDepth writes are waiting), so one reader feeding several
// consumers (hashers, uploads) is not paced write-by-write by the slowest. A reader that gave
// up (CloseRead) turns further writes into no-ops, so one failed upload cannot stall the
// others. Buffers go back to the writer through a free list once read: a 2 GiB upload made
// 2 GiB of garbage before, and under load the collector fell behind (78 MiB RSS).
type bufPipe struct {
	ch       chan []byte
	free     chan []byte
	cur      []byte
	curBuf   []byte // the buffer cur points into, returned when cur is used up
	mu       sync.Mutex
	closeErr error
	done     chan struct{}
	once     sync.Once
}

const bufPipeDepth = 8 // with 1 MiB reads: at most 8 MiB queued per consumer

func newBufPipe() *bufPipe {
	return &bufPipe{ch: make(chan []byte, bufPipeDepth), free: make(chan []byte, bufPipeDepth+1), done: make(chan struct{})}
}

// Write queues a copy of p. It blocks while the queue is full, and returns at once after
// CloseRead.
func (b *bufPipe) Write(p []byte) (int, error) {
	var c []byte
	select {
	case c = <-b.free:
	default:
	}
	c = append(c[:0], p...)
	select {
	case b.ch <- c:
		return len(p), nil
	case <-b.done:
		return len(p), nil // the reader is gone; its consumer already failed
	}
}

// CloseWrite ends the stream; the reader sees err (io.EOF if nil) after the queued data.
func (b *bufPipe) CloseWrite(err error) {
	if err == nil {
		err = io.EOF
	}
	b.mu.Lock()
	b.closeErr = err
	b.mu.Unlock()
	close(b.ch)
}

func (b *bufPipe) Read(p []byte) (int, error) {
	for len(b.cur) == 0 {
		if b.curBuf != nil {
			select {
			case b.free <- b.curBuf:
			default:
			}
			b.curBuf = nil
		}
		c, ok := <-b.ch
		if !ok {
			b.mu.Lock()
			defer b.mu.Unlock()
			return 0, b.closeErr
		}
		b.cur, b.curBuf = c, c
	}
	n := copy(p, b.cur)
	b.cur = b.cur[n:]
	return n, nil
}

// CloseRead says the reader stops; pending and later writes are dropped.
func (b *bufPipe) CloseRead() {
	b.once.Do(func() { close(b.done) })
}
