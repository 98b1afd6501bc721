// Package proc reports on the running process: its peak resident memory,
// for the training status every process publishes.
package proc

import (
	"runtime"
	"syscall"
)

// PeakRSS is the most resident memory this process has used so far, in
// bytes (getrusage's ru_maxrss); 0 where the system does not say.
func PeakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	if runtime.GOOS == "darwin" {
		return int64(ru.Maxrss) // bytes there
	}
	return int64(ru.Maxrss) * 1024 // KiB on Linux and the BSDs
}
