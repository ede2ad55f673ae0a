package webdavsrv

import (
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"
)

// removeDebris deletes upload temporaries (.drepo-tmp-*) that a killed server left, at
// start-up. One older than 2 × BodyStall cannot belong to a live upload (a live body brings
// bytes at least that often, or is cut), so even a second server on the same root is safe.
func removeDebris(root *os.Root, stall time.Duration, log *slog.Logger) {
	cutoff := time.Now().Add(-2 * stall)
	removed := 0
	_ = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), internalPrefix+"tmp-") {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(cutoff) {
			if root.Remove(p) == nil {
				removed++
			}
		}
		return nil
	})
	if removed > 0 {
		log.Info("removed upload temporaries a stopped server left", "files", removed)
	}
}
