package davtest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Server is a running WebDAV server for a test.
type Server struct {
	URL      string // base URL of the WebDAV root, ending in "/"
	Root     string // the folder on disk behind URL
	User     string
	Password string
	Name     string // "apache" or "drepo", for test names
}

// ApacheModules is where Debian's apache2 keeps its modules.
const ApacheModules = "/usr/lib/apache2/modules"

// StartApache starts Debian's Apache 2.4 with mod_dav_fs on a free 127.0.0.1 port, htpasswd
// basic auth (bcrypt) and LimitRequestBody 0 (since 2.4.54 the default caps bodies at 1 GiB),
// and stops it when the test ends.
func StartApache(t testing.TB) *Server {
	t.Helper()
	bin := NeedTool(t, "apache2", "/usr/sbin/apache2")
	base, err := os.MkdirTemp("", "drepo-apache-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	a, err := LaunchApache(bin, base, ApacheOptions{User: "drepo", Password: "test-" + strconv.Itoa(os.Getpid())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return &a.Server
}

// Apache is a running Apache process group.
type Apache struct {
	Server
	Pgid int // process group of the parent and its workers (for RSS sampling)
	stop func()
}

// Stop ends Apache (SIGTERM to its process group, SIGKILL after 10 s).
func (a *Apache) Stop() { a.stop() }

// ApacheOptions configure LaunchApache.
type ApacheOptions struct {
	User, Password string
	// AnonymousRead lets GET, HEAD, OPTIONS and PROPFIND through without a password, the
	// way a device repository is usually served. Apache checks the bcrypt hash on every
	// authenticated request (mod_authn_socache caches the stored hash, not the verdict), so
	// with authenticated reads a run of many small GETs measures bcrypt, not the client.
	AnonymousRead bool
}

// LaunchApache starts Apache from binary bin with its ServerRoot in base (which must exist
// and is left for the caller to remove). Run as root, Apache serves as www-data, so the
// folders it writes are handed to that user. Used by tests and by drepo-bench.
func LaunchApache(bin, base string, opt ApacheOptions) (*Apache, error) {
	s := Server{Root: filepath.Join(base, "dav"), User: opt.User, Password: opt.Password, Name: "apache"}
	for _, d := range []string{s.Root, filepath.Join(base, "lock"), filepath.Join(base, "run")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(s.Password), bcrypt.MinCost)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(base, "htpasswd"), []byte(s.User+":"+string(hash)+"\n"), 0o644); err != nil {
		return nil, err
	}
	userLine := ""
	if os.Geteuid() == 0 {
		u, err := user.Lookup("www-data")
		if err != nil {
			return nil, fmt.Errorf("apache runs as www-data when started as root: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, d := range []string{s.Root, filepath.Join(base, "lock")} {
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, err
			}
		}
		if err := os.Chmod(base, 0o755); err != nil {
			return nil, err
		}
		userLine = "User www-data\nGroup www-data\n"
	}
	var lastErr string
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		conf := filepath.Join(base, "httpd.conf")
		if err := os.WriteFile(conf, []byte(apacheConf(base, port, userLine, opt.AnonymousRead)), 0o644); err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, "-f", conf, "-DFOREGROUND")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start apache2: %w", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if waitListening(addr, exited, 15*time.Second) {
			s.URL = "http://" + addr + "/"
			return &Apache{Server: s, Pgid: cmd.Process.Pid, stop: func() { StopGroup(cmd.Process.Pid, exited) }}, nil
		}
		StopGroup(cmd.Process.Pid, exited)
		b, _ := os.ReadFile(filepath.Join(base, "error.log"))
		lastErr = string(b)
	}
	return nil, fmt.Errorf("apache2 did not start; error.log:\n%s", lastErr)
}

func apacheConf(base string, port int, userLine string, anonymousRead bool) string {
	require := "Require valid-user"
	if anonymousRead {
		require = "<RequireAny>\n    Require method GET HEAD OPTIONS PROPFIND\n    Require valid-user\n  </RequireAny>"
	}
	mods := []string{"mpm_event", "authz_core", "authn_core", "authn_file", "authz_user", "auth_basic", "dav", "dav_fs"}
	var b strings.Builder
	for _, m := range mods {
		fmt.Fprintf(&b, "LoadModule %s_module %s/mod_%s.so\n", m, ApacheModules, m)
	}
	fmt.Fprintf(&b, `ServerRoot %[1]q
ServerName 127.0.0.1
Listen 127.0.0.1:%[2]d
PidFile %[1]s/run/httpd.pid
DefaultRuntimeDir %[1]s/run
Mutex file:%[1]s/run default
ErrorLog %[1]s/error.log
LogLevel warn
%[3]sTimeout 300
KeepAlive On
MaxKeepAliveRequests 0
LimitRequestBody 0
DavLockDB %[1]s/lock/DavLock
DocumentRoot %[1]s/dav
<Directory />
  AllowOverride None
  Require all denied
</Directory>
<Directory %[1]s/dav>
  Dav On
  Options None
  AllowOverride None
  AuthType Basic
  AuthName "drepo test"
  AuthBasicProvider file
  AuthUserFile %[1]s/htpasswd
  %[4]s
</Directory>
`, base, port, userLine, require)
	return b.String()
}

// FreePort returns a TCP port free on 127.0.0.1 right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitListening polls addr until an HTTP request gets any answer, the process exits, or the
// deadline passes.
func waitListening(addr string, exited <-chan struct{}, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if resp, err := c.Get("http://" + addr + "/"); err == nil {
			resp.Body.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// StopGroup ends the process group led by pid (SIGTERM, then SIGKILL after 10 s) and waits
// until exited is closed.
func StopGroup(pid int, exited <-chan struct{}) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
}
