package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/drepo-dev/drepo/webdavsrv/davtest"
)

// benchServer is a WebDAV server process under measurement.
type benchServer struct {
	name, url, user, pass, root string
	pids                        func() []int // processes whose peak RSS counts
	stop                        func()
}

const benchUser, benchPass = "bench", "bench-password"

// startServers starts drepo serve, Apache mod_dav and rclone serve webdav, each on its own
// root under dir, and returns them with drepo first.
func startServers(ctx context.Context, env *Env, dir string) ([]*benchServer, error) {
	var out []*benchServer
	fail := func(err error) ([]*benchServer, error) {
		for _, s := range out {
			s.stop()
		}
		return nil, err
	}
	// drepo serve
	droot := filepath.Join(dir, "drepo-root")
	_ = os.RemoveAll(droot)
	if err := os.MkdirAll(droot, 0o755); err != nil {
		return nil, err
	}
	htp := filepath.Join(dir, "htpasswd")
	_ = os.Remove(htp)
	hp := exec.Command(env.Drepo, "htpasswd", "--password-env", "BENCH_PW", htp, benchUser)
	hp.Env = append(os.Environ(), "BENCH_PW="+benchPass)
	if out, err := hp.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("drepo htpasswd: %v %s", err, out)
	}
	port, err := davtest.FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ds, err := startProcess(ctx, "drepo serve", addr, env.Drepo, "--log-level", "warn", "serve", "--root", droot, "--htpasswd", htp, "--listen", addr)
	if err != nil {
		return fail(err)
	}
	ds.root = droot
	out = append(out, ds)

	// Apache mod_dav (Debian's apache2), the same set-up the tests use
	abase := filepath.Join(dir, "apache")
	_ = os.RemoveAll(abase)
	if err := os.MkdirAll(abase, 0o755); err != nil {
		return fail(err)
	}
	bin, err := exec.LookPath("apache2")
	if err != nil {
		bin = "/usr/sbin/apache2"
	}
	a, err := davtest.LaunchApache(bin, abase, davtest.ApacheOptions{User: benchUser, Password: benchPass})
	if err != nil {
		return fail(err)
	}
	out = append(out, &benchServer{name: "apache", url: a.URL, user: benchUser, pass: benchPass, root: a.Root,
		pids: func() []int { return groupPids(a.Pgid) }, stop: a.Stop})

	// rclone serve webdav
	rc, err := exec.LookPath("rclone")
	if err != nil {
		return fail(fmt.Errorf("rclone is needed for this scenario: %w", err))
	}
	rroot := filepath.Join(dir, "rclone-root")
	_ = os.RemoveAll(rroot)
	if err := os.MkdirAll(rroot, 0o755); err != nil {
		return fail(err)
	}
	if port, err = davtest.FreePort(); err != nil {
		return fail(err)
	}
	addr = "127.0.0.1:" + strconv.Itoa(port)
	rs, err := startProcess(ctx, "rclone serve", addr, rc, "serve", "webdav", rroot, "--addr", addr, "--user", benchUser, "--pass", benchPass, "--config", "/dev/null")
	if err != nil {
		return fail(err)
	}
	rs.root = rroot
	out = append(out, rs)
	return out, nil
}

func startProcess(ctx context.Context, name, addr string, argv ...string) (*benchServer, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() { davtest.StopGroup(cmd.Process.Pid, exited) }
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("%s exited at start", name)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return nil, fmt.Errorf("%s did not start listening on %s", name, addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	pid := cmd.Process.Pid
	return &benchServer{name: name, url: "http://" + addr + "/", user: benchUser, pass: benchPass,
		pids: func() []int { return []int{pid} }, stop: stop}, nil
}

// groupPids lists the processes of a process group (Apache's parent and workers).
func groupPids(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// resetPeakRSS clears the kernel's high-water mark (VmHWM) of each process, so the next
// reading is the peak during one run only.
func resetPeakRSS(pids []int) {
	for _, p := range pids {
		_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p), []byte("5"), 0)
	}
}

// peakRSS is the largest VmHWM among pids, in bytes.
func peakRSS(pids []int) int64 {
	var peak int64
	for _, p := range pids {
		peak = max(peak, davtest.VmHWM(p))
	}
	return peak
}

// httpDelete removes a file from a server between runs (untimed).
func httpDelete(s *benchServer, name string) error {
	req, err := http.NewRequest("DELETE", s.url+name, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(s.user, s.pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
