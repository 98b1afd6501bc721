package launch_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/serket-go/serket/launch"
)

const waitTimeout = 10 * time.Second

// selfPath is the test binary, run as a child process (see TestMain).
func selfPath(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// childSpec is a spec running the test binary in the given child mode.
func childSpec(t *testing.T, name, mode string, rp launch.RestartPolicy, env ...string) launch.Spec {
	t.Helper()
	return launch.Spec{
		Name:    name,
		Path:    selfPath(t),
		Env:     append(childEnviron(mode), env...),
		Restart: rp,
	}
}

// childEnviron is the environment of a test child in the given mode. The
// race detector makes a process sleep 1s at exit unless told otherwise.
func childEnviron(mode string) []string {
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	return append(os.Environ(), "LAUNCH_TEST_CHILD="+mode, "GORACE="+gorace)
}

// output is a concurrency-safe Output that lets tests wait for lines.
type output struct {
	mu      sync.Mutex
	buf     strings.Builder
	writes  int
	changed chan struct{}
}

func newOutput() *output { return &output{changed: make(chan struct{}, 1)} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	o.buf.Write(p)
	o.writes++
	o.mu.Unlock()
	select {
	case o.changed <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitLine waits for an output line matching re and returns its submatches.
func (o *output) waitLine(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(`(?m)` + re)
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		if m := rx.FindStringSubmatch(o.String()); m != nil {
			return m
		}
		select {
		case <-o.changed:
		case <-deadline.C:
			t.Fatalf("no output line matching %q; output:\n%s", re, o.String())
		}
	}
}

// recorder collects events and lets tests wait for them.
type recorder struct {
	mu      sync.Mutex
	events  []launch.Event
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) record(ev launch.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// of returns the events of the named process, optionally of one kind.
func (r *recorder) of(name string, kind launch.EventKind) []launch.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var evs []launch.Event
	for _, ev := range r.events {
		if ev.Name == name && (kind == 0 || ev.Kind == kind) {
			evs = append(evs, ev)
		}
	}
	return evs
}

// waitN waits until the named process has had n events of kind within
// timeout and returns them; ok is false on timeout.
func (r *recorder) waitN(name string, kind launch.EventKind, n int, timeout time.Duration) (evs []launch.Event, ok bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if evs = r.of(name, kind); len(evs) >= n {
			return evs, true
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			return evs, false
		}
	}
}

// mustWaitN is waitN failing the test on timeout.
func (r *recorder) mustWaitN(t *testing.T, name string, kind launch.EventKind, n int) []launch.Event {
	t.Helper()
	evs, ok := r.waitN(name, kind, n, waitTimeout)
	if !ok {
		t.Fatalf("%s: got %d %v events, want %d; all events: %v", name, len(evs), kind, n, r.of(name, 0))
	}
	return evs
}

func kinds(evs []launch.Event) string {
	s := make([]string, len(evs))
	for i, ev := range evs {
		s[i] = ev.Kind.String()
	}
	return strings.Join(s, " ")
}

// running is a supervisor running in the background.
type running struct {
	sup    *launch.Supervisor
	out    *output
	events *recorder
	cancel context.CancelFunc
	result chan error
	once   sync.Once
	err    error
	took   time.Duration
}

// start runs a supervisor for specs in the background; the test's cleanup
// stops it if the test has not.
func start(t *testing.T, specs []launch.Spec, grace time.Duration) *running {
	t.Helper()
	r := &running{out: newOutput(), events: newRecorder(), result: make(chan error, 1)}
	r.sup = launch.NewSupervisor(specs, launch.Options{
		Output:  r.out,
		Grace:   grace,
		Logger:  testLogger(t),
		OnEvent: r.events.record,
	})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.result <- r.sup.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the supervisor and waits for Run to return.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	t0 := time.Now()
	r.cancel()
	r.once.Do(func() {
		select {
		case r.err = <-r.result:
			r.took = time.Since(t0)
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return within %v of cancel", waitTimeout)
		}
	})
	return r.err
}

// wait waits for Run to return by itself, as it does when a process fails
// to start.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	r.once.Do(func() {
		select {
		case r.err = <-r.result:
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return by itself within %v", waitTimeout)
		}
	})
	return r.err
}

// alive reports whether pid is a live process (not a zombie).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ...; comm may contain spaces and parentheses.
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// waitGone waits until pid has died; killing is asynchronous, so this polls.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive", pid)
		}
		<-tick.C
	}
}

func TestSupervisorOutputIsPrefixedByWholeLines(t *testing.T) {
	t.Parallel()
	const lines = 300
	never := launch.RestartPolicy{Policy: launch.Never}
	names := []string{"a", "bb", "ccc"}
	var specs []launch.Spec
	for _, name := range names {
		specs = append(specs, childSpec(t, name, "chatty", never,
			"LAUNCH_TEST_TAG="+name, fmt.Sprintf("LAUNCH_TEST_LINES=%d", lines)))
	}
	r := start(t, specs, 0)
	for _, name := range names {
		ev := r.events.mustWaitN(t, name, launch.Exited, 1)[0]
		if ev.Err != nil {
			t.Errorf("%s exited with %v, want status 0", name, ev.Err)
		}
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	line := regexp.MustCompile(`^(a  |bb |ccc) \| (\S+) (out|err) (\d+) (x+)$`)
	next := map[string]int{} // "name stream" -> next line number
	for _, l := range strings.Split(strings.TrimSuffix(r.out.String(), "\n"), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("malformed or interleaved output line %q", l)
		}
		name := strings.TrimSpace(m[1])
		if m[2] != name || len(m[5]) != 60 {
			t.Fatalf("line %q: prefix %q does not match its content", l, name)
		}
		key := name + " " + m[3]
		if n, _ := strconv.Atoi(m[4]); n != next[key] {
			t.Fatalf("line %q: got line %d of %s, want %d", l, n, key, next[key])
		}
		next[key]++
	}
	for _, name := range names {
		for _, stream := range []string{"out", "err"} {
			if got := next[name+" "+stream]; got != lines {
				t.Errorf("%s %s: got %d lines, want %d", name, stream, got, lines)
			}
		}
	}
}

func TestSupervisorRestartPolicies(t *testing.T) {
	t.Parallel()
	const backoff = 20 * time.Millisecond
	tests := []struct {
		name        string
		policy      launch.Policy
		code        int
		wantRestart bool
	}{
		{name: "on-failure restarts after exit 1", policy: launch.OnFailure, code: 1, wantRestart: true},
		{name: "on-failure leaves exit 0 alone", policy: launch.OnFailure, code: 0, wantRestart: false},
		{name: "never leaves exit 1 alone", policy: launch.Never, code: 1, wantRestart: false},
		{name: "always restarts after exit 0", policy: launch.Always, code: 0, wantRestart: true},
		{name: "always restarts after exit 3", policy: launch.Always, code: 3, wantRestart: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rp := launch.RestartPolicy{
				Policy:     tt.policy,
				Backoff:    launch.Duration(backoff),
				MaxBackoff: launch.Duration(time.Second),
			}
			r := start(t, []launch.Spec{childSpec(t, "p", "exit", rp, fmt.Sprintf("LAUNCH_TEST_CODE=%d", tt.code))}, 0)

			if !tt.wantRestart {
				exited := r.events.mustWaitN(t, "p", launch.Exited, 1)[0]
				if gotErr := exited.Err != nil; gotErr != (tt.code != 0) {
					t.Errorf("Exited.Err = %v for exit status %d", exited.Err, tt.code)
				}
				// Nothing should follow; give a restart ample time to show.
				if evs, ok := r.events.waitN("p", launch.Restarting, 1, 15*backoff); ok {
					t.Fatalf("got a restart: %v", evs)
				}
				if pid := r.sup.PIDs()["p"]; pid != 0 {
					t.Errorf("PIDs()[p] = %d, want 0", pid)
				}
				if got, want := kinds(r.events.of("p", 0)), "started exited"; got != want {
					t.Errorf("events = %q, want %q", got, want)
				}
				return
			}

			const restarts = 3
			r.events.mustWaitN(t, "p", launch.Started, restarts+1)
			if err := r.stop(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			evs := r.events.of("p", 0)
			// started exited restarting started exited restarting ... [stopped]
			wantDelay := backoff
			for i := 0; i < restarts; i++ {
				group := evs[3*i : 3*i+4]
				if got, want := kinds(group), "started exited restarting started"; got != want {
					t.Fatalf("events %d..: got %q, want %q (all: %s)", 3*i, got, want, kinds(evs))
				}
				if gotErr := group[1].Err != nil; gotErr != (tt.code != 0) {
					t.Errorf("Exited.Err = %v for exit status %d", group[1].Err, tt.code)
				}
				if group[2].Delay != wantDelay || group[2].Restarts != i+1 {
					t.Errorf("restart %d: delay %v restarts %d, want %v and %d", i+1, group[2].Delay, group[2].Restarts, wantDelay, i+1)
				}
				wantDelay *= 2
			}
			if last := evs[len(evs)-1]; last.Kind != launch.Stopped {
				t.Errorf("last event %v, want stopped", last.Kind)
			}
		})
	}
}

func TestSupervisorGivesUpAfterMaxRestarts(t *testing.T) {
	t.Parallel()
	crash := launch.RestartPolicy{Policy: launch.OnFailure, Backoff: launch.Duration(10 * time.Millisecond), MaxRestarts: 2}
	r := start(t, []launch.Spec{
		childSpec(t, "crash", "exit", crash, "LAUNCH_TEST_CODE=1"),
		childSpec(t, "steady", "term", launch.RestartPolicy{}),
	}, 0)
	gaveUp := r.events.mustWaitN(t, "crash", launch.GaveUp, 1)[0]
	if gaveUp.Restarts != 2 {
		t.Errorf("GaveUp.Restarts = %d, want 2", gaveUp.Restarts)
	}
	want := "started exited restarting started exited restarting started exited gave-up"
	if got := kinds(r.events.of("crash", 0)); got != want {
		t.Errorf("events = %q, want %q", got, want)
	}
	r.out.waitLine(t, `^steady \| ready$`)
	pids := r.sup.PIDs()
	if pids["crash"] != 0 || pids["steady"] == 0 {
		t.Errorf("PIDs() = %v, want crash 0 and steady running", pids)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, want := kinds(r.events.of("crash", 0)), want; got != want {
		t.Errorf("events after stop = %q, want %q", got, want)
	}
}

func TestSupervisorRestartsKilledChild(t *testing.T) {
	t.Parallel()
	rp := launch.RestartPolicy{Policy: launch.OnFailure, Backoff: launch.Duration(10 * time.Millisecond)}
	r := start(t, []launch.Spec{childSpec(t, "victim", "term", rp)}, 0)
	first := r.events.mustWaitN(t, "victim", launch.Started, 1)[0]
	if got := r.sup.PIDs()["victim"]; got != first.PID {
		t.Errorf("PIDs()[victim] = %d, want %d", got, first.PID)
	}
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	exited := r.events.mustWaitN(t, "victim", launch.Exited, 1)[0]
	var ee *exec.ExitError
	if !errors.As(exited.Err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("Exited.Err = %v, want death by SIGKILL", exited.Err)
	}
	second := r.events.mustWaitN(t, "victim", launch.Started, 2)[1]
	if second.PID == first.PID || second.PID == 0 {
		t.Errorf("restarted pid %d, first pid %d", second.PID, first.PID)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if pid := r.sup.PIDs()["victim"]; pid != 0 {
		t.Errorf("PIDs()[victim] = %d after Run, want 0", pid)
	}
}

func TestSupervisorGracefulStop(t *testing.T) {
	t.Parallel()
	const grace = 300 * time.Millisecond
	always := launch.RestartPolicy{Policy: launch.Always}
	r := start(t, []launch.Spec{
		childSpec(t, "polite", "term", always),
		childSpec(t, "stubborn", "ignore", always),
	}, grace)
	r.out.waitLine(t, `^polite   \| ready$`)
	r.out.waitLine(t, `^stubborn \| ready$`)
	stubbornPID := r.sup.PIDs()["stubborn"]

	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if r.took < grace || r.took > grace+3*time.Second {
		t.Errorf("Run returned %v after cancel, want just over the %v grace", r.took, grace)
	}
	if !strings.Contains(r.out.String(), "polite   | got SIGTERM\n") {
		t.Errorf("polite did not report SIGTERM; output:\n%s", r.out.String())
	}
	tests := []struct {
		name    string
		want    string
		wantSig syscall.Signal
	}{
		{name: "polite", want: "started stopped"},
		{name: "stubborn", want: "started stopped", wantSig: syscall.SIGKILL},
	}
	for _, tt := range tests {
		evs := r.events.of(tt.name, 0)
		if got := kinds(evs); got != tt.want {
			t.Errorf("%s: events %q, want %q", tt.name, got, tt.want)
			continue
		}
		stopped := evs[1]
		var ee *exec.ExitError
		switch {
		case tt.wantSig == 0 && stopped.Err != nil:
			t.Errorf("%s: Stopped.Err = %v, want a clean exit", tt.name, stopped.Err)
		case tt.wantSig != 0 && (!errors.As(stopped.Err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != tt.wantSig):
			t.Errorf("%s: Stopped.Err = %v, want death by %v", tt.name, stopped.Err, tt.wantSig)
		}
	}
	if alive(stubbornPID) {
		t.Errorf("stubborn (pid %d) still alive after Run returned", stubbornPID)
	}
}

func TestSupervisorStopKillsGrandchildren(t *testing.T) {
	t.Parallel()
	r := start(t, []launch.Spec{childSpec(t, "parent", "grandchild", launch.RestartPolicy{})}, 200*time.Millisecond)
	m := r.out.waitLine(t, `^parent \| grandchild (\d+)$`)
	pid, _ := strconv.Atoi(m[1])
	if !alive(pid) {
		t.Fatalf("grandchild %d not running", pid)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	waitGone(t, pid)
}

func TestSupervisorMissingBinary(t *testing.T) {
	t.Parallel()
	const missing = "/nonexistent/serket-ghost"
	out := newOutput()
	events := newRecorder()
	sup := launch.NewSupervisor([]launch.Spec{
		childSpec(t, "fine", "term", launch.RestartPolicy{}),
		{Name: "ghost", Path: missing},
	}, launch.Options{Output: out, Logger: testLogger(t), OnEvent: events.record, Grace: time.Second})
	done := make(chan error, 1)
	go func() { done <- sup.Run(context.Background()) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return")
	}
	if err == nil || !strings.Contains(err.Error(), "ghost") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Run = %v, want an error naming ghost and %s", err, missing)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Run = %v, want it to wrap os.ErrNotExist", err)
	}
	if evs := events.of("fine", 0); len(evs) > 0 && evs[len(evs)-1].Kind != launch.Stopped {
		t.Errorf("fine: events %q, want it stopped", kinds(evs))
	}
	for name, pid := range sup.PIDs() {
		if pid != 0 {
			t.Errorf("%s still has pid %d after Run", name, pid)
		}
	}
}

func TestSupervisorBadSpecs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		specs   []launch.Spec
		wantErr string
	}{
		{name: "no name", specs: []launch.Spec{{Path: "/bin/true"}}, wantErr: "no name"},
		{name: "duplicate", specs: []launch.Spec{{Name: "a", Path: "/bin/true"}, {Name: "a", Path: "/bin/true"}}, wantErr: `duplicate process name "a"`},
		{name: "no path", specs: []launch.Spec{{Name: "a"}}, wantErr: `"a" has no path`},
		{name: "bad policy", specs: []launch.Spec{{Name: "a", Path: "/bin/true", Restart: launch.RestartPolicy{Policy: "sometimes"}}}, wantErr: `unknown restart policy "sometimes"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := launch.NewSupervisor(tt.specs, launch.Options{Logger: testLogger(t)}).Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Run = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestSupervisorKilledLeavesNoOrphans SIGKILLs a supervisor (the test
// binary in "supervise" mode) and checks that its child dies too.
func TestSupervisorKilledLeavesNoOrphans(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig is Linux only")
	}
	cmd := exec.Command(selfPath(t))
	cmd.Env = childEnviron("supervise")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	pidc := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if pid, ok := strings.CutPrefix(sc.Text(), "victim pid "); ok {
				n, _ := strconv.Atoi(pid)
				pidc <- n
				break
			}
		}
		for sc.Scan() { // drain until the supervisor dies
		}
		close(pidc)
	}()
	var victim int
	select {
	case victim = <-pidc:
	case <-time.After(waitTimeout):
		t.Fatal("the supervisor did not start its child")
	}
	if victim == 0 || !alive(victim) {
		t.Fatalf("child %d not running", victim)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waitGone(t, victim)
}

// TestSupervisorLeavesNoGoroutines is not parallel, so that the goroutine
// count is not disturbed by other tests (parallel tests are paused while it
// runs). It also calls PIDs concurrently with the supervision (for -race).
func TestSupervisorLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	crash := launch.RestartPolicy{Policy: launch.Always, Backoff: launch.Duration(5 * time.Millisecond)}
	r := start(t, []launch.Spec{
		childSpec(t, "crash", "exit", crash, "LAUNCH_TEST_CODE=1"),
		childSpec(t, "steady", "term", launch.RestartPolicy{}),
	}, time.Second)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			if _, ok := r.events.waitN("crash", launch.Started, 4, time.Millisecond); ok {
				return
			}
			_ = r.sup.PIDs()
		}
	}()
	<-polled
	r.out.waitLine(t, `^steady \| ready$`)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // polling: goroutines end asynchronously
	}
}

func TestEventKindString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind launch.EventKind
		want string
	}{
		{launch.Started, "started"},
		{launch.Exited, "exited"},
		{launch.Restarting, "restarting"},
		{launch.GaveUp, "gave-up"},
		{launch.Stopped, "stopped"},
		{launch.EventKind(42), "EventKind(42)"},
	}
	for _, tt := range tests {
		if got := tt.kind.String(); got != tt.want {
			t.Errorf("EventKind(%d).String() = %q, want %q", int(tt.kind), got, tt.want)
		}
	}
}
