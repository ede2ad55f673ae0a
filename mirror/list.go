package mirror

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

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
