package peer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/drepo-dev/drepo/manifests"
)

// HeldVersion is one app version whose manifest the store holds.
type HeldVersion struct {
	App      string         `json:"app"`
	Version  string         `json:"version"`
	Manifest manifests.Hash `json:"manifest"`
	Files    int            `json:"files"`
	Bytes    int64          `json:"bytes"`
	Held     int64          `json:"held_bytes"` // in complete blobs and verified chunks
	Complete bool           `json:"complete"`
}

// Versions lists the app versions the store holds a manifest of, by app then version.
func (s *Store) Versions() ([]HeldVersion, error) {
	hs, err := s.Manifests()
	if err != nil {
		return nil, err
	}
	partial, err := s.PartialBlobs()
	if err != nil {
		return nil, err
	}
	var out []HeldVersion
	for _, h := range hs {
		m, _, err := s.Manifest(h)
		if err != nil {
			continue
		}
		v := HeldVersion{App: m.App, Version: m.Version, Manifest: h, Files: len(m.Files), Bytes: m.TotalSize(), Complete: true}
		for _, fl := range m.Files {
			switch {
			case s.HasBlob(fl.SHA256, fl.Size):
				v.Held += fl.Size
			default:
				v.Complete = false
				if st, ok := partial[fl.SHA256]; ok {
					v.Held += st.VerifiedBytes()
				}
			}
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b HeldVersion) int {
		if c := strings.Compare(a.App, b.App); c != 0 {
			return c
		}
		return manifests.CompareVersions(a.Version, b.Version)
	})
	return out, nil
}

// GCReport is what GC removed.
type GCReport struct {
	RemovedVersions []string `json:"removed_versions"`
	RemovedBlobs    int      `json:"removed_blobs"` // complete and partial
	RemovedBytes    int64    `json:"removed_bytes"` // disk space they took (a partial blob is sparse)
}

// allocated is the disk space a file takes (its blocks), which for a sparse partial blob
// is what was written of it, not its size.
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

// GCOptions say what GC removes.
type GCOptions struct {
	// Keep is how many of the newest versions of every app stay (0: all).
	Keep int
	// Remove names app versions (APP@VERSION) to remove whatever Keep says.
	Remove []string
	// Partial removes every partial blob, even of a kept version (they are fetched again
	// from the start): the space a fetch that will not be finished holds.
	Partial bool
}

// GC keeps the newest opt.Keep versions of every app (by manifests.CompareVersions) but
// those in opt.Remove, and removes the other manifests and every blob, complete or partial,
// that no kept manifest names (with opt.Partial, every partial blob). It holds the store's
// lock while it works. Removing a version that is not held is an error.
func (s *Store) GC(ctx context.Context, opt GCOptions, log *slog.Logger) (*GCReport, error) {
	if err := s.Lock(ctx, log); err != nil {
		return nil, err
	}
	defer s.Unlock()
	vs, err := s.Versions()
	if err != nil {
		return nil, err
	}
	drop := map[string]bool{}
	for _, id := range opt.Remove {
		drop[id] = true
	}
	byApp := map[string][]HeldVersion{}
	for _, v := range vs {
		byApp[v.App] = append(byApp[v.App], v)
		delete(drop, v.App+"@"+v.Version)
	}
	for id := range drop {
		return nil, fmt.Errorf("peer: the store holds no %s", id)
	}
	rep := &GCReport{RemovedVersions: []string{}}
	keepBlobs := map[manifests.Hash]bool{}
	for _, list := range byApp {
		slices.SortFunc(list, func(a, b HeldVersion) int { return -manifests.CompareVersions(a.Version, b.Version) })
		for i, v := range list {
			id := v.App + "@" + v.Version
			if (opt.Keep == 0 || i < opt.Keep) && !slices.Contains(opt.Remove, id) {
				m, _, err := s.Manifest(v.Manifest)
				if err != nil {
					return nil, err
				}
				keepBlobs[v.Manifest] = true
				for _, fl := range m.Files {
					keepBlobs[fl.SHA256] = true
					for _, d := range fl.Deltas {
						keepBlobs[d.Blob] = true // this device serves it to the LAN
					}
				}
				continue
			}
			if err := os.Remove(filepath.Join(s.dir, "manifests", v.Manifest.String())); err != nil {
				return nil, err
			}
			rep.RemovedVersions = append(rep.RemovedVersions, id)
		}
	}
	for _, dir := range []string{"blobs/sha256", "partial"} {
		ents, err := os.ReadDir(filepath.Join(s.dir, dir))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			name := strings.TrimSuffix(e.Name(), ".state")
			h, err := manifests.ParseHash(name)
			if err != nil || (keepBlobs[h] && !(opt.Partial && dir == "partial")) {
				continue
			}
			p := filepath.Join(s.dir, dir, e.Name())
			if fi, err := e.Info(); err == nil && !strings.HasSuffix(e.Name(), ".state") {
				rep.RemovedBytes += allocated(fi)
				rep.RemovedBlobs++
			}
			if err := os.Remove(p); err != nil {
				return nil, err
			}
		}
	}
	// the records of blobs no longer held
	ents, err := os.ReadDir(filepath.Join(s.dir, "verified"))
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		h, err := manifests.ParseHash(e.Name())
		if _, serr := os.Lstat(filepath.Join(s.dir, "blobs", "sha256", e.Name())); err == nil && errors.Is(serr, fs.ErrNotExist) {
			_ = os.Remove(s.verifiedPath(h))
		}
	}
	return rep, nil
}
