package launch

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/serket-go/serket/procenv"
)

// StartupError is Run's error when a process exits during its start-up
// (Spec.Startup): it exited before it said it was ready and before it had
// run for its start-up window. A module that cannot start (a misspelled
// kind, a missing dataset, a damaged checkpoint) is a pipeline that did not
// start, not a module to run on without.
type StartupError struct {
	Name   string        // the process
	PID    int           // its pid
	Err    error         // its exit error (*exec.ExitError), nil for exit status 0
	Ran    time.Duration // how long it ran
	Window time.Duration // its start-up window
	Tail   []string      // its last lines of output, oldest first
}

func (e *StartupError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "launch: %s exited during start-up: %s after %v (pid %d; it had neither said it was ready nor run for its start-up window of %v)",
		e.Name, status(e.Err), e.Ran.Round(time.Millisecond), e.PID, e.Window)
	if len(e.Tail) == 0 {
		b.WriteString("; it printed nothing")
		return b.String()
	}
	if len(e.Tail) == 1 {
		b.WriteString("; its last line of output:")
	} else {
		fmt.Fprintf(&b, "; its last %d lines of output:", len(e.Tail))
	}
	for _, l := range e.Tail {
		b.WriteString("\n  " + e.Name + " | " + l)
	}
	return b.String()
}

// Unwrap returns the exit error.
func (e *StartupError) Unwrap() error { return e.Err }

// awaitExit waits for the child to exit and returns its exit error and how
// long it ran. With a start-up window it also watches the start-up, reports
// Ready at its end, and up says whether the start-up was over before the
// exit; without one, up is true.
func (p *proc) awaitExit(c *child, window time.Duration, log *slog.Logger) (exitErr error, ran time.Duration, up bool) {
	t0 := time.Now()
	if window <= 0 {
		err := p.wait(c)
		return err, time.Since(t0), true
	}
	exited := make(chan error, 1)
	go func() { exited <- p.wait(c) }()
	timer := time.NewTimer(window)
	defer timer.Stop()
	pid := c.cmd.Process.Pid
	select {
	case <-c.ready:
		p.ready(pid, time.Since(t0), "it said so", log)
	case <-timer.C:
		p.ready(pid, time.Since(t0), "it ran for its start-up window without saying so", log)
	case err := <-exited:
		ran := time.Since(t0)
		// wait has read all the child wrote: a readiness it sent just
		// before exiting is in c.ready by now.
		select {
		case <-c.ready:
			p.ready(pid, ran, "it said so", log)
			return err, ran, true
		default:
		}
		if ran >= window {
			p.ready(pid, ran, "it ran for its start-up window without saying so", log)
			return err, ran, true
		}
		return err, ran, false
	}
	err := <-exited
	return err, time.Since(t0), true
}

// ready reports the end of a child's start-up.
func (p *proc) ready(pid int, took time.Duration, how string, log *slog.Logger) {
	log.Info("process started up", "pid", pid, "took", took.Round(time.Millisecond), "how", how)
	p.s.emit(Event{Name: p.spec.Name, Kind: Ready, PID: pid, Delay: took})
}

// childEnv is a child's environment: env (nil: the supervisor's own)
// without any $SERKET_READY_FD inherited from a supervisor above, which
// would name a descriptor the child does not have, plus this supervisor's
// readiness descriptor if withReady, and its count of restarts
// ($SERKET_RESTART, so that a restarted training integrator resumes its
// run) in place of any inherited one.
func childEnv(env []string, withReady bool, restarts int) []string {
	if env == nil {
		env = os.Environ()
	}
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		if !strings.HasPrefix(kv, procenv.EnvReadyFD+"=") && !strings.HasPrefix(kv, procenv.EnvRestart+"=") {
			out = append(out, kv)
		}
	}
	if withReady {
		out = append(out, fmt.Sprintf("%s=%d", procenv.EnvReadyFD, readyFD))
	}
	return append(out, fmt.Sprintf("%s=%d", procenv.EnvRestart, restarts))
}

// tailLines is how many of a child's last lines of output a StartupError
// shows, and maxTailLine how many bytes of each: enough to show why it
// exited, not its whole log.
const (
	tailLines   = 10
	maxTailLine = 1024
)

// tail is a ring of a child's last lines of output, safe for concurrent use.
type tail struct {
	mu   sync.Mutex
	ring [tailLines]string
	n    int // lines added since reset
}

func (t *tail) reset() {
	t.mu.Lock()
	t.n = 0
	t.mu.Unlock()
}

// add keeps line (a slice of the reader's buffer, so it is copied), without
// its line end and cut to maxTailLine bytes.
func (t *tail) add(line []byte) {
	s := strings.TrimRight(string(line[:min(len(line), maxTailLine+2)]), "\r\n")
	if len(s) > maxTailLine {
		s = strings.ToValidUTF8(s[:maxTailLine], "") + "…"
	}
	t.mu.Lock()
	t.ring[t.n%tailLines] = s
	t.n++
	t.mu.Unlock()
}

// lines returns the kept lines, oldest first.
func (t *tail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := min(t.n, tailLines)
	out := make([]string, 0, k)
	for i := t.n - k; i < t.n; i++ {
		out = append(out, t.ring[i%tailLines])
	}
	return out
}
