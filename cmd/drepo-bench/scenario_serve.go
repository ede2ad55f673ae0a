package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// serveScenario: a 2 GiB PUT (put=true) or GET with curl against drepo serve, Apache mod_dav
// and rclone serve webdav. The RSS column is the server's peak during the run.
func serveScenario(put bool) Scenario {
	name, doc := "serve-get", "2 GiB GET with curl: drepo serve vs Apache mod_dav vs rclone serve webdav"
	if put {
		name, doc = "serve-put", "2 GiB PUT with curl: drepo serve vs Apache mod_dav vs rclone serve webdav (server RSS)"
	}
	return Scenario{
		Name: name,
		Doc:  doc,
		Setup: func(ctx context.Context, env *Env) (*Prepared, error) {
			curl, err := exec.LookPath("curl")
			if err != nil {
				return nil, fmt.Errorf("curl is needed for this scenario: %w", err)
			}
			dir := filepath.Join(env.Workdir, name)
			file := filepath.Join(env.Workdir, "hash", "app", "image.bin")
			if err := ensureRandomFile(file, hashFileSize); err != nil {
				return nil, err
			}
			servers, err := startServers(ctx, env, dir)
			if err != nil {
				return nil, err
			}
			p := &Prepared{
				Note: "one 2 GiB file over loopback, curl as the client; drepo fsyncs each upload, Apache and rclone do not",
				Cleanup: func() {
					for _, s := range servers {
						s.stop()
					}
				},
			}
			for _, s := range servers {
				s := s
				cmd := Command{
					Name: s.name + map[bool]string{true: " PUT", false: " GET"}[put],
					RSS:  func() int64 { return peakRSS(s.pids()) },
				}
				auth := s.user + ":" + s.pass
				if put {
					cmd.Argv = []string{curl, "-sSf", "-u", auth, "-T", file, s.url + "put.bin"}
					cmd.Before = func() error {
						resetPeakRSS(s.pids())
						return httpDelete(s, "put.bin")
					}
				} else {
					dst := filepath.Join(s.root, "get.bin")
					_ = os.Remove(dst)
					if err := os.Link(file, dst); err != nil { // same bytes, no extra disk
						p.Cleanup()
						return nil, err
					}
					cmd.Argv = []string{curl, "-sSf", "-u", auth, "-o", "/dev/null", s.url + "get.bin"}
					cmd.Before = func() error { resetPeakRSS(s.pids()); return nil }
				}
				p.Commands = append(p.Commands, cmd)
			}
			return p, nil
		},
	}
}
