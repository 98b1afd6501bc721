//go:build unix && !linux

package launch

import "syscall"

// sysProcAttr puts the child in its own process group. Pdeathsig is only
// available on Linux: elsewhere a killed supervisor may leave orphans.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// waitExited reports false: waiting without reaping (waitid with WNOWAIT)
// is Linux-only, so here the process group is killed right after the child
// is reaped.
func waitExited(int) bool { return false }
