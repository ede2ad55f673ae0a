package peer

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/drepo-dev/drepo/manifests"
)

// ErrOutInUse: the output folder holds files other than this app version's.
var ErrOutInUse = errors.New("the output folder holds other files")

// placeOut lays the app version's files out in out, by their manifest paths: a plain file is
// a hard link to its blob in the store (read-only, so the store cannot be altered through
// it), an executable file a copy with mode 0755, and a copy wherever a link fails (another
// filesystem). The tree is built beside out, checked (sizes; links the very blob, copies
// hashed while copied), then swapped in by rename. An out that holds anything but this
// version's files, or the files a layout of the same app left (its marker, outMarker), is
// refused unless force: an update of an app in place needs no --force, a folder someone
// else filled does.
func placeOut(s *Store, m *manifests.Manifest, out string, force bool) error {
	out = filepath.Clean(out)
	if fi, err := os.Stat(out); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("peer: --out %s: not a folder", out)
		}
		if !force {
			if other, err := otherContent(out, m); err != nil {
				return err
			} else if other != "" {
				return fmt.Errorf("peer: --out %s: %w (%s); pass --force to replace it", out, ErrOutInUse, manifests.Printable(other))
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("peer: --out: %w", err)
	}
	parent := filepath.Dir(out)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("peer: --out: %w", err)
	}
	// what a killed layout of this out left (its links keep blobs' space taken) goes first
	base := filepath.Base(out)
	cleanDebris(parent, manifests.TempPrefix+"out-"+base+"-")
	cleanDebris(parent, manifests.TempPrefix+"old-"+base+"-")
	tmp := filepath.Join(parent, manifests.TempPrefix+"out-"+base+"-"+randHex())
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return fmt.Errorf("peer: --out: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	for _, fl := range m.Files {
		dst := filepath.Join(tmp, filepath.FromSlash(fl.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("peer: --out: %w", err)
		}
		if err := placeFile(s, dst, fl); err != nil {
			return err
		}
	}
	if err := writeMarker(tmp, m); err != nil {
		return err
	}
	if err := manifests.SyncDir(tmp); err != nil {
		return err
	}
	old := ""
	if _, err := os.Stat(out); err == nil {
		old = filepath.Join(parent, manifests.TempPrefix+"old-"+base+"-"+randHex())
		if err := os.Rename(out, old); err != nil {
			return fmt.Errorf("peer: --out: %w", err)
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		if old != "" {
			_ = os.Rename(old, out)
		}
		return fmt.Errorf("peer: --out: %w", err)
	}
	ok = true
	if old != "" {
		_ = os.RemoveAll(old)
	}
	return manifests.SyncDir(parent)
}

// placeFile links or copies one blob to dst and checks the result: a link must be the
// very file that was verified (Store.intact: not altered since), a copy hashes to its name.
func placeFile(s *Store, dst string, fl manifests.File) error {
	blob := s.BlobPath(fl.SHA256)
	fi, err := os.Lstat(blob)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != fl.Size || !s.intact(fl.SHA256, fi) {
		return fmt.Errorf("peer: --out %s: blob %s: %w", fl.Path, fl.SHA256, errAltered)
	}
	if !fl.Executable {
		if err := os.Link(blob, dst); err == nil {
			a, err1 := os.Lstat(blob)
			b, err2 := os.Lstat(dst)
			if err1 != nil || err2 != nil || !os.SameFile(a, b) || !os.SameFile(a, fi) || b.Size() != fl.Size {
				return fmt.Errorf("peer: --out %s: the link does not check out", fl.Path)
			}
			return nil
		}
	}
	src, err := openNoFollow(blob, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("peer: %s: %w", fl.Path, err)
	}
	defer src.Close()
	mode := os.FileMode(0o444)
	if fl.Executable {
		mode = 0o755
	}
	d, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("peer: --out: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(d, h), src)
	if err == nil {
		err = d.Sync()
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("peer: --out %s: %w", fl.Path, err)
	}
	if n != fl.Size || manifests.Hash(h.Sum(nil)) != fl.SHA256 {
		return fmt.Errorf("peer: --out %s: the copy does not match its hash", fl.Path)
	}
	return nil
}

// otherContent names the first thing in out that is not one of m's files at its size ("" if
// out holds only those, or nothing: a rerun may replace its own work).
func otherContent(out string, m *manifests.Manifest) (string, error) {
	want := map[string]int64{}
	for _, fl := range m.Files {
		want[fl.Path] = fl.Size
	}
	mine := map[string]bool{outMarker: true} // laid out by drepo for this app: replaced
	if mk, err := readMarker(out); err == nil && mk.App == m.App {
		for _, p := range mk.Files {
			mine[p] = true
		}
	}
	other := ""
	err := filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || other != "" {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if mine[filepath.ToSlash(rel)] && fi.Mode().IsRegular() {
			return nil
		}
		if size, ok := want[filepath.ToSlash(rel)]; !ok || !fi.Mode().IsRegular() || fi.Size() != size {
			other = rel
			return filepath.SkipAll
		}
		return nil
	})
	return other, err
}

func randHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// outMarker is the file a layout leaves in --out: which app version it is and which files
// drepo put there, so the next version of the app replaces them without --force.
const outMarker = ".drepo-out.json"

// marker is outMarker's content.
type marker struct {
	Schema  string   `json:"schema"`
	App     string   `json:"app"`
	Version string   `json:"version"`
	Files   []string `json:"files"`
}

const markerSchema = "drepo.out/v1"

// writeMarker writes the marker of m's layout into dir.
func writeMarker(dir string, m *manifests.Manifest) error {
	mk := marker{Schema: markerSchema, App: m.App, Version: m.Version}
	for _, fl := range m.Files {
		mk.Files = append(mk.Files, fl.Path)
	}
	b, err := json.Marshal(mk)
	if err != nil {
		return err
	}
	return manifests.WriteFileAtomic(filepath.Join(dir, outMarker), append(b, '\n'), 0o644)
}

// readMarker reads the marker of a layout in dir (bounded, strict).
func readMarker(dir string) (marker, error) {
	var mk marker
	b, err := manifests.ReadBounded(filepath.Join(dir, outMarker), manifests.MaxManifestSize, true)
	if err != nil {
		return mk, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&mk); err != nil || mk.Schema != markerSchema {
		return marker{}, fmt.Errorf("peer: %s: not a layout marker", filepath.Join(dir, outMarker))
	}
	return mk, nil
}
