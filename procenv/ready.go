package procenv

import (
	"fmt"
	"os"
	"strconv"
	"sync"
)

var notify struct {
	once sync.Once
	err  error
}

// NotifyReady tells the supervisor that started this process that its
// start-up is over: from now on an exit is handled by its restart policy
// instead of failing the pipeline (the s6 and systemd way of ending a
// start-up early). A module that joins through module.Flags does so once
// its service is on the bus; serket's integrator once it serves. A process
// that never says so is taken as started once it has run for its start-up
// window.
//
// The supervisor hands the child a pipe during its start-up and names its
// descriptor in $SERKET_READY_FD; NotifyReady writes a line to it. Without
// that variable it does nothing. It acts once, and removes the variable
// from the environment so that the processes this one starts do not
// inherit a descriptor they do not have.
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
		return fmt.Errorf("procenv: $%s=%q is not a descriptor number above 2", EnvReadyFD, v)
	}
	// Write only to a pipe: a number that came from elsewhere must not
	// make this process scribble on one of its own files.
	if !isPipe(fd) {
		return fmt.Errorf("procenv: $%s=%d is not a pipe from a supervisor", EnvReadyFD, fd)
	}
	f := os.NewFile(uintptr(fd), "ready")
	defer f.Close()
	if _, err := f.Write([]byte("ready\n")); err != nil {
		return fmt.Errorf("procenv: telling the supervisor this process is ready: %w", err)
	}
	return nil
}
