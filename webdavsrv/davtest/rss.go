package davtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// RunPeakRSS runs cmd to the end and returns the peak resident memory of its process
// alone, in bytes. The kernel's rusage is not enough on its own: Go starts children with
// vfork, and at exec Linux folds the parent's peak into the child's maxrss (a race-enabled
// test process reaches 80 MiB). So while the child runs its own high-water mark (VmHWM,
// which starts afresh at exec) is read every 10 ms; and when the rusage figure is above
// the parent's own peak it can only be the child's, exact, and is used instead.
func RunPeakRSS(cmd *exec.Cmd) (int64, error) {
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	stop := make(chan struct{})
	sampled := make(chan int64, 1)
	go func() {
		var peak int64
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, VmHWM(pid))
			select {
			case <-stop:
				sampled <- peak
				return
			case <-t.C:
			}
		}
	}()
	err := cmd.Wait()
	close(stop)
	peak := <-sampled
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss*1024 > VmHWM(os.Getpid()) {
		peak = ru.Maxrss * 1024 // Linux reports KiB
	}
	return peak, err
}

// VmHWM is a process's peak resident memory in bytes, from /proc (0 once it is gone).
func VmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	_, rest, ok := bytes.Cut(b, []byte("\nVmHWM:"))
	if !ok {
		return 0
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 1 {
		return 0
	}
	kb, _ := strconv.ParseInt(string(f[0]), 10, 64)
	return kb << 10
}
