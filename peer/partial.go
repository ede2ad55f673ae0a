package peer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/drepo-dev/drepo/manifests"
)

// Partial is a blob being fetched: a sparse file in partial/ and its state. Bytes are
// written where they belong; a chunk counts only once Verified marked it, and the state on
// disk names only chunks whose bytes were made durable first (Persist). Finish moves the
// file under its final name only after the whole file hashed to its name.
type Partial struct {
	s    *Store
	h    manifests.Hash
	f    *os.File
	path string
	// direct writes whole aligned pieces past the page cache (O_DIRECT), nil where the
	// filesystem refuses it; see writePiece. Two transfers of one blob may write at once.
	direct  atomic.Pointer[os.File]
	refused atomic.Pointer[os.File] // a direct file the filesystem refused writes to

	persistMu  sync.Mutex // serialises Persist
	mu         sync.Mutex
	st         PartialState
	pending    int            // chunks marked since the last Persist
	announced  bool           // a state file exists, so this device's peer server offers the blob
	persisting bool           // a background Persist runs
	persistErr error          // the last background Persist's failure
	bg         sync.WaitGroup // the background Persist
}

// OpenPartial opens the partial blob h, resuming its verified chunks when a state of the same
// size and chunk size is there; otherwise it starts afresh.
func (s *Store) OpenPartial(h manifests.Hash, size, chunkSize int64) (*Partial, error) {
	st, err := s.partialState(h)
	fresh := err != nil || st.Size != size || st.ChunkSize != chunkSize
	if fresh {
		if st, err = NewPartialState(size, chunkSize); err != nil {
			return nil, err
		}
	}
	path := s.partialPath(h)
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		// not a file a fetch made (a symlink planted there): never written through
		_ = os.Remove(path)
		fresh = true
		if st, err = NewPartialState(size, chunkSize); err != nil {
			return nil, err
		}
	}
	f, err := openNoFollow(path, os.O_RDWR|os.O_CREATE, storeFileMode)
	if err != nil {
		return nil, fmt.Errorf("peer: partial %s: %w", h, err)
	}
	// held while the fetch works on it: the peer server announces a partial only then
	// (Store.fetching), and the lock goes with a killed process
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("peer: partial %s: lock: %w", h, err)
	}
	if fi, err := f.Stat(); err == nil && fi.Size() != size {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, fmt.Errorf("peer: partial %s: %w", h, err)
		}
	}
	p := &Partial{s: s, h: h, f: f, path: path, st: st, announced: !fresh}
	if chunkSize%directAlign == 0 {
		if d, err := openNoFollow(path, os.O_WRONLY|unix.O_DIRECT, 0); err == nil {
			p.direct.Store(d)
		}
	}
	// announced at once: this device's peer server offers the blob from the first byte, so
	// devices that start together can agree on one of them to fetch it (PeerGroup ranks a
	// holder of nothing yet only if its instance id is lower: no two wait on each other)
	if err := p.Announce(); err != nil {
		p.closeFiles()
		return nil, err
	}
	return p, nil
}

// State returns a copy of the state.
func (p *Partial) State() PartialState {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.st
	c.bits = append([]byte(nil), p.st.bits...)
	return c
}

// WriteAt writes bytes of a chunk not yet verified, and starts their writeback every
// writebackWindow bytes (sync_file_range, without waiting): the periodic fsync of Persist,
// and the last one, then find little left to do, and writes do not stall behind them.
func (p *Partial) WriteAt(b []byte, off int64) (int, error) {
	n, err := p.f.WriteAt(b, off)
	if end := off + int64(n); end/writebackWindow != off/writebackWindow {
		start := (off / writebackWindow) * writebackWindow
		_ = unix.SyncFileRange(int(p.f.Fd()), start, end-start, unix.SYNC_FILE_RANGE_WRITE)
	}
	return n, err
}

// writebackWindow: how much is written before its writeback is started.
const writebackWindow = 8 << 20

// writePiece writes a piece of a downloaded chunk. Whole aligned pieces go past the page
// cache (O_DIRECT): a device fetches images of GBs that it reads once, so caching them
// would only push out what the device runs, and writing them through costs the kernel a
// fraction of buffered writes (no page cache to fill and write back later: measured 2 GiB
// in 0.2 s of system time against 3–9 s). The file's unaligned tail, and every write on a
// filesystem that refuses O_DIRECT, goes through WriteAt. Only the pipeline's writer
// calls it.
func (p *Partial) writePiece(b []byte, off int64) error {
	if d := p.direct.Load(); d != nil && aligned(b, off) {
		_, err := d.WriteAt(b, off)
		if !errors.Is(err, unix.EINVAL) {
			return err
		}
		// the filesystem opened it but refuses the writes: buffered from now on (the file
		// is closed with the partial: another transfer may be writing through it)
		p.direct.CompareAndSwap(d, nil)
		p.refused.Store(d)
	}
	_, err := p.WriteAt(b, off)
	return err
}

// directAlign is the alignment O_DIRECT needs of offsets, lengths and buffers (the largest
// logical block size in use).
const directAlign = 4096

func aligned(b []byte, off int64) bool {
	return len(b) > 0 && off%directAlign == 0 && len(b)%directAlign == 0 &&
		uintptr(unsafe.Pointer(&b[0]))%directAlign == 0
}

// alignedBuf returns n bytes that start on a directAlign boundary (Go does not move heap
// memory).
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(&b[0]))%directAlign)) % directAlign
	return b[skip : skip+n : skip+n]
}

// has reports whether chunk i is verified.
func (p *Partial) has(i int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st.Has(i)
}

// chunkLen is the length of chunk i.
func (p *Partial) chunkLen(i int) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, n := p.st.ChunkRange(i)
	return n
}

// ReadAt reads from the partial file (verified chunks only are meaningful).
func (p *Partial) ReadAt(b []byte, off int64) (int, error) { return p.f.ReadAt(b, off) }

// Verified marks chunk i verified and has the state persisted in the background at once:
// one persister runs at a time and goes again while chunks were verified during its run,
// so the download never waits for the disk and the state trails it by one fsync.
func (p *Partial) Verified(i int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.st.Set(i)
	p.pending++
	if !p.persisting {
		p.persisting = true
		p.bg.Add(1)
		go p.persistLoop()
	}
	return p.persistErr
}

// persistLoop persists until no chunk is pending. The state is how this device's peer
// server (another process) learns of new chunks, so every hop of a LAN that passes a blob
// on while receiving it waits for it: a state written every 100 ms made each hop of a
// 1 MiB-chunk chain 0.36 s where the wire needs 0.08 s. With O_DIRECT writes the fsync
// before it has little left to do.
func (p *Partial) persistLoop() {
	defer p.bg.Done()
	for {
		err := p.Persist()
		p.mu.Lock()
		if err != nil {
			p.persistErr = err
		}
		if p.pending == 0 || err != nil {
			p.persisting = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

// Announce writes the state of a fresh partial blob at once, so this device's peer server
// offers it from the first byte.
func (p *Partial) Announce() error {
	p.mu.Lock()
	done := p.announced
	p.announced = true
	p.mu.Unlock()
	if done {
		return nil
	}
	return p.Persist()
}

// Persist records the chunks verified so far: it takes their list first, then makes the
// written bytes durable, then writes the list (atomically), so the state never names a
// chunk whose bytes might not be on disk.
func (p *Partial) Persist() error {
	// one at a time, each taking its snapshot after the last one was written: a slower
	// older write can never land after a newer one and make the state go back
	p.persistMu.Lock()
	defer p.persistMu.Unlock()
	p.mu.Lock()
	b := p.st.Encode()
	p.pending = 0
	p.announced = true
	p.mu.Unlock()
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("peer: partial %s: fsync: %w", p.h, err)
	}
	return manifests.WriteFileAtomic(p.path+".state", b, storeFileMode)
}

// Close persists what is verified and closes the file (the partial stays for a resume).
func (p *Partial) Close() error {
	p.bg.Wait()
	err := p.Persist()
	if cerr := p.closeFiles(); err == nil {
		err = cerr
	}
	return err
}

// closeFiles closes the partial's files.
func (p *Partial) closeFiles() error {
	if d := p.direct.Swap(nil); d != nil {
		d.Close()
	}
	if d := p.refused.Swap(nil); d != nil {
		d.Close()
	}
	return p.f.Close()
}

// Finish checks that every chunk is verified, then moves the file under its final name and
// drops its state. The whole file is not hashed again: every chunk hashed to the signed
// manifest's chunk hash, and the manifest names the file (README: "Verify chunks, not the
// file twice").
func (p *Partial) Finish() error {
	p.bg.Wait()
	st := p.State()
	if !st.Complete() {
		return fmt.Errorf("peer: blob %s: %d of %d chunks verified", p.h, st.Count(), st.Chunks())
	}
	if err := p.f.Chmod(blobMode); err != nil {
		return fmt.Errorf("peer: blob %s: %w", p.h, err)
	}
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("peer: blob %s: fsync: %w", p.h, err)
	}
	if err := p.closeFiles(); err != nil {
		return err
	}
	if err := os.Rename(p.path, p.s.BlobPath(p.h)); err != nil {
		return fmt.Errorf("peer: blob %s: %w", p.h, err)
	}
	if err := p.s.markVerified(p.h); err != nil {
		return err
	}
	if err := manifests.SyncDir(filepath.Dir(p.s.BlobPath(p.h))); err != nil {
		return err
	}
	if err := os.Remove(p.path + ".state"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
