package webdavsrv

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// digester computes a file's SHA-256 once and keeps it in an xattr beside the file, valid
// while size and modification time are unchanged. Files placed by other means than PUT
// are hashed on the first request that wants the digest. Concurrent requests for the same
// file share one computation.
type digester struct {
	mu       sync.Mutex
	inFlight map[string]*digestCall
}

// digestCall is one computation shared by every request that waits for it. It runs on its
// own file handle and context, so the request that started it may go away; it is cancelled
// only when no request waits any more.
type digestCall struct {
	done    chan struct{}
	sum     []byte
	err     error
	waiters int
	cancel  context.CancelFunc
}

// digest returns the SHA-256 of the open regular file f (named name, for sharing work).
func (d *digester) digest(ctx context.Context, f *os.File, name string) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	stamp := fmt.Sprintf("%d:%d:", fi.Size(), fi.ModTime().UnixNano())
	if b, err := getXattr(f, xattrDigest); err == nil && strings.HasPrefix(string(b), stamp) {
		if sum, err := hex.DecodeString(string(b[len(stamp):])); err == nil && len(sum) == sha256.Size {
			return sum, nil
		}
	}
	key := name + "\x00" + stamp
	d.mu.Lock()
	if d.inFlight == nil {
		d.inFlight = map[string]*digestCall{}
	}
	c, ok := d.inFlight[key]
	if ok {
		c.waiters++
	} else {
		own, err := dupFile(f)
		if err != nil {
			d.mu.Unlock()
			return nil, err
		}
		wctx, cancel := context.WithCancel(context.Background())
		c = &digestCall{done: make(chan struct{}), waiters: 1, cancel: cancel}
		d.inFlight[key] = c
		go func() {
			defer own.Close()
			c.sum, c.err = hashAndStore(wctx, own, stamp)
			d.mu.Lock()
			if d.inFlight[key] == c {
				delete(d.inFlight, key)
			}
			d.mu.Unlock()
			cancel()
			close(c.done)
		}()
	}
	d.mu.Unlock()
	select {
	case <-c.done:
		return c.sum, c.err
	case <-ctx.Done():
		d.mu.Lock()
		if c.waiters--; c.waiters == 0 {
			// nobody waits: stop the work, and let the next request start afresh
			c.cancel()
			if d.inFlight[key] == c {
				delete(d.inFlight, key)
			}
		}
		d.mu.Unlock()
		return nil, ctx.Err()
	}
}

// dupFile returns a second handle on f's open file, with its own lifetime.
func dupFile(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.Dup(int(s)) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("webdavsrv: digest: %w", derr)
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// hashAndStore hashes f from its start with its own reader (f's offset is left alone) and
// stores the result if the file did not change meanwhile.
func hashAndStore(ctx context.Context, f *os.File, stamp string) ([]byte, error) {
	h := sha256.New()
	r := io.NewSectionReader(f, 0, 1<<62)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := r.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	sum := h.Sum(nil)
	if fi, err := f.Stat(); err == nil && fmt.Sprintf("%d:%d:", fi.Size(), fi.ModTime().UnixNano()) == stamp {
		_ = setXattr(f, xattrDigest, []byte(stamp+hex.EncodeToString(sum))) // a cache: failure only costs a rehash
	}
	return sum, nil
}

// wantsSHA256 reports whether a Want-Repr-Digest header (RFC 9530 §4: a dictionary of
// algorithm=preference 0..10) asks for sha-256 with a non-zero preference.
func wantsSHA256(h string) bool {
	if h == "" || len(h) > 1024 {
		return false
	}
	for _, item := range strings.Split(h, ",") {
		k, v, found := strings.Cut(strings.TrimSpace(item), "=")
		if strings.TrimSpace(k) != "sha-256" {
			continue
		}
		if !found {
			return true // a bare key is the boolean true
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		return err == nil && n > 0 && n <= 10
	}
	return false
}

// reprDigest formats the Repr-Digest header value for a SHA-256.
func reprDigest(sum []byte) string {
	return "sha-256=:" + base64.StdEncoding.EncodeToString(sum) + ":"
}
