//go:build linux

package launch

import (
	"syscall"
	"unsafe"
)

// sysProcAttr puts the child in its own process group and has the kernel
// SIGKILL it when the thread that started it dies (see Supervisor).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// waitExited blocks until the child pid has exited, without reaping it
// (waitid with WNOWAIT, as os.Process.Wait does internally), and reports
// whether it could. Until the zombie is reaped its pid and process group id
// cannot be reused, so the rest of its group can be killed safely.
func waitExited(pid int) bool {
	const pPID = 1      // P_PID
	var info [16]uint64 // siginfo_t is 128 bytes
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info)), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		return errno == 0
	}
}
