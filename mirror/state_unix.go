package mirror

import (
	"fmt"
	"os"
	"syscall"
)

// checkOwner refuses a folder that belongs to another user or that others may write.
func checkOwner(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("mirror: state dir: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if int(st.Uid) != os.Getuid() {
		return fmt.Errorf("mirror: state dir %s belongs to uid %d, not to this user (%d); set state_dir", dir, st.Uid, os.Getuid())
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("mirror: state dir %s is writable by every user; chmod o-w it or set state_dir", dir)
	}
	return nil
}
