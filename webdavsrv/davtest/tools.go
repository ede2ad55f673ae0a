// Package davtest starts real WebDAV servers for tests (Apache mod_dav from Debian's apache2,
// on a free loopback port with its own ServerRoot), so every WebDAV test in drepo runs against
// a real server, never a mock.
package davtest

import (
	"os"
	"os/exec"
	"testing"
)

// NeedTool returns the path of a command a test needs. Under CI=true a missing tool fails the
// test (make test installs it); elsewhere the test is skipped with a message saying so.
func NeedTool(t testing.TB, name string, alternatives ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range alternatives {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (make test installs it)", name)
	}
	t.Skipf("%s is not installed; run make test to install it", name)
	return ""
}
