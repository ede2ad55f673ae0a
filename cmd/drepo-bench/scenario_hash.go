package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

const hashFileSize = 2 << 30

// hashScenario: the manifest of one 2 GiB file (whole-file SHA-256 plus chunk hashes, one
// read) against openssl dgst -sha256 and sha256sum on the same file, from the page cache.
func hashScenario() Scenario {
	return Scenario{
		Name: "hash",
		Doc:  "drepo manifest build of one 2 GiB file vs openssl dgst -sha256 and sha256sum",
		Setup: func(ctx context.Context, env *Env) (*Prepared, error) {
			dir := filepath.Join(env.Workdir, "hash", "app")
			file := filepath.Join(dir, "image.bin")
			if err := ensureRandomFile(file, hashFileSize); err != nil {
				return nil, err
			}
			var cmds []Command
			cmds = append(cmds, Command{Name: "drepo manifest build", Argv: []string{env.Drepo, "manifest", "build", dir, "--app", "bench", "--version", "1", "-o", "-"}})
			for _, ref := range [][]string{{"openssl", "dgst", "-sha256", file}, {"sha256sum", file}} {
				p, err := exec.LookPath(ref[0])
				if err != nil {
					return nil, fmt.Errorf("%s is needed for this scenario: %w", ref[0], err)
				}
				cmds = append(cmds, Command{Name: ref[0], Argv: append([]string{p}, ref[1:]...)})
			}
			return &Prepared{Note: "one 2 GiB file of random bytes, page cache warm", Commands: cmds}, nil
		},
	}
}

// ensureRandomFile writes size pseudo-random bytes to path unless a file of that size is
// already there (generating 2 GiB takes time; the content does not matter, only its size).
func ensureRandomFile(path string, size int64) error {
	if fi, err := os.Stat(path); err == nil && fi.Size() == size {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return writeRandomFile(path, size, 1)
}
