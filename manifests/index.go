package manifests

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// IndexSchema names the index format; decoders refuse any other.
const IndexSchema = "drepo.index/v1"

// MaxIndexSize bounds an index document (about 50,000 app versions).
const MaxIndexSize = 16 << 20

// Index lists the app versions of a repository. It is the only commit point: everything a
// device trusts is reachable from a signed index by hash. Serial only ever grows, so a device
// that remembers the highest serial it accepted can refuse a rollback.
type Index struct {
	Schema  string     `json:"schema"`
	Serial  uint64     `json:"serial"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires,omitempty"`
	Apps    []AppEntry `json:"apps"`
}

// AppEntry is one app version: its manifest blob and the size of all its files.
type AppEntry struct {
	App          string `json:"app"`
	Version      string `json:"version"`
	Manifest     Hash   `json:"manifest"`
	ManifestSize int64  `json:"manifest_size"`
	TotalSize    int64  `json:"total_size"`
}

// Encode returns the canonical JSON of x: entries sorted by app then version, times in UTC
// at whole seconds.
func (x *Index) Encode() ([]byte, error) {
	c := *x
	c.Schema = IndexSchema
	c.Created = x.Created.UTC().Truncate(time.Second)
	if x.Expires != nil {
		e := x.Expires.UTC().Truncate(time.Second)
		c.Expires = &e
	}
	c.Apps = slices.Clone(x.Apps)
	if c.Apps == nil {
		c.Apps = []AppEntry{}
	}
	SortEntries(c.Apps)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return encode(&c), nil
}

// SortEntries puts entries in the index's canonical order (app, then version).
func SortEntries(e []AppEntry) { slices.SortFunc(e, compareEntries) }

func compareEntries(a, b AppEntry) int {
	if c := strings.Compare(a.App, b.App); c != 0 {
		return c
	}
	return strings.Compare(a.Version, b.Version)
}

// DecodeIndex parses and validates an index document. It does not check the signature:
// see VerifyIndex.
func DecodeIndex(b []byte) (*Index, error) {
	var x Index
	if err := decodeStrict("index", b, MaxIndexSize, &x); err != nil {
		return nil, err
	}
	if err := x.Validate(); err != nil {
		return nil, err
	}
	return &x, nil
}

// Validate checks schema, serial, names, sizes and that entries are sorted and unique.
func (x *Index) Validate() error {
	if x.Schema != IndexSchema {
		return fmt.Errorf("manifests: index: unknown schema %.80q (want %q): %w", x.Schema, IndexSchema, ErrInvalid)
	}
	if x.Serial == 0 {
		return fmt.Errorf("manifests: index: serial must be at least 1: %w", ErrInvalid)
	}
	if x.Created.IsZero() {
		return fmt.Errorf("manifests: index: missing created: %w", ErrInvalid)
	}
	if x.Expires != nil && !x.Expires.After(x.Created) {
		return fmt.Errorf("manifests: index: expires is not after created: %w", ErrInvalid)
	}
	for i, e := range x.Apps {
		if err := ValidateName("app", e.App); err != nil {
			return err
		}
		if err := ValidateName("version", e.Version); err != nil {
			return err
		}
		if e.Manifest.IsZero() {
			return fmt.Errorf("manifests: index: %s@%s: missing manifest hash: %w", e.App, e.Version, ErrInvalid)
		}
		if e.ManifestSize <= 0 || e.ManifestSize > MaxManifestSize {
			return fmt.Errorf("manifests: index: %s@%s: manifest_size %d outside 1..%d: %w", e.App, e.Version, e.ManifestSize, MaxManifestSize, ErrInvalid)
		}
		if e.TotalSize < 0 {
			return fmt.Errorf("manifests: index: %s@%s: negative total_size: %w", e.App, e.Version, ErrInvalid)
		}
		if i > 0 {
			switch c := compareEntries(x.Apps[i-1], e); {
			case c == 0:
				return fmt.Errorf("manifests: index: duplicate %s@%s: %w", e.App, e.Version, ErrInvalid)
			case c > 0:
				return fmt.Errorf("manifests: index: entries not sorted at %s@%s: %w", e.App, e.Version, ErrInvalid)
			}
		}
	}
	return nil
}

// Expired reports whether the index has an expiry that lies before now.
func (x *Index) Expired(now time.Time) bool { return x.Expires != nil && now.After(*x.Expires) }

// Find returns the entry for app@version.
// Latest names the newest version of an app (CompareVersions) where a version is asked
// for: APP@latest, or APP alone.
const Latest = "latest"

// Resolve finds app's version in x; Latest is the newest version x lists (the version
// order sync's retention uses).
func (x *Index) Resolve(app, version string) (AppEntry, bool) {
	if version != Latest {
		return x.Find(app, version)
	}
	var best AppEntry
	found := false
	for _, e := range x.Apps {
		if e.App == app && (!found || CompareVersions(e.Version, best.Version) > 0) {
			best, found = e, true
		}
	}
	return best, found
}

// Versions lists the versions x has of app, oldest first.
func (x *Index) Versions(app string) []string {
	var out []string
	for _, e := range x.Apps {
		if e.App == app {
			out = append(out, e.Version)
		}
	}
	slices.SortFunc(out, CompareVersions)
	return out
}

func (x *Index) Find(app, version string) (AppEntry, bool) {
	i, ok := slices.BinarySearchFunc(x.Apps, AppEntry{App: app, Version: version}, compareEntries)
	if !ok {
		return AppEntry{}, false
	}
	return x.Apps[i], true
}
