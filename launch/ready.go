package launch

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// EnvReadyFD names the environment variable through which a supervisor
// hands a child, during its start-up, the descriptor on which to say it is
// ready (the s6 and systemd way of ending a start-up early). A child that
// never says so is taken as started once it has run for its start-up
// window (Spec.Startup).
const EnvReadyFD = "SERKET_READY_FD"

// readyFD is the descriptor the readiness pipe has in the child: the first
// of exec.Cmd.ExtraFiles.
const readyFD = 3

var notify struct {
	once sync.Once
	err  error
}

// NotifyReady tells the supervisor that started this process that its
// start-up is over: from now on an exit is handled by its restart policy
// instead of failing the pipeline. serket's modules call it once their
// service is on the bus. Without a supervisor's descriptor in EnvReadyFD it
// does nothing; it acts once, and removes EnvReadyFD from the environment
// so that the processes this one starts do not inherit it.
func NotifyReady() error {
	notify.once.Do(func() { notify.err = notifyReady() })
	return notify.err
}

func notifyReady() error {
	v, ok := os.LookupEnv(EnvReadyFD)
	if !ok {
		return nil
	}
	os.Unsetenv(EnvReadyFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return fmt.Errorf("launch: $%s=%q is not a descriptor number above 2", EnvReadyFD, v)
	}
	// Write only to a pipe: a number that came from elsewhere must not
	// make this process scribble on one of its own files.
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return fmt.Errorf("launch: $%s=%d is not a pipe from a supervisor", EnvReadyFD, fd)
	}
	f := os.NewFile(uintptr(fd), "ready")
	defer f.Close()
	if _, err := f.Write([]byte("ready\n")); err != nil {
		return fmt.Errorf("launch: telling the supervisor this process is ready: %w", err)
	}
	return nil
}
