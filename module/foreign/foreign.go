// Package foreign runs a modality written in another language: a child
// program that speaks the exec protocol (docs/foreign.md) on its stdin and
// stdout. Start returns a module.Modality that forwards every call to it,
// so that module.Run serves it on the bus like any Go modality: the child
// computes, and never sees the bus, its keys or its checkpoint files.
//
// The child is trusted to compute, not to be well-behaved: a reply that is
// too large, malformed, of the wrong length or not finite, a child that
// exits or a call that outlasts CallTimeout fails the Module (Done is
// closed, Err says why, naming the module and quoting the child's last
// log lines), and every later call returns that error. A failed call the
// child reports (an "error" reply) fails only that call.
package foreign

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Protocol is the version of the exec protocol this package speaks.
const Protocol = 1

// Config says how to start the child and what to tell it.
type Config struct {
	// Command is the program and its arguments (required).
	Command []string
	Dir     string   // its working directory; "" for ours
	Env     []string // its environment; nil for ours
	// Hello is what the handshake tells the child: the module's flags.
	Hello Hello
	// Keep reports whether the pipeline's partial-pairing mask keeps the
	// module's observation of an item (dataset.Present); nil keeps all.
	// load requests carry it, and a row it withholds is absent whatever
	// the child says.
	Keep func(id uint64) bool
	// MaxFrame bounds a frame either way; default DefaultMaxFrame.
	MaxFrame int
	// CallTimeout bounds one call, from its request to its reply; default
	// 2 minutes. The handshake has the same bound.
	CallTimeout time.Duration
	// StopTimeout is how long Close waits for the child to exit after its
	// stdin is closed before killing it; default 5 s.
	StopTimeout time.Duration
	Logger      *slog.Logger // where the child's stderr goes; default discard
}

// Hello is the config map of the handshake (docs/foreign.md, "hello").
type Hello struct {
	Name    string  `msgpack:"name"`
	Latent  int     `msgpack:"latent"`
	Private int     `msgpack:"private"`
	Data    string  `msgpack:"data"`
	LR      float64 `msgpack:"lr"`
	Train   bool    `msgpack:"train"`
	// MaxFrame is Config.MaxFrame, which Start sets, so that the child
	// bounds frames as serket does.
	MaxFrame int `msgpack:"max_frame"`
}

func (c *Config) defaults() error {
	if len(c.Command) == 0 || c.Command[0] == "" {
		return errors.New("foreign: no command to run")
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 2 * time.Minute
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// child is the running program and the pipes to it.
type child struct {
	cfg     Config
	who     string // "module NAME (PROGRAM)", for errors
	cmd     *exec.Cmd
	stdin   *os.File
	stdout  *os.File
	replies *bufio.Reader // stdout, read by the call waiting for its reply
	exited  chan struct{} // closed when the process has been waited for
	logged  chan struct{} // closed when its stderr is read to the end
	tail    *tail         // its last lines of stderr

	mu     sync.Mutex
	err    error         // why it failed; nil while it serves
	failed chan struct{} // closed when err is set
	closed bool          // err is set because close was called
}

// start runs the program with its stdin and stdout as pipes of ours and
// its stderr into the log.
func start(cfg Config) (*child, error) {
	c := &child{
		cfg:    cfg,
		who:    fmt.Sprintf("module %s (%s)", cfg.Hello.Name, cfg.Command[0]),
		exited: make(chan struct{}),
		logged: make(chan struct{}),
		failed: make(chan struct{}),
		tail:   newTail(20),
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		for _, f := range []*os.File{inR, inW, outR, outW} {
			f.Close()
		}
		return nil, err
	}
	c.cmd = exec.Command(cfg.Command[0], cfg.Command[1:]...)
	c.cmd.Dir, c.cmd.Env = cfg.Dir, cfg.Env
	c.cmd.Stdin, c.cmd.Stdout, c.cmd.Stderr = inR, outW, errW
	err = c.cmd.Start()
	inR.Close() // the child's ends: ours are closed so EOF and EPIPE work
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("%s: %w", c.who, err)
	}
	// The call reads its reply itself, under a read deadline: a goroutine
	// handing replies over a channel cost two wake-ups a call, a third of
	// the protocol's time.
	c.stdin, c.stdout = inW, outR
	c.replies = bufio.NewReaderSize(outR, 64<<10)
	go c.logLoop(errR)
	go c.wait()
	return c, nil
}

// wait reaps the child and fails c if it was still serving, once its
// last words on stderr are in the tail (or a second has passed: a
// grandchild may hold stderr open).
func (c *child) wait() {
	err := c.cmd.Wait()
	close(c.exited)
	select {
	case <-c.logged:
	case <-time.After(time.Second):
	}
	if err == nil {
		err = errors.New("exited with status 0")
	} else {
		err = fmt.Errorf("exited: %v", err)
	}
	c.fail(err)
}

// fail records why the child failed (the first reason wins) and kills it.
func (c *child) fail(why error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = fmt.Errorf("%s failed: %w%s", c.who, why, c.tail.quote())
	close(c.failed)
	c.cmd.Process.Kill() // after Wait this is a no-op error
	c.stdin.Close()
}

// unexpected is why the child failed, unless it was closed.
func (c *child) unexpected() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	return c.err
}

// failure is why the child failed, or nil.
func (c *child) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// roundTrip writes req and waits for the reply to it; a broken frame, a
// wrong seq, a dead child or a timeout fails the child.
func (c *child) roundTrip(req any, seq uint64, op string, buf []byte) (*reply, []byte, error) {
	if err := c.failure(); err != nil {
		return nil, buf, err
	}
	deadline := time.Now().Add(c.cfg.CallTimeout)
	c.stdin.SetWriteDeadline(deadline)
	buf, err := writeFrame(c.stdin, req, buf, c.cfg.MaxFrame)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, buf, fmt.Errorf("%s: %s: %w", c.who, op, err)
		}
		c.fail(fmt.Errorf("writing its %s request: %v", op, err))
		return nil, buf, c.failure()
	}
	c.stdout.SetReadDeadline(deadline)
	rep := new(reply)
	err = readFrame(c.replies, rep, c.cfg.MaxFrame)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.fail(fmt.Errorf("no reply to %s within %v (--call-timeout)", op, c.cfg.CallTimeout))
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		// It exited (or closed stdout): give the reaper a moment to say
		// how, which is the better error.
		select {
		case <-c.failed:
		case <-time.After(time.Second):
			c.fail(fmt.Errorf("closed its stdout during %s", op))
		}
	case err != nil:
		c.fail(fmt.Errorf("reading its %s reply: %w", op, err))
	case rep.Seq != seq:
		c.fail(fmt.Errorf("%w: a reply to request %d where %d (%s) was asked", errFrame, rep.Seq, seq, op))
	default:
		return rep, buf, nil
	}
	return nil, buf, c.failure()
}

// close closes the child's stdin, asking it to exit, and kills it if it
// has not within the stop timeout.
func (c *child) close() {
	c.mu.Lock()
	if c.err == nil {
		c.err = fmt.Errorf("%s: closed", c.who)
		c.closed = true
		close(c.failed)
	}
	c.stdin.Close()
	c.mu.Unlock()
	select {
	case <-c.exited:
	case <-time.After(c.cfg.StopTimeout):
		c.cmd.Process.Kill()
		<-c.exited
	}
	c.stdout.Close()
}
