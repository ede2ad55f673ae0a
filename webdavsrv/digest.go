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
)

// digester computes a file's SHA-256 once and keeps it in an xattr beside the file, valid
// while size and modification time are unchanged. Files placed by other means than PUT
// are hashed on the first request that wants the digest. Concurrent requests for the same
// file share one computation.
type digester struct {
	mu       sync.Mutex
	inFlight map[string]*digestCall
}

type digestCall struct {
	done chan struct{}
	sum  []byte
	err  error
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
	if c, ok := d.inFlight[key]; ok {
		d.mu.Unlock()
		select {
		case <-c.done:
			return c.sum, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &digestCall{done: make(chan struct{})}
	d.inFlight[key] = c
	d.mu.Unlock()

	c.sum, c.err = hashAndStore(ctx, f, stamp)
	d.mu.Lock()
	delete(d.inFlight, key)
	d.mu.Unlock()
	close(c.done)
	return c.sum, c.err
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
