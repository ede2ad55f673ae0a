package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
)

// fetch2GScenario: a device fetch of a 2 GiB app from Apache into a store and --out, against
// plain downloads (curl, aria2c) and the verification floor (curl | sha256sum, and curl |
// openssl, which uses SHA extensions where the CPU has them): drepo hashes every chunk and
// the whole file, so on a CPU without SHA extensions its floor is the hash.
func fetch2GScenario() Scenario {
	return Scenario{
		Name: "fetch-2g",
		Doc:  "device fetch of a 2 GiB app from Apache into a store and --out vs curl -o, aria2c, curl | sha256sum",
		Setup: func(ctx context.Context, env *Env) (*Prepared, error) {
			b, _, _, err := bench2G(env, "fetch-2g")
			if err != nil {
				return nil, err
			}
			if out, err := exec.CommandContext(ctx, env.Drepo, "--config", b.cfg, "--log-level", "error", "sync", "--init").CombinedOutput(); err != nil {
				b.apache.Stop()
				return nil, fmt.Errorf("sync: %v %s", err, out)
			}
			// the blob's URL, for the plain downloaders: the one 2 GiB file under blobs/
			var blob string
			_ = filepath.WalkDir(filepath.Join(b.apache.Root, "drepo", "blobs"), func(p string, d fs.DirEntry, err error) error {
				if fi, e := os.Stat(p); err == nil && e == nil && fi.Size() == hashFileSize {
					blob, _ = filepath.Rel(b.apache.Root, p)
				}
				return nil
			})
			if blob == "" {
				b.apache.Stop()
				return nil, fmt.Errorf("the synced blob is not on the server")
			}
			url := b.apache.URL + filepath.ToSlash(blob)
			store, out := filepath.Join(b.dir, "store"), filepath.Join(b.dir, "out")
			dev := filepath.Join(b.dir, "device.yaml")
			cfg := fmt.Sprintf("trusted_keys: [%s.pub]\nstore: %s\npeers: {enabled: false}\nrepositories:\n  - {name: apache, url: %q, priority: 10}\n",
				filepath.Join(b.dir, "key"), store, b.apache.URL+"drepo/")
			if err := os.WriteFile(dev, []byte(cfg), 0o644); err != nil {
				b.apache.Stop()
				return nil, err
			}
			dl := filepath.Join(b.dir, "download.bin")
			fresh := func() error {
				for _, p := range []string{store, out, dl} {
					if err := os.RemoveAll(p); err != nil {
						return err
					}
				}
				return nil
			}
			cmds := []Command{
				{Name: "drepo fetch --out", Argv: []string{env.Drepo, "--config", dev, "--log-level", "error", "fetch", "base_system@12.7.4", "--out", out}, Before: fresh},
				{Name: "curl -o", Argv: []string{"curl", "-sSf", "-o", dl, url}, Before: fresh},
				{Name: "curl | sha256sum (floor)", Argv: []string{"sh", "-c", "curl -sSf " + url + " | sha256sum"}},
				// coreutils' sha256sum does not use SHA extensions; openssl does, as Go does
				{Name: "curl | openssl sha256", Argv: []string{"sh", "-c", "curl -sSf " + url + " | openssl dgst -sha256"}},
				// drepo's store is durable (fsync before the rename); this is curl made durable too
				{Name: "curl -o && sync (durable)", Argv: []string{"sh", "-c", "curl -sSf -o " + dl + " " + url + " && sync " + dl}, Before: fresh},
			}
			if _, err := exec.LookPath("aria2c"); err == nil {
				cmds = append(cmds, Command{Name: "aria2c", Argv: []string{"aria2c", "-q", "--allow-overwrite=true", "--file-allocation=none",
					"-d", b.dir, "-o", "download.bin", url}, Before: fresh})
			}
			return &Prepared{Note: "one 2 GiB file, Apache mod_dav over loopback, reads without a password", Cleanup: b.apache.Stop, Commands: cmds}, nil
		},
	}
}
