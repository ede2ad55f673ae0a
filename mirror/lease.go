package mirror

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/drepo-dev/drepo/mirror/dav"

	"github.com/drepo-dev/drepo/manifests"
)

// ErrLeaseHeld: another sync holds the repository's lease.
var ErrLeaseHeld = errors.New("repository lease held by another sync")

// leaseDoc is the content of lease.json.
type leaseDoc struct {
	ID      string    `json:"id"`
	Holder  string    `json:"holder"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Created time.Time `json:"created"`
	Renewed time.Time `json:"renewed"`
}

// lease is a held repository lease; renew it while working and release it at the end.
type lease struct {
	remote dav.Remote
	doc    leaseDoc
	log    *slog.Logger
}

// acquireLease takes lease.json with a conditional PUT (If-None-Match: *). A lease not
// renewed for stale is taken over (If-Match its ETag) with a warning; a live one makes this
// repository fail with ErrLeaseHeld, naming the holder. The lease is read back, so a server
// that ignores conditional PUTs still cannot give it to two syncs.
func acquireLease(ctx context.Context, r dav.Remote, stale time.Duration, log *slog.Logger) (*lease, error) {
	cp, ok := r.(dav.ConditionalPutter)
	if !ok {
		return nil, errors.New("mirror: the repository cannot take a lease (no conditional PUT)")
	}
	host, _ := os.Hostname()
	var id [8]byte
	_, _ = rand.Read(id[:])
	now := time.Now().UTC()
	l := &lease{remote: r, log: log, doc: leaseDoc{ID: hex.EncodeToString(id[:]), Holder: fmt.Sprintf("%s pid %d", host, os.Getpid()),
		Host: host, PID: os.Getpid(), Created: now, Renewed: now}}
	b, _ := json.Marshal(l.doc)
	err := cp.PutIf(ctx, dav.LeaseName, b, "")
	if errors.Is(err, dav.ErrPrecondition) {
		cur, etag, rerr := readLease(ctx, r)
		if rerr != nil {
			return nil, rerr
		}
		age := time.Since(cur.Renewed)
		dead := cur.Host == host && cur.PID > 0 && !processAlive(cur.PID)
		if dead {
			log.Info("taking over the lease of a sync that died on this host", "holder", cur.Holder)
		}
		if age < stale && !dead {
			return nil, fmt.Errorf("mirror: %w: %s, renewed %s ago (taken over after %s)", ErrLeaseHeld, cur.Holder, age.Round(time.Second), stale)
		}
		if !dead {
			log.Warn("taking over a stale lease", "holder", cur.Holder, "renewed_ago", age.Round(time.Second))
		}
		err = replaceLease(ctx, r, b, etag)
		if errors.Is(err, dav.ErrPrecondition) {
			return nil, fmt.Errorf("mirror: %w: another sync took the stale lease first", ErrLeaseHeld)
		}
	}
	if err != nil {
		return nil, err
	}
	cur, _, err := readLease(ctx, r)
	if err != nil {
		return nil, err
	}
	if cur.ID != l.doc.ID {
		return nil, fmt.Errorf("mirror: %w: %s", ErrLeaseHeld, cur.Holder)
	}
	return l, nil
}

func readLease(ctx context.Context, r dav.Remote) (leaseDoc, string, error) {
	fi, err := r.Stat(ctx, dav.LeaseName)
	if err != nil {
		return leaseDoc{}, "", err
	}
	rc, err := r.Open(ctx, dav.LeaseName, 0, -1)
	if err != nil {
		return leaseDoc{}, "", err
	}
	defer rc.Close()
	b, err := manifests.ReadLimited(rc, 4096)
	if err != nil {
		return leaseDoc{}, "", err
	}
	var d leaseDoc
	if err := json.Unmarshal(b, &d); err != nil {
		// unreadable: treat as stale so a broken file cannot block syncs forever
		return leaseDoc{Holder: "unreadable lease.json"}, fi.ETag, nil
	}
	return d, fi.ETag, nil
}

// ErrLeaseLost: this sync's lease was taken over (it was frozen past the stale time); it
// must not replace the index or remove anything.
var ErrLeaseLost = errors.New("lost the repository lease")

// check proves the lease is still this sync's, read back from the server: called before
// the index is replaced and before anything is removed, so a sync that was frozen (a
// suspended laptop) while another took over cannot commit over the other's work.
func (l *lease) check(ctx context.Context) error {
	cur, _, err := readLease(ctx, l.remote)
	if errors.Is(err, dav.ErrNotFound) {
		return fmt.Errorf("mirror: %w: lease.json is gone (another sync took it over and finished); nothing was changed, run sync again", ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("mirror: checking the lease: %w", err)
	}
	if cur.ID != l.doc.ID {
		return fmt.Errorf("mirror: %w to %s; nothing was changed, run sync again", ErrLeaseLost, cur.Holder)
	}
	return nil
}

// renew refreshes the lease's time while this sync still holds it.
func (l *lease) renew(ctx context.Context) error {
	cur, etag, err := readLease(ctx, l.remote)
	if err != nil {
		return err
	}
	if cur.ID != l.doc.ID {
		return fmt.Errorf("mirror: %w: lost the lease to %s", ErrLeaseHeld, cur.Holder)
	}
	l.doc.Renewed = time.Now().UTC()
	b, _ := json.Marshal(l.doc)
	return replaceLease(ctx, l.remote, b, etag)
}

// replaceLease overwrites lease.json if it still has etag. Apache gives a weak ETag
// (W/"…") to a file changed within the last second, and If-Match never matches a weak
// ETag (RFC 9110 §13.1.1); then the write is unconditional and the caller's read-back
// decides who holds the lease.
func replaceLease(ctx context.Context, r dav.Remote, doc []byte, etag string) error {
	if etag == "" || strings.HasPrefix(etag, "W/") {
		return r.Put(ctx, dav.LeaseName, bytes.NewReader(doc), int64(len(doc)))
	}
	return r.(dav.ConditionalPutter).PutIf(ctx, dav.LeaseName, doc, etag)
}

// release removes the lease if this sync still holds it.
func (l *lease) release(ctx context.Context) {
	cur, _, err := readLease(ctx, l.remote)
	if err == nil && cur.ID == l.doc.ID {
		if err := l.remote.Remove(ctx, dav.LeaseName); err != nil {
			l.log.Warn("could not remove the lease", "err", err)
		}
	}
}

// keepRenewed renews the lease every interval until ctx ends.
func (l *lease) keepRenewed(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := l.renew(ctx); err != nil && ctx.Err() == nil {
				l.log.Warn("lease renewal failed", "err", err)
			}
		}
	}
}

// processAlive reports whether a process with this pid exists on this host. A reused pid
// looks alive, which only makes the lease wait for its stale time: the safe direction.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
