package webdavsrv

import (
	"sync"
	"time"

	"golang.org/x/net/webdav"
)

// Bounds on the lock table: 3,000 LOCKs with Timeout: Infinite and 50 KB owners once held
// 244 MB for good.
const (
	maxLocks       = 1000             // locks held at once (LOCKs and the handler's own write locks)
	maxLockTimeout = time.Hour        // longer or infinite timeouts are cut to this
	maxLockBody    = 8 << 10          // bytes of a LOCK request body, owner included
	lockSweepEvery = 10 * time.Second // how often expired entries leave the count
)

// boundedLocks wraps x/net/webdav's in-memory lock system with a cap on how many locks are
// held and how long one lasts. Past the cap a new lock answers 423 Locked.
type boundedLocks struct {
	ls webdav.LockSystem

	mu     sync.Mutex
	expiry map[string]time.Time // token → when it lapses
	swept  time.Time
}

func newBoundedLocks() *boundedLocks {
	return &boundedLocks{ls: webdav.NewMemLS(), expiry: map[string]time.Time{}}
}

var _ webdav.LockSystem = (*boundedLocks)(nil)

func (b *boundedLocks) Confirm(now time.Time, name0, name1 string, conditions ...webdav.Condition) (func(), error) {
	return b.ls.Confirm(now, name0, name1, conditions...)
}

func clampLock(d time.Duration) time.Duration {
	if d < 0 || d > maxLockTimeout {
		return maxLockTimeout
	}
	return d
}

func (b *boundedLocks) Create(now time.Time, details webdav.LockDetails) (string, error) {
	details.Duration = clampLock(details.Duration)
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.swept) > lockSweepEvery || len(b.expiry) >= maxLocks {
		for t, until := range b.expiry {
			if now.After(until) {
				delete(b.expiry, t)
			}
		}
		b.swept = now
	}
	if len(b.expiry) >= maxLocks {
		return "", webdav.ErrLocked
	}
	token, err := b.ls.Create(now, details)
	if err == nil {
		b.expiry[token] = now.Add(details.Duration)
	}
	return token, err
}

func (b *boundedLocks) Refresh(now time.Time, token string, d time.Duration) (webdav.LockDetails, error) {
	d = clampLock(d)
	ld, err := b.ls.Refresh(now, token, d)
	if err == nil {
		b.mu.Lock()
		b.expiry[token] = now.Add(d)
		b.mu.Unlock()
	}
	return ld, err
}

func (b *boundedLocks) Unlock(now time.Time, token string) error {
	b.mu.Lock()
	delete(b.expiry, token)
	b.mu.Unlock()
	return b.ls.Unlock(now, token)
}
