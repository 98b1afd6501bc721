//go:build unix

package procenv

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A supervisor's pipe gets one line; without the variable nothing
// happens; either way the variable is gone afterwards, so that the
// process's own children do not inherit a descriptor they lack.
func TestNotifyReadyWritesToTheSupervisorsPipe(t *testing.T) {
	t.Setenv(EnvReadyFD, "")
	os.Unsetenv(EnvReadyFD)
	if err := notifyReady(); err != nil {
		t.Errorf("without a supervisor: %v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fd := dup(t, w) // notifyReady closes the descriptor it writes to
	w.Close()
	t.Setenv(EnvReadyFD, strconv.Itoa(fd))
	if err := notifyReady(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 16)
	if n, err := r.Read(b); err != nil || string(b[:n]) != "ready\n" {
		t.Errorf("the supervisor read %q (%v), want a line", b[:n], err)
	}
	if _, ok := os.LookupEnv(EnvReadyFD); ok {
		t.Errorf("$%s is still set", EnvReadyFD)
	}
}

// Only a pipe: a number that came from elsewhere must not make the
// process write into one of its own files, or to its standard streams.
func TestNotifyReadyWritesOnlyToAPipe(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "not-a-pipe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := dup(t, f)
	defer syscall.Close(fd)
	for _, v := range []string{strconv.Itoa(fd), "2", "x", "-3"} {
		t.Setenv(EnvReadyFD, v)
		if err := notifyReady(); err == nil || !strings.Contains(err.Error(), EnvReadyFD) {
			t.Errorf("$%s=%s: %v, want it refused", EnvReadyFD, v, err)
		}
	}
	if st, err := f.Stat(); err != nil || st.Size() != 0 {
		t.Errorf("the file got %d bytes (%v), want none", st.Size(), err)
	}
}

func dup(t *testing.T, f *os.File) int {
	t.Helper()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return fd
}
