package manifests

import (
	"fmt"
	"slices"
	"strings"
)

// ManifestSchema names the manifest format; decoders refuse any other. A manifest whose
// files carry deltas is ManifestSchemaDeltas (v2): a device that knows only v1 refuses it
// rather than ignore what it does not understand; one without deltas stays v1, byte for
// byte as before.
const (
	ManifestSchema       = "drepo.manifest/v1"
	ManifestSchemaDeltas = "drepo.manifest/v2"
	// MaxDeltas bounds the deltas one file lists (one per earlier version kept).
	MaxDeltas = 8
)

// Chunk size bounds. The default (1 MiB) is the grain at which a LAN passes a blob on: each
// hop of a chain of devices costs one chunk's wire time, and the lan benchmark went from
// 1.7-1.9x one device alone at 4 MiB to 1.21x at 1 MiB (README, Benchmarks). A 10 GiB
// file's chunk list is then about 700 KB.
const (
	DefaultChunkSize = 1 << 20
	MinChunkSize     = 64 << 10
	MaxChunkSize     = 256 << 20
	// MaxManifestSize bounds a manifest document (about 300,000 small files).
	MaxManifestSize = 64 << 20
	// MaxFileSize bounds one file (16 TiB), so size arithmetic never overflows.
	MaxFileSize = 1 << 44
)

// Manifest describes one app version: every file with its size, whole-file SHA-256 and the
// SHA-256 of each chunk. Files are sorted by path.
type Manifest struct {
	Schema    string `json:"schema"`
	App       string `json:"app"`
	Version   string `json:"version"`
	ChunkSize int64  `json:"chunk_size"`
	Files     []File `json:"files"`
}

// File is one file of an app version. Its bytes are the blob named SHA256.
type File struct {
	Path       string `json:"path"`
	Size       int64  `json:"size"`
	SHA256     Hash   `json:"sha256"`
	Executable bool   `json:"executable,omitempty"`
	Chunks     []Hash `json:"chunks"`
	// Deltas rebuild this file from blobs of earlier versions (delta.go); v2 only.
	Deltas []Delta `json:"deltas,omitempty"`
	// Packed is the file compressed chunk by chunk (packed.go); v2 only.
	Packed *Packed `json:"packed,omitempty"`
}

// NumChunks is how many chunks a file of size bytes has: ceil(size/chunkSize), 0 for an empty file.
func NumChunks(size, chunkSize int64) int64 {
	if size <= 0 {
		return 0
	}
	return (size + chunkSize - 1) / chunkSize
}

// TotalSize is the sum of the file sizes.
func (m *Manifest) TotalSize() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// Encode returns the canonical JSON of m (files sorted by path); the same manifest always
// gives the same bytes, hence the same blob name.
func (m *Manifest) Encode() ([]byte, error) {
	c := *m
	c.Schema = ManifestSchema
	if slices.ContainsFunc(m.Files, func(f File) bool { return len(f.Deltas) > 0 || f.Packed != nil }) {
		c.Schema = ManifestSchemaDeltas
	}
	c.Files = slices.Clone(m.Files)
	slices.SortFunc(c.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	for i := range c.Files {
		if c.Files[i].Chunks == nil {
			c.Files[i].Chunks = []Hash{}
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return encode(&c), nil
}

// DecodeManifest parses and validates a manifest document.
func DecodeManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := decodeStrict("manifest", b, MaxManifestSize, &m); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks every rule of the format: schema, names, chunk size, sorted unique safe
// paths (no file may also be a folder of another), sizes, and chunk lists that match sizes.
func (m *Manifest) Validate() error {
	if m.Schema != ManifestSchema && m.Schema != ManifestSchemaDeltas {
		return fmt.Errorf("manifests: manifest: unknown schema %.80q (want %q or %q): %w", m.Schema, ManifestSchema, ManifestSchemaDeltas, ErrInvalid)
	}
	if err := ValidateName("app", m.App); err != nil {
		return err
	}
	if err := ValidateName("version", m.Version); err != nil {
		return err
	}
	if m.ChunkSize < MinChunkSize || m.ChunkSize > MaxChunkSize {
		return fmt.Errorf("manifests: manifest: chunk_size %d outside %d..%d: %w", m.ChunkSize, MinChunkSize, MaxChunkSize, ErrInvalid)
	}
	for i, f := range m.Files {
		if err := ValidatePath(f.Path); err != nil {
			return err
		}
		if i > 0 {
			prev := m.Files[i-1].Path
			switch {
			case prev == f.Path:
				return fmt.Errorf("manifests: manifest: duplicate path %q: %w", f.Path, ErrInvalid)
			case prev > f.Path:
				return fmt.Errorf("manifests: manifest: files not sorted at %q: %w", f.Path, ErrInvalid)
			}
		}
		if f.Size < 0 || f.Size > MaxFileSize {
			return fmt.Errorf("manifests: manifest: %q: size %d outside 0..%d: %w", f.Path, f.Size, int64(MaxFileSize), ErrInvalid)
		}
		if want := NumChunks(f.Size, m.ChunkSize); int64(len(f.Chunks)) != want {
			return fmt.Errorf("manifests: manifest: %q: %d chunk hashes for %d bytes, want %d: %w", f.Path, len(f.Chunks), f.Size, want, ErrInvalid)
		}
		if f.SHA256.IsZero() {
			return fmt.Errorf("manifests: manifest: %q: missing sha256: %w", f.Path, ErrInvalid)
		}
		if err := validDeltas(m.Schema, f, m.ChunkSize); err != nil {
			return err
		}
		if err := validPacked(m.Schema, f, m.ChunkSize); err != nil {
			return err
		}
	}
	// A file "a" and a file "a/b" cannot both be placed; sorted order puts "a/" children
	// after "a" but possibly after siblings like "a-b", so check with a set of folders.
	dirs := make(map[string]struct{})
	for _, f := range m.Files {
		for i := strings.IndexByte(f.Path, '/'); i >= 0; i = nextSlash(f.Path, i) {
			dirs[f.Path[:i]] = struct{}{}
		}
	}
	for _, f := range m.Files {
		if _, ok := dirs[f.Path]; ok {
			return fmt.Errorf("manifests: manifest: %q is both a file and a folder: %w", f.Path, ErrInvalid)
		}
	}
	return nil
}

func nextSlash(p string, i int) int {
	j := strings.IndexByte(p[i+1:], '/')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// validDeltas checks a file's deltas: only in v2, at most MaxDeltas, each from another blob
// of a plausible size, none twice, each with a hash per chunk of its blob.
func validDeltas(schema string, f File, chunkSize int64) error {
	if len(f.Deltas) > 0 && schema != ManifestSchemaDeltas {
		return fmt.Errorf("manifests: manifest: %q: deltas in a %s manifest: %w", f.Path, schema, ErrInvalid)
	}
	if len(f.Deltas) > MaxDeltas {
		return fmt.Errorf("manifests: manifest: %q: %d deltas, at most %d: %w", f.Path, len(f.Deltas), MaxDeltas, ErrInvalid)
	}
	seen := map[Hash]bool{}
	for _, d := range f.Deltas {
		switch {
		case d.From.IsZero() || d.Blob.IsZero() || d.From == f.SHA256 || seen[d.From]:
			return fmt.Errorf("manifests: manifest: %q: a delta with a missing, repeated or own base: %w", f.Path, ErrInvalid)
		case d.FromSize <= 0 || d.FromSize > MaxFileSize || d.Size <= 0 || d.Size > MaxFileSize:
			return fmt.Errorf("manifests: manifest: %q: a delta's sizes out of bounds: %w", f.Path, ErrInvalid)
		case int64(len(d.Chunks)) != NumChunks(d.Size, chunkSize) || slices.ContainsFunc(d.Chunks, Hash.IsZero):
			return fmt.Errorf("manifests: manifest: %q: a delta's chunk hashes do not fit its size: %w", f.Path, ErrInvalid)
		}
		seen[d.From] = true
	}
	return nil
}
