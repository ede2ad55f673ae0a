package peer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drepo-dev/drepo/manifests"
)

// Store is the device's content-addressed store (layout in the package doc). Everything in
// it under a final name is verified; every write is atomic.
type Store struct {
	dir  string
	lock *os.File
}

// OpenStore opens (creating as needed) the store at dir. It takes no lock; Lock does.
func OpenStore(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("peer: no store folder configured (store: in the config)")
	}
	if err := os.MkdirAll(dir, storeDirMode); err != nil {
		return nil, fmt.Errorf("peer: store: %w", err)
	}
	if err := checkStoreDir(dir, true); err != nil {
		return nil, err
	}
	for _, d := range []string{"blobs", "blobs/sha256", "partial", "manifests", "verified"} {
		p := filepath.Join(dir, d)
		if err := os.Mkdir(p, storeDirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("peer: store: %w", err)
		}
		if err := checkStoreDir(p, false); err != nil {
			return nil, err
		}
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's folder.
func (s *Store) Dir() string { return s.dir }

// Lock takes the store's lock (flock on <store>/lock), waiting while another fetch holds
// it, so two fetches share the store safely; Unlock releases it. A killed holder's lock goes
// with its process.
func (s *Store) Lock(ctx context.Context, log *slog.Logger) error {
	f, err := openNoFollow(filepath.Join(s.dir, "lock"), os.O_RDWR|os.O_CREATE, storeFileMode)
	if err != nil {
		return fmt.Errorf("peer: store lock: %w", err)
	}
	said := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			s.lock = f
			s.cleanDebris() // under the lock: no other fetch writes now
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return fmt.Errorf("peer: store lock: %w", err)
		}
		if !said && log != nil {
			log.Info("waiting for another drepo process using the store", "store", s.dir)
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Unlock releases the lock.
func (s *Store) Unlock() {
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

// BlobPath is where a complete blob lives.
func (s *Store) BlobPath(h manifests.Hash) string {
	return filepath.Join(s.dir, "blobs", "sha256", h.String())
}

func (s *Store) partialPath(h manifests.Hash) string {
	return filepath.Join(s.dir, "partial", h.String())
}

// HasBlob reports whether the complete blob h is held with the expected size, the very
// file that was verified (intact).
func (s *Store) HasBlob(h manifests.Hash, size int64) bool {
	fi, err := os.Lstat(s.BlobPath(h))
	return err == nil && fi.Mode().IsRegular() && fi.Size() == size && s.intact(h, fi)
}

// cleanDebris removes the temporary files killed writes left in the store's folders.
func (s *Store) cleanDebris() {
	for _, d := range []string{".", "blobs/sha256", "partial", "manifests", "verified"} {
		cleanDebris(filepath.Join(s.dir, d), manifests.TempPrefix)
	}
}

// PutManifest stores a manifest document (already checked against its hash by the caller,
// checked again here) as a blob and in manifests/.
func (s *Store) PutManifest(h manifests.Hash, doc []byte) error {
	if manifests.SumBytes(doc) != h {
		return fmt.Errorf("peer: manifest %s: bytes do not match", h)
	}
	if !s.HasBlob(h, int64(len(doc))) {
		if err := manifests.WriteFileAtomic(s.BlobPath(h), doc, blobMode); err != nil {
			return err
		}
		if err := s.markVerified(h); err != nil {
			return err
		}
	}
	return manifests.WriteFileAtomic(filepath.Join(s.dir, "manifests", h.String()), doc, blobMode)
}

// Manifest reads a stored manifest, checking its hash.
func (s *Store) Manifest(h manifests.Hash) (*manifests.Manifest, []byte, error) {
	b, err := readBounded(filepath.Join(s.dir, "manifests", h.String()), manifests.MaxManifestSize)
	if err != nil {
		return nil, nil, err
	}
	if manifests.SumBytes(b) != h {
		return nil, nil, fmt.Errorf("peer: stored manifest %s is damaged", h)
	}
	m, err := manifests.DecodeManifest(b)
	return m, b, err
}

// Manifests lists the hashes of the stored manifests.
func (s *Store) Manifests() ([]manifests.Hash, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "manifests"))
	if err != nil {
		return nil, err
	}
	var out []manifests.Hash
	for _, e := range ents {
		if h, err := manifests.ParseHash(e.Name()); err == nil {
			out = append(out, h)
		}
	}
	return out, nil
}

// Trust reads the trust state (empty if none yet). A damaged file is an error: refusing to
// fetch is safer than forgetting which serials were accepted.
func (s *Store) Trust() (TrustState, error) {
	b, err := readBounded(filepath.Join(s.dir, "trust.json"), maxTrustState)
	if errors.Is(err, fs.ErrNotExist) {
		return DecodeTrustState(nil)
	}
	if err != nil {
		return TrustState{}, fmt.Errorf("peer: trust state: %w", err)
	}
	return DecodeTrustState(b)
}

// Accepted stores an accepted index, its signature and the new trust state, durably, before
// anything is fetched under it.
func (s *Store) Accepted(doc, sig []byte, st TrustState) error {
	if err := manifests.WriteFileAtomic(filepath.Join(s.dir, "index.json"), doc, storeFileMode); err != nil {
		return err
	}
	if sig != nil {
		if err := manifests.WriteFileAtomic(filepath.Join(s.dir, "index.json.minisig"), sig, storeFileMode); err != nil {
			return err
		}
	} else {
		_ = os.Remove(filepath.Join(s.dir, "index.json.minisig"))
	}
	return manifests.WriteFileAtomic(filepath.Join(s.dir, "trust.json"), st.Encode(), storeFileMode)
}

// Index returns the last accepted index document and signature (nil if none).
func (s *Store) Index() (doc, sig []byte) {
	doc, err := readBounded(filepath.Join(s.dir, "index.json"), manifests.MaxIndexSize)
	if err != nil {
		return nil, nil
	}
	sig, _ = readBounded(filepath.Join(s.dir, "index.json.minisig"), manifests.MaxSignatureSize)
	return doc, sig
}

// PartialBlobs lists the blobs being fetched, with their states.
func (s *Store) PartialBlobs() (map[manifests.Hash]PartialState, error) {
	if _, err := os.Stat(filepath.Join(s.dir, "partial")); err != nil {
		return nil, err
	}
	out := map[manifests.Hash]PartialState{}
	for _, h := range s.partialHashes() {
		if st, err := s.partialState(h); err == nil {
			out[h] = st
		}
	}
	return out, nil
}

// PartialBytes is how many verified bytes the store holds in partial blobs (what a fetch
// has brought in so far; benchmarks and tests watch it).
func (s *Store) PartialBytes() int64 {
	var n int64
	for _, h := range s.partialHashes() {
		if st, err := s.partialState(h); err == nil {
			n += st.VerifiedBytes()
		}
	}
	return n
}

// partialHashes lists the blobs with a state file in partial/.
func (s *Store) partialHashes() []manifests.Hash {
	ents, _ := os.ReadDir(filepath.Join(s.dir, "partial"))
	var out []manifests.Hash
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".state")
		if !ok {
			continue
		}
		if h, err := manifests.ParseHash(name); err == nil {
			out = append(out, h)
		}
	}
	return out
}

func (s *Store) partialState(h manifests.Hash) (PartialState, error) {
	b, err := readBounded(s.partialPath(h)+".state", maxStateFile)
	if err != nil {
		return PartialState{}, err
	}
	return DecodePartialState(b)
}
