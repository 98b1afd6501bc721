package launch

import "os"

// The supervisor's side of the readiness protocol (procenv.NotifyReady is
// the child's): during a child's start-up it hands the child the write end
// of a pipe as its first extra file and names it in $SERKET_READY_FD.

// readyFD is the descriptor the readiness pipe has in the child: the first
// of exec.Cmd.ExtraFiles.
const readyFD = 3

// awaitReady reads the readiness pipe r until the child writes to it (then
// it signals ready) or closes it.
func awaitReady(r *os.File, ready chan<- struct{}) {
	defer r.Close()
	var b [1]byte
	if n, _ := r.Read(b[:]); n > 0 {
		ready <- struct{}{}
	}
}
