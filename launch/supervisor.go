package launch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Spec is one process to supervise, as resolved by Pipeline.Specs.
type Spec struct {
	// Name identifies the process in output prefixes, logs, events and PIDs.
	Name string
	// Path is the program to run; a name without a slash is looked up in
	// PATH.
	Path string
	// Args are the arguments after the program name (argv[1:]).
	Args []string
	// Env is the complete environment ("KEY=value"); nil inherits the
	// supervisor's environment.
	Env []string
	// Dir is the working directory; empty means the supervisor's.
	Dir string
	// Restart says when and how fast the process is restarted. Zero fields
	// take the pipeline file defaults (on-failure, 200ms, 10s, unlimited).
	Restart RestartPolicy
	// Startup is the process's start-up window. A process is starting up
	// from its first start until it says it is ready (procenv.NotifyReady) or has
	// run for Startup, whichever comes first; if it exits before then,
	// whatever its exit status (0 included), the pipeline has failed to
	// start: Run stops every process and returns a *StartupError. Restarts
	// after start-up follow Restart alone. Zero means no start-up check;
	// Pipeline.Specs sets the file's value (default 5s).
	Startup time.Duration
}

// EventKind is the kind of an Event.
type EventKind int

// The event kinds, in the order they happen in a process's life.
const (
	// Started: the process was started; Event.PID is set.
	Started EventKind = iota + 1
	// Ready: the process's start-up is over (Spec.Startup): it said it was
	// ready, or it ran for its start-up window. Reported once, for the
	// first start, and only for a process with a start-up window.
	Ready
	// Exited: the process exited (or could not be restarted) while the
	// supervisor was running; Event.Err is nil for exit status 0. All of
	// the process's output has been written when Exited is reported.
	Exited
	// Restarting: the process will be started again after Event.Delay;
	// Event.Restarts counts the consecutive restarts, this one included.
	Restarting
	// GaveUp: the process exited once more after MaxRestarts consecutive
	// restarts and is left dead.
	GaveUp
	// Stopped: supervision of the process ended because the supervisor is
	// stopping. Event.PID and Event.Err describe the process that was
	// stopped, or are zero if it was waiting to be restarted.
	Stopped
)

// String returns the lower-case name of the kind ("started", ...).
func (k EventKind) String() string {
	switch k {
	case Started:
		return "started"
	case Ready:
		return "ready"
	case Exited:
		return "exited"
	case Restarting:
		return "restarting"
	case GaveUp:
		return "gave-up"
	case Stopped:
		return "stopped"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event reports a change in the life of a supervised process.
type Event struct {
	// Name is the process name (Spec.Name).
	Name string
	// Kind says what happened.
	Kind EventKind
	// PID is the process id for Started, Ready, Exited and Stopped.
	PID int
	// Err is the exit error for Exited and Stopped (nil for exit status
	// 0, an *exec.ExitError otherwise) or the start error for an Exited
	// event of a restart that could not start the program.
	Err error
	// Restarts is the number of consecutive restarts so far (Restarting,
	// GaveUp).
	Restarts int
	// Delay is the wait before the restart (Restarting), or how long the
	// process took to start up (Ready).
	Delay time.Duration
}

// Options configures a Supervisor.
type Options struct {
	// Output receives the children's stdout and stderr, line by line, each
	// line prefixed with "name | " (names padded to equal width). Lines are
	// written whole, with one Write call each, under one lock. nil means
	// os.Stderr.
	Output io.Writer
	// Grace is how long stopping processes get between SIGTERM and
	// SIGKILL. Zero means 5s.
	Grace time.Duration
	// Logger receives the supervisor's own logs; nil means slog.Default().
	Logger *slog.Logger
	// OnEvent, if set, is called synchronously for every event. It may be
	// called from several goroutines at once (one per process), but the
	// events of one process are reported in order. It must not block for
	// long: the process's supervision waits for it.
	OnEvent func(Event)
}

const (
	defaultGrace = 5 * time.Second
	// minStable is the shortest run after which a process counts as having
	// started successfully, whatever its backoff (see stableAfter).
	minStable = 5 * time.Second
	// drainTimeout bounds the wait for a child's output pipes to reach EOF
	// once the child is gone: a descendant that escaped the process group
	// and still holds them gets them closed under it.
	drainTimeout = time.Second
	// maxLine is the longest output line written as one piece; longer lines
	// are split.
	maxLine = 64 << 10
)

// errStopping is returned by proc.start when the supervisor is stopping.
var errStopping = errors.New("launch: supervisor is stopping")

// Supervisor starts a set of processes, restarts them according to their
// restart policies, copies their output and stops them all gracefully.
//
// Each child runs in its own process group (Setpgid), so that signals reach
// its descendants too, and with a parent-death signal of SIGKILL
// (Pdeathsig) so that a supervisor that is killed outright leaves no
// orphaned children behind (its grandchildren are not covered: they only
// die with the process group on a normal stop).
//
// Pdeathsig fires when the OS thread that started the child exits, not
// when the supervisor process does, and the Go runtime may end threads (a
// goroutine that exits while locked to its thread takes the thread with
// it). Each process is therefore supervised by its own goroutine, locked to
// its OS thread with runtime.LockOSThread for as long as the supervision
// lasts; that goroutine starts, waits for and restarts the child, so the
// thread that forked a child outlives it.
//
// When a child exits, whatever is left of its process group is killed with
// SIGKILL: a process's descendants live and die with it.
type Supervisor struct {
	procs   []*proc
	output  io.Writer
	outMu   sync.Mutex
	grace   time.Duration
	log     *slog.Logger
	onEvent func(Event)
	started atomic.Bool
}

// proc is the supervision state of one Spec.
type proc struct {
	s      *Supervisor
	spec   Spec
	prefix string

	mu sync.Mutex
	// pid is the pid of the running child, or 0. While it is non-zero the
	// child has not been reaped, so its pid (and process group id) cannot
	// have been reused, and signalling the group is safe.
	pid int

	// tail holds the running child's last lines of output, for the error
	// of a process that fails to start.
	tail tail
}

// NewSupervisor returns a supervisor for specs; call Run to start it.
func NewSupervisor(specs []Spec, opts Options) *Supervisor {
	s := &Supervisor{
		output:  opts.Output,
		grace:   opts.Grace,
		log:     opts.Logger,
		onEvent: opts.OnEvent,
	}
	if s.output == nil {
		s.output = os.Stderr
	}
	if s.grace <= 0 {
		s.grace = defaultGrace
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	width := 0
	for _, sp := range specs {
		width = max(width, len(sp.Name))
	}
	for _, sp := range specs {
		sp.Restart = sp.Restart.withDefaults(OnFailure)
		s.procs = append(s.procs, &proc{
			s:      s,
			spec:   sp,
			prefix: fmt.Sprintf("%-*s | ", width, sp.Name),
		})
	}
	return s
}

// PIDs returns the current pid of every process by name, 0 for a process
// that is not running. It is safe for concurrent use.
func (s *Supervisor) PIDs() map[string]int {
	pids := make(map[string]int, len(s.procs))
	for _, p := range s.procs {
		p.mu.Lock()
		pids[p.spec.Name] = p.pid
		p.mu.Unlock()
	}
	return pids
}

// Run starts every process and supervises them until ctx is done; then it
// stops them all (SIGTERM to every process group at once, SIGKILL to those
// still alive after the grace period), waits for every child to exit and
// for all their output to be copied, and returns nil.
//
// If a process cannot be started the first time (a missing binary, a bad
// working directory, ...) or exits during its start-up (Spec.Startup), the
// pipeline has failed to start: Run stops the others the same way and
// returns an error naming the process (with its path, or with its exit
// status and last lines of output in a *StartupError). Processes that exit
// for good after start-up (policy never, or given up) stay dead; Run keeps
// supervising the others until ctx is done. Run may be called only once.
func (s *Supervisor) Run(ctx context.Context) error {
	if s.started.Swap(true) {
		return errors.New("launch: Supervisor.Run called more than once")
	}
	if err := s.checkSpecs(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	// Each process reports at most one failure to start, so none blocks.
	failed := make(chan error, len(s.procs))
	for _, p := range s.procs {
		wg.Go(func() { p.run(ctx, failed) })
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()

	var errs []error
	select {
	case err := <-failed:
		errs = append(errs, err)
		cancel()
	case <-ctx.Done():
	}
	s.stop(done)
	// Every process is done: collect the failures that came at once.
	close(failed)
	for err := range failed {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *Supervisor) checkSpecs() error {
	var errs []error
	seen := make(map[string]bool, len(s.procs))
	for i, p := range s.procs {
		sp := p.spec
		switch {
		case sp.Name == "":
			errs = append(errs, fmt.Errorf("launch: spec %d has no name", i))
		case seen[sp.Name]:
			errs = append(errs, fmt.Errorf("launch: duplicate process name %q", sp.Name))
		}
		seen[sp.Name] = true
		if sp.Path == "" {
			errs = append(errs, fmt.Errorf("launch: process %q has no path", sp.Name))
		}
		if !sp.Restart.Policy.valid() {
			errs = append(errs, fmt.Errorf("launch: process %q: unknown restart policy %q (want never, on-failure or always)", sp.Name, sp.Restart.Policy))
		}
	}
	return errors.Join(errs...)
}

// stop terminates every running child (the supervisor's context is
// already cancelled, so none will be started or restarted) and returns
// once every supervising goroutine has finished (done is closed).
func (s *Supervisor) stop(done <-chan struct{}) {
	n := 0
	for _, p := range s.procs {
		if p.signal(syscall.SIGTERM) {
			n++
		}
	}
	if n > 0 {
		s.log.Info("stopping processes", "count", n, "grace", s.grace)
	}
	timer := time.NewTimer(s.grace)
	defer timer.Stop()
	select {
	case <-done:
		return
	case <-timer.C:
	}
	for _, p := range s.procs {
		if p.signal(syscall.SIGKILL) {
			s.log.Warn("process did not stop within the grace period; killing it", "name", p.spec.Name, "grace", s.grace)
		}
	}
	<-done
}

func (s *Supervisor) emit(ev Event) {
	if s.onEvent != nil {
		s.onEvent(ev)
	}
}

// signal sends sig to the process group of the running child, if any, and
// reports whether there was one.
func (p *proc) signal(sig syscall.Signal) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pid == 0 {
		return false
	}
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		p.s.log.Warn("cannot signal process", "name", p.spec.Name, "pid", p.pid, "signal", sig, "err", err)
	}
	return true
}

// run supervises one process until ctx is done or the process is left
// dead. A failure to start it the first time, or its exit during start-up,
// is sent on failed and ends its supervision.
func (p *proc) run(ctx context.Context, failed chan<- error) {
	// See the Supervisor doc: the thread that forks a child must outlive it
	// for Pdeathsig to mean "the supervisor died".
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	log := p.s.log.With("name", p.spec.Name)
	bo := newBackoff(p.spec.Restart)
	for restarts := 0; ; restarts++ {
		first := restarts == 0
		// Only the first start has a start-up: a restart is judged by its
		// restart policy.
		var window time.Duration
		if first {
			window = p.spec.Startup
		}
		c, err := p.start(ctx, window > 0, restarts)
		var (
			exitErr error
			pid     int
			ran     time.Duration
		)
		switch {
		case errors.Is(err, errStopping):
			p.s.emit(Event{Name: p.spec.Name, Kind: Stopped})
			return
		case err != nil && first:
			failed <- err
			return
		case err != nil:
			exitErr = err
			log.Error("cannot restart process", "path", p.spec.Path, "err", err)
			p.s.emit(Event{Name: p.spec.Name, Kind: Exited, Err: err})
		default:
			pid = c.cmd.Process.Pid
			log.Info("process started", "pid", pid)
			p.s.emit(Event{Name: p.spec.Name, Kind: Started, PID: pid})
			var up bool
			exitErr, ran, up = p.awaitExit(c, window, log)
			if ctx.Err() != nil {
				log.Info("process stopped", "pid", pid, "status", status(exitErr))
				p.s.emit(Event{Name: p.spec.Name, Kind: Stopped, PID: pid, Err: exitErr})
				return
			}
			if !up {
				log.Error("process exited during start-up; stopping the pipeline", "pid", pid, "status", status(exitErr), "ran", ran.Round(time.Millisecond), "startup", window)
				p.s.emit(Event{Name: p.spec.Name, Kind: Exited, PID: pid, Err: exitErr})
				failed <- &StartupError{Name: p.spec.Name, PID: pid, Err: exitErr, Ran: ran, Window: window, Tail: p.tail.lines()}
				return
			}
			log.Warn("process exited", "pid", pid, "status", status(exitErr), "ran", ran.Round(time.Millisecond))
			p.s.emit(Event{Name: p.spec.Name, Kind: Exited, PID: pid, Err: exitErr})
		}
		if !p.restart(ctx, exitErr, ran, bo, log) {
			return
		}
	}
}

// restart decides, after an exit (exitErr) following a run of ran, whether
// the process is started again, and waits for the backoff delay if so. It
// reports false when the process is left dead or the supervisor stops.
func (p *proc) restart(ctx context.Context, exitErr error, ran time.Duration, bo *backoff, log *slog.Logger) bool {
	switch p.spec.Restart.Policy {
	case Never:
		log.Warn("process exited; not restarting it (restart policy never): the pipeline runs on without it", "policy", Never)
		return false
	case OnFailure:
		if exitErr == nil {
			log.Warn("process exited cleanly; not restarting it (restart policy on-failure): the pipeline runs on without it", "policy", OnFailure)
			return false
		}
	}
	delay, n, ok := bo.next(ran)
	if !ok {
		log.Error("process keeps failing; giving up on it", "restarts", n, "max_restarts", p.spec.Restart.MaxRestarts)
		p.s.emit(Event{Name: p.spec.Name, Kind: GaveUp, Restarts: n})
		return false
	}
	log.Warn("restarting process", "delay", delay, "restarts", n)
	p.s.emit(Event{Name: p.spec.Name, Kind: Restarting, Restarts: n, Delay: delay})
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		p.s.emit(Event{Name: p.spec.Name, Kind: Stopped})
		return false
	case <-timer.C:
		return true
	}
}

func status(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// child is one started instance of a process.
type child struct {
	cmd *exec.Cmd
	// pipes are the read ends of stdout, stderr and, during start-up, the
	// readiness pipe.
	pipes   []*os.File
	copiers sync.WaitGroup
	// ready receives a value when the child says it is ready (buffered, so
	// that the reader never waits for the supervision to look).
	ready chan struct{}
}

// start starts the process unless ctx is done, with a readiness pipe if
// withReady (see procenv.NotifyReady). Holding p.mu while checking ctx and
// starting makes sure that stop either sees the new pid or the child is
// never started.
func (p *proc) start(ctx context.Context, withReady bool, restarts int) (*child, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ctx.Err() != nil {
		return nil, errStopping
	}
	fail := func(err error) (*child, error) {
		return nil, fmt.Errorf("launch: cannot start %s (%s): %w", p.spec.Name, p.spec.Path, err)
	}
	n := 2
	if withReady {
		n = 3
	}
	r, w, err := pipes(n)
	if err != nil {
		return fail(err)
	}
	cmd := exec.Command(p.spec.Path, p.spec.Args...)
	cmd.Env = childEnv(p.spec.Env, withReady, restarts)
	cmd.Dir = p.spec.Dir
	cmd.Stdout, cmd.Stderr = w[0], w[1]
	cmd.ExtraFiles = w[2:] // the readiness pipe is fd 3 (readyFD)
	cmd.SysProcAttr = sysProcAttr()
	p.tail.reset()
	err = cmd.Start()
	for _, f := range w {
		f.Close()
	}
	if err != nil {
		for _, f := range r {
			f.Close()
		}
		return fail(err)
	}
	p.pid = cmd.Process.Pid
	c := &child{cmd: cmd, pipes: r, ready: make(chan struct{}, 1)}
	for _, f := range r[:2] {
		c.copiers.Go(func() { p.copyLines(f) })
	}
	if withReady {
		c.copiers.Go(func() { awaitReady(r[2], c.ready) })
	}
	return c, nil
}

// pipes makes n pipes and returns their read and write ends.
func pipes(n int) (r, w []*os.File, err error) {
	for range n {
		rf, wf, err := os.Pipe()
		if err != nil {
			for _, f := range append(r, w...) {
				f.Close()
			}
			return nil, nil, err
		}
		r, w = append(r, rf), append(w, wf)
	}
	return r, w, nil
}

// wait waits for the child to exit, kills what is left of its process
// group, reaps it and waits for its output to be copied. It returns the
// error of exec.Cmd.Wait.
func (p *proc) wait(c *child) error {
	pid := c.cmd.Process.Pid
	var err error
	if waitExited(pid) {
		// The child is a zombie: its pid, and so its process group id,
		// cannot be reused yet.
		p.mu.Lock()
		killGroup(pid)
		p.pid = 0
		p.mu.Unlock()
		err = c.cmd.Wait()
	} else {
		err = c.cmd.Wait()
		p.mu.Lock()
		killGroup(pid)
		p.pid = 0
		p.mu.Unlock()
	}

	drained := make(chan struct{})
	go func() {
		c.copiers.Wait()
		close(drained)
	}()
	timer := time.NewTimer(drainTimeout)
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
		p.s.log.Warn("output still open after the process exited; closing it", "name", p.spec.Name, "pid", pid)
		for _, f := range c.pipes {
			f.Close()
		}
		<-drained
	}
	return err
}

// killGroup kills every process left in the process group pgid.
func killGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // ESRCH: the group is empty
}

// copyLines copies r to the supervisor output line by line until EOF.
func (p *proc) copyLines(r *os.File) {
	defer r.Close()
	br := bufio.NewReaderSize(r, maxLine)
	buf := make([]byte, 0, 256)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			buf = append(append(buf[:0], p.prefix...), line...)
			if buf[len(buf)-1] != '\n' {
				buf = append(buf, '\n')
			}
			p.s.outMu.Lock()
			_, _ = p.s.output.Write(buf)
			p.s.outMu.Unlock()
			p.tail.add(line)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// backoff computes restart delays: Backoff, doubling up to MaxBackoff, and
// counts consecutive restarts. A run of at least stableAfter resets both.
type backoff struct {
	rp       RestartPolicy
	stable   time.Duration
	delay    time.Duration
	restarts int
}

// stableAfter is how long a process must run to count as having started
// successfully: ten times the first backoff, but at least minStable, so
// that a process crashing a few seconds after every start still backs off.
func stableAfter(rp RestartPolicy) time.Duration {
	return max(10*time.Duration(rp.Backoff), minStable)
}

func newBackoff(rp RestartPolicy) *backoff {
	return &backoff{rp: rp, stable: stableAfter(rp), delay: time.Duration(rp.Backoff)}
}

// next is called after a run that lasted ran and needs a restart. It
// returns the delay before the restart and the number of consecutive
// restarts including this one, or ok false when MaxRestarts consecutive
// restarts have already been made.
func (b *backoff) next(ran time.Duration) (delay time.Duration, restarts int, ok bool) {
	if ran >= b.stable {
		b.delay = time.Duration(b.rp.Backoff)
		b.restarts = 0
	}
	if b.rp.MaxRestarts > 0 && b.restarts >= b.rp.MaxRestarts {
		return 0, b.restarts, false
	}
	b.restarts++
	delay = b.delay
	b.delay = min(2*b.delay, time.Duration(b.rp.MaxBackoff))
	return delay, b.restarts, true
}
