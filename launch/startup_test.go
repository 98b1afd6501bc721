package launch_test

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/procenv"
)

// A process that exits during its start-up, whatever its exit status, is
// a pipeline that failed to start: Run stops the others and returns an
// error naming the process, its exit status and its last output. A
// misspelled module used to exit 0 and be left dead while the pipeline ran
// on without it.
func TestSupervisorExitDuringStartupFailsThePipeline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		code       int
		policy     launch.Policy
		wantStatus string
	}{
		{name: "exit 0 under on-failure", code: 0, policy: launch.OnFailure, wantStatus: "exit status 0"},
		{name: "exit 0 under never", code: 0, policy: launch.Never, wantStatus: "exit status 0"},
		{name: "exit 3 under always", code: 3, policy: launch.Always, wantStatus: "exit status 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bad := childSpec(t, "bad", "exit", launch.RestartPolicy{Policy: tt.policy, Backoff: launch.Duration(time.Millisecond)},
				"LAUNCH_TEST_CODE="+string(rune('0'+tt.code)))
			bad.Startup = time.Minute // no window to run out: only the exit counts
			r := start(t, []launch.Spec{bad, childSpec(t, "steady", "term", launch.RestartPolicy{})}, 0)

			err := r.wait(t)
			var se *launch.StartupError
			if !errors.As(err, &se) {
				t.Fatalf("Run = %v, want a *StartupError", err)
			}
			if se.Name != "bad" || se.Window != time.Minute || (se.Err == nil) != (tt.code == 0) {
				t.Errorf("StartupError %+v, want bad with its exit error, window 1m", se)
			}
			if len(se.Tail) != 1 || se.Tail[0] != "exiting with "+string(rune('0'+tt.code)) {
				t.Errorf("Tail = %q, want its one line of output", se.Tail)
			}
			for _, want := range []string{"bad exited during start-up", tt.wantStatus, "bad | exiting with"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if got := kinds(r.events.of("bad", 0)); got != "started exited" {
				t.Errorf("bad: events %q, want started exited (no restart)", got)
			}
			if evs := r.events.of("steady", 0); len(evs) > 0 && evs[len(evs)-1].Kind != launch.Stopped {
				t.Errorf("steady: events %q, want it stopped", kinds(evs))
			}
			for name, pid := range r.sup.PIDs() {
				if pid != 0 {
					t.Errorf("%s still has pid %d after Run", name, pid)
				}
			}
		})
	}
}

// A process that said it was ready has started: its exit is its restart
// policy's to handle, as before.
func TestSupervisorReadyEndsStartup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		code        int
		wantRestart bool
	}{
		{name: "clean exit after ready is left alone", code: 0},
		{name: "failure after ready is restarted", code: 1, wantRestart: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sp := childSpec(t, "p", "notify", launch.RestartPolicy{Policy: launch.OnFailure, Backoff: launch.Duration(time.Millisecond), MaxRestarts: 1},
				"LAUNCH_TEST_CODE="+string(rune('0'+tt.code)))
			sp.Startup = time.Minute
			r := start(t, []launch.Spec{sp}, 0)
			if tt.wantRestart {
				r.events.mustWaitN(t, "p", launch.GaveUp, 1)
			} else {
				r.events.mustWaitN(t, "p", launch.Exited, 1)
			}
			if err := r.stop(t); err != nil {
				t.Fatalf("Run = %v, want nil: the process had started", err)
			}
			// Only the first start has a start-up, so only it reports Ready.
			want := "started ready exited"
			if tt.wantRestart {
				want = "started ready exited restarting started exited gave-up"
			}
			if got := kinds(r.events.of("p", 0)); got != want {
				t.Errorf("events %q, want %q", got, want)
			}
			if ready := r.events.of("p", launch.Ready)[0]; ready.Delay <= 0 || ready.Delay >= time.Minute {
				t.Errorf("Ready.Delay = %v, want how long the start-up took", ready.Delay)
			}
		})
	}
}

// A process that never says it is ready has started once it has run for
// its start-up window; a death after that is restarted as before.
func TestSupervisorStartupWindowEnds(t *testing.T) {
	t.Parallel()
	sp := childSpec(t, "quiet", "term", launch.RestartPolicy{Policy: launch.OnFailure, Backoff: launch.Duration(time.Millisecond)})
	sp.Startup = 100 * time.Millisecond
	r := start(t, []launch.Spec{sp}, 0)
	ready := r.events.mustWaitN(t, "quiet", launch.Ready, 1)[0]
	if ready.Delay < sp.Startup {
		t.Errorf("Ready after %v, before the %v window ran out", ready.Delay, sp.Startup)
	}
	if err := syscall.Kill(ready.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.events.mustWaitN(t, "quiet", launch.Started, 2)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got, want := kinds(r.events.of("quiet", 0)), "started ready exited restarting started stopped"; got != want {
		t.Errorf("events %q, want %q", got, want)
	}
}

// The error of a chatty process that fails to start shows its last lines,
// not its whole output.
func TestStartupErrorShowsTheLastLines(t *testing.T) {
	t.Parallel()
	sp := childSpec(t, "chatty", "chatty", launch.RestartPolicy{}, "LAUNCH_TEST_TAG=c", "LAUNCH_TEST_LINES=300")
	sp.Startup = time.Minute
	r := start(t, []launch.Spec{sp}, 0)
	var se *launch.StartupError
	if err := r.wait(t); !errors.As(err, &se) {
		t.Fatalf("Run = %v, want a *StartupError", err)
	}
	if len(se.Tail) != 10 {
		t.Fatalf("Tail has %d lines, want 10: %q", len(se.Tail), se.Tail)
	}
	last := se.Tail[len(se.Tail)-1]
	if !strings.HasPrefix(last, "c out 299 ") && !strings.HasPrefix(last, "c err 299 ") {
		t.Errorf("last line %q, want the child's last", last)
	}
}

// A child is never handed a readiness descriptor it does not have: one
// inherited from a supervisor above is removed from its environment.
func TestSupervisorDoesNotPassOnAReadinessDescriptor(t *testing.T) {
	t.Parallel()
	for _, startup := range []time.Duration{0, time.Minute} {
		sp := childSpec(t, "env", "readyenv", launch.RestartPolicy{Policy: launch.Never}, procenv.EnvReadyFD+"=7")
		sp.Startup = startup
		r := start(t, []launch.Spec{sp}, 0)
		r.events.mustWaitN(t, "env", launch.Exited, 1)
		r.stop(t) // with a window its exit fails the start; only its environment matters here
		want := "env | ready fd \n"
		if startup > 0 {
			want = "env | ready fd 3\n"
		}
		if !strings.Contains(r.out.String(), want) {
			t.Errorf("startup %v: output %q, want %q", startup, r.out.String(), want)
		}
	}
}

// A child learns how many times it was restarted before ($SERKET_RESTART:
// 0 at its first start), so that a restarted training integrator resumes
// its run; one inherited from a supervisor above is replaced.
func TestSupervisorTellsAChildItsRestarts(t *testing.T) {
	t.Parallel()
	sp := childSpec(t, "r", "restarts", launch.RestartPolicy{Policy: launch.OnFailure, Backoff: launch.Duration(time.Millisecond), MaxRestarts: 2}, procenv.EnvRestart+"=7")
	r := start(t, []launch.Spec{sp}, 0)
	r.events.mustWaitN(t, "r", launch.GaveUp, 1)
	r.stop(t)
	for _, want := range []string{"r | restart 0\n", "r | restart 1\n", "r | restart 2\n"} {
		if !strings.Contains(r.out.String(), want) {
			t.Errorf("output %q lacks %q", r.out.String(), want)
		}
	}
}
