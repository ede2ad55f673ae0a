package mirror

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"aead.dev/minisign"
	"github.com/drepo-dev/drepo/manifests"
)

// ReadIndex fetches a repository's index and signature and verifies them with keys.
func ReadIndex(ctx context.Context, r Remote, keys []minisign.PublicKey) (*manifests.Index, error) {
	so := SyncOptions{}.logOnly()
	doc, err := readDoc(ctx, r, IndexName, manifests.MaxIndexSize, so)
	if err != nil {
		return nil, err
	}
	if doc == nil {
		return nil, ErrNotFound
	}
	sig, err := readSig(ctx, r, doc, so)
	if err != nil {
		return nil, err
	}
	return manifests.VerifyIndex(keys, doc, sig)
}

// readSig reads the signature of the index document doc: the one stored under the index's
// hash, else index.json.minisig (repositories written by hand with minisign). nil if neither.
func readSig(ctx context.Context, r Remote, doc []byte, so SyncOptions) ([]byte, error) {
	sig, err := readDoc(ctx, r, SigPath(doc), manifests.MaxSignatureSize, so)
	if err != nil || sig != nil {
		return sig, err
	}
	return readDoc(ctx, r, SigName, manifests.MaxSignatureSize, so)
}

// SourceVersion is one <app>/<version> folder of the source, as found on disk (not hashed).
type SourceVersion struct {
	App     string `json:"app"`
	Version string `json:"version"`
	Files   int    `json:"files"`
	Bytes   int64  `json:"bytes"`
}

// ListSource lists the app versions in the source folder without reading any file.
func ListSource(dir string) ([]SourceVersion, error) {
	apps, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []SourceVersion
	for _, a := range apps {
		if !a.IsDir() || strings.HasPrefix(a.Name(), ".") {
			continue
		}
		vers, err := os.ReadDir(filepath.Join(dir, a.Name()))
		if err != nil {
			return nil, err
		}
		for _, v := range vers {
			if !v.IsDir() || strings.HasPrefix(v.Name(), ".") {
				continue
			}
			sv := SourceVersion{App: a.Name(), Version: v.Name()}
			err := filepath.WalkDir(filepath.Join(dir, a.Name(), v.Name()), func(_ string, d fs.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return err
				}
				fi, err := d.Info()
				if err == nil {
					sv.Files++
					sv.Bytes += fi.Size()
				}
				return err
			})
			if err != nil {
				return nil, err
			}
			out = append(out, sv)
		}
	}
	return out, nil
}
