package proc_test

import (
	"runtime"
	"testing"

	"github.com/serket-go/serket/internal/proc"
)

// Touching a buffer larger than the peak so far raises the peak past it,
// whatever memory the heap already held.
func TestPeakRSSGrows(t *testing.T) {
	before := proc.PeakRSS()
	if before <= 0 {
		t.Fatalf("peak RSS %d", before)
	}
	buf := make([]byte, before+64<<20)
	for i := range buf {
		if i%4096 == 0 {
			buf[i] = 1
		}
	}
	after := proc.PeakRSS()
	if after < int64(len(buf)) {
		t.Errorf("peak RSS %d MiB → %d MiB after touching %d MiB", before>>20, after>>20, len(buf)>>20)
	}
	runtime.KeepAlive(buf)
}
