package manifests

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"
)

// BuildOptions tune BuildManifest. Zero values pick the defaults.
type BuildOptions struct {
	ChunkSize int64 // default DefaultChunkSize
	Workers   int   // files hashed at once; default GOMAXPROCS
	// Hash, when set, replaces HashFile; sync passes a cached hasher here so that only
	// changed files are read.
	Hash func(ctx context.Context, path string, fi fs.FileInfo, chunkSize int64) (Sums, error)
	// OnRead, when set, is told the size of every read of the default hasher (progress).
	// It is called from several goroutines at once.
	OnRead func(n int)
	// OnScan, when set, is told the file count and total bytes before hashing starts.
	OnScan func(files int, bytes int64)
}

// BuildManifest builds the manifest of the app version in dir, reading every file once.
// Only regular files are taken; a symlink or special file is an error (a manifest must say
// exactly what a device gets), and drepo's own temporary files are skipped.
func BuildManifest(ctx context.Context, dir, app, version string, opt BuildOptions) (*Manifest, error) {
	if err := ValidateName("app", app); err != nil {
		return nil, err
	}
	if err := ValidateName("version", version); err != nil {
		return nil, err
	}
	if opt.ChunkSize == 0 {
		opt.ChunkSize = DefaultChunkSize
	}
	if opt.Workers <= 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	if opt.Hash == nil {
		opt.Hash = func(ctx context.Context, path string, _ fs.FileInfo, cs int64) (Sums, error) {
			return HashFile(ctx, path, cs, opt.OnRead)
		}
	}
	files, infos, err := scanDir(dir)
	if err != nil {
		return nil, err
	}
	if opt.OnScan != nil {
		var total int64
		for _, fi := range infos {
			total += fi.Size()
		}
		opt.OnScan(len(files), total)
	}
	m := &Manifest{Schema: ManifestSchema, App: app, Version: version, ChunkSize: opt.ChunkSize, Files: files}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opt.Workers)
	for i := range m.Files {
		g.Go(func() error {
			f := &m.Files[i]
			s, err := opt.Hash(gctx, filepath.Join(dir, filepath.FromSlash(f.Path)), infos[i], opt.ChunkSize)
			if err != nil {
				return err
			}
			if s.Size != infos[i].Size() {
				return fmt.Errorf("manifests: %s: size changed while scanning: %w", f.Path, ErrInvalid)
			}
			f.Size, f.SHA256, f.Chunks = s.Size, s.SHA256, s.Chunks
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// scanDir lists the regular files under dir, sorted by slash path, with their FileInfo.
func scanDir(dir string) ([]File, []fs.FileInfo, error) {
	var files []File
	var infos []fs.FileInfo
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("manifests: scan: %w", err)
		}
		if strings.HasPrefix(d.Name(), TempPrefix) {
			return nil
		}
		if p == dir {
			if !d.IsDir() {
				return fmt.Errorf("manifests: scan %s: not a folder: %w", dir, ErrInvalid)
			}
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return fmt.Errorf("manifests: scan: %w", err)
		}
		rel = filepath.ToSlash(rel)
		if err := ValidatePath(rel); err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			return fmt.Errorf("manifests: scan %s: %s is a symlink; put the file itself there: %w", dir, rel, ErrInvalid)
		case !d.Type().IsRegular():
			return fmt.Errorf("manifests: scan %s: %s is not a regular file: %w", dir, rel, ErrInvalid)
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("manifests: scan: %w", err)
		}
		files = append(files, File{Path: rel, Size: fi.Size(), Executable: fi.Mode()&0o111 != 0})
		infos = append(infos, fi)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	// WalkDir visits in lexical order of names per folder, which is not the byte order of
	// full slash paths ("a-b" < "a/c" but folder "a" is walked first); sort both together.
	idx := make([]int, len(files))
	for i := range idx {
		idx[i] = i
	}
	sortByPath(idx, files)
	sf := make([]File, len(files))
	si := make([]fs.FileInfo, len(files))
	for i, j := range idx {
		sf[i], si[i] = files[j], infos[j]
	}
	return sf, si, nil
}

func sortByPath(idx []int, files []File) {
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(files[a].Path, files[b].Path) })
}
