package mirror

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/drepo-dev/drepo/manifests"
)

// Version is one app version built from the source folder.
type Version struct {
	Manifest *manifests.Manifest
	Doc      []byte         // canonical manifest JSON (stored as a blob)
	Hash     manifests.Hash // the manifest blob's name
	Dir      string         // <source>/<app>/<version>
}

// Entry is the version's index entry.
func (v *Version) Entry() manifests.AppEntry {
	return manifests.AppEntry{App: v.Manifest.App, Version: v.Manifest.Version, Manifest: v.Hash,
		ManifestSize: int64(len(v.Doc)), TotalSize: v.Manifest.TotalSize()}
}

// publishable reports whether the entry e of folder dir is a real folder to publish; a file,
// a symlink or anything else at that level is skipped with a warning naming it, since the
// admin most likely put it there meaning to publish it.
func publishable(log *slog.Logger, dir string, e fs.DirEntry, what string) bool {
	if e.IsDir() {
		return true
	}
	if log != nil {
		kind := "a file"
		if e.Type()&fs.ModeSymlink != 0 {
			kind = "a symlink (links are not followed)"
		}
		log.Warn("skipping "+kind+" where the source layout <app>/<version>/ expects an "+what, "path", filepath.Join(dir, e.Name()))
	}
	return false
}

// ScanOptions tune ScanSource.
type ScanOptions struct {
	ChunkSize int64
	Cache     *HashCache // nil: hash everything
	OnRead    func(int)  // bytes read while hashing (progress)
	// Hash, if set, replaces Cache and OnRead (sync's stager).
	Hash func(ctx context.Context, path string, fi fs.FileInfo, chunkSize int64) (manifests.Sums, error)
	Log  *slog.Logger
}

// ScanSource builds the manifests of every <app>/<version> folder under dir. Entries that
// are not folders at those two levels, and names starting with ".", are ignored; a folder
// name that is not a valid app name or version is an error (it would never be published).
// An empty version folder is skipped with a warning: it is most likely still being copied.
func ScanSource(ctx context.Context, dir string, opt ScanOptions) ([]*Version, error) {
	if opt.ChunkSize == 0 {
		opt.ChunkSize = manifests.DefaultChunkSize
	}
	apps, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("mirror: source: %w", err)
	}
	var dirs [][2]string // app, version
	for _, a := range apps {
		if strings.HasPrefix(a.Name(), ".") || !publishable(opt.Log, dir, a, "app folder") {
			continue
		}
		if err := manifests.ValidateName("app", a.Name()); err != nil {
			return nil, fmt.Errorf("mirror: source folder %s: %w", filepath.Join(dir, a.Name()), err)
		}
		vers, err := os.ReadDir(filepath.Join(dir, a.Name()))
		if err != nil {
			return nil, fmt.Errorf("mirror: source: %w", err)
		}
		for _, v := range vers {
			if strings.HasPrefix(v.Name(), ".") || !publishable(opt.Log, filepath.Join(dir, a.Name()), v, "version folder") {
				continue
			}
			if err := manifests.ValidateName("version", v.Name()); err != nil {
				return nil, fmt.Errorf("mirror: source folder %s: %w", filepath.Join(dir, a.Name(), v.Name()), err)
			}
			dirs = append(dirs, [2]string{a.Name(), v.Name()})
		}
	}
	// Versions are built in parallel too: a source of many small versions is bound by
	// walking and stat-ing, not by hashing.
	built := make([]*Version, len(dirs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, d := range dirs {
		g.Go(func() error {
			vdir := filepath.Join(dir, d[0], d[1])
			bo := manifests.BuildOptions{ChunkSize: opt.ChunkSize, OnRead: opt.OnRead}
			if opt.Cache != nil {
				bo.Hash = opt.Cache.Hash(opt.OnRead)
			}
			if opt.Hash != nil {
				bo.Hash = opt.Hash
			}
			m, err := manifests.BuildManifest(gctx, vdir, d[0], d[1], bo)
			if err != nil {
				return fmt.Errorf("mirror: source %s@%s (%s): %w", d[0], d[1], vdir, err)
			}
			if len(m.Files) == 0 {
				if opt.Log != nil {
					opt.Log.Warn("skipping an empty version folder", "dir", vdir)
				}
				return nil
			}
			doc, err := m.Encode()
			if err != nil {
				return err
			}
			built[i] = &Version{Manifest: m, Doc: doc, Hash: manifests.SumBytes(doc), Dir: vdir}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []*Version
	for _, v := range built {
		if v != nil {
			out = append(out, v)
		}
	}
	return out, nil
}

// KeepNewest returns the versions to publish: per app, the newest keep (by CompareVersions);
// keep <= 0 keeps all.
func KeepNewest(vs []*Version, keep int, perApp map[string]int) []*Version {
	if keep <= 0 && len(perApp) == 0 {
		return vs
	}
	byApp := map[string][]*Version{}
	for _, v := range vs {
		byApp[v.Manifest.App] = append(byApp[v.Manifest.App], v)
	}
	var out []*Version
	for app, list := range byApp {
		n := keep
		if k, ok := perApp[app]; ok {
			n = k
		}
		if n <= 0 {
			n = len(list)
		}
		slices.SortFunc(list, func(a, b *Version) int { return -manifests.CompareVersions(a.Manifest.Version, b.Manifest.Version) })
		out = append(out, list[:min(n, len(list))]...)
	}
	slices.SortFunc(out, func(a, b *Version) int {
		if c := strings.Compare(a.Manifest.App, b.Manifest.App); c != 0 {
			return c
		}
		return strings.Compare(a.Manifest.Version, b.Manifest.Version)
	})
	return out
}
