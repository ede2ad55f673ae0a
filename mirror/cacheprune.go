package mirror

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/drepo-dev/drepo/manifests"
)

// The caches of built deltas and packed blobs in state_dir are pruned at the end of every
// sync that built what its versions need: an entry no version in the source uses (its
// version was deleted or left out by retention, a record of an older format or another
// chunk size, the debris of a killed build) is removed, so a state_dir under cron does not
// grow with every release. Repositories are not touched: they keep what they published.

// cacheUse is the set of cache files (records and blobs) a sync's versions use.
type cacheUse struct {
	mu   sync.Mutex
	used map[string]bool
}

func newCacheUse() *cacheUse { return &cacheUse{used: map[string]bool{}} }

// add marks path as used; a nil cacheUse records nothing.
func (c *cacheUse) add(path string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.used[path] = true
	c.mu.Unlock()
}

// prune removes every file of dir that c does not mark used (links are removed, not
// followed; folders are left), and says how many and how many bytes. A build in progress
// (a temporary, or "building", written in the last hour) is left to the sync that may
// still be writing it.
func (c *cacheUse) prune(dir string, now time.Time) (files int, bytes int64, err error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() || c.used[p] {
			continue
		}
		var n int64
		if info, err := e.Info(); err == nil {
			n = info.Size()
			building := strings.HasPrefix(e.Name(), manifests.TempPrefix) || e.Name() == "building"
			if building && now.Sub(info.ModTime()) < time.Hour {
				continue
			}
		}
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return files, bytes, err
		}
		files, bytes = files+1, bytes+n
	}
	return files, bytes, nil
}
