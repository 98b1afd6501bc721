package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// Echo is the raw baseline: NATS request-reply to a responder that sends
// back what it gets, on a subject of its own. Requests are of one size,
// the size of the serket message they are set against.
type Echo struct {
	subject string
	size    int
	subs    []*nats.Subscription
	conns   []*nats.Conn
}

// minEchoBytes is room for the stamp: the caller and the sequence number.
const minEchoBytes = 16

// NewEcho starts a responder on each of the connections (one queue group,
// so each request is answered once) and waits until the server has them
// all. Requests will be size bytes, at least 16.
func NewEcho(responders []*nats.Conn, size int) (*Echo, error) {
	e := &Echo{subject: "_serket.bench.echo." + nuid.Next(), size: max(size, minEchoBytes), conns: responders}
	for _, nc := range responders {
		sub, err := nc.QueueSubscribe(e.subject, "echo", func(m *nats.Msg) { m.Respond(m.Data) })
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("bench: the echo responder on %s: %w", nc.Opts.Name, err)
		}
		e.subs = append(e.subs, sub)
	}
	// A request sent before the server knows a responder would find none.
	for _, nc := range responders {
		if err := nc.Flush(); err != nil {
			e.Close()
			return nil, fmt.Errorf("bench: the echo responder on %s: %w", nc.Opts.Name, err)
		}
	}
	return e, nil
}

// Size is the size of every request, in bytes.
func (e *Echo) Size() int { return e.size }

// Close stops the responders, and returns once the server knows (or a
// connection is gone).
func (e *Echo) Close() {
	for _, s := range e.subs {
		s.Unsubscribe()
	}
	for _, nc := range e.conns {
		nc.Flush()
	}
}

// Caller is one client's side of the echo: it owns its request buffer, so
// callers run concurrently while each one sends one request at a time.
type Caller struct {
	e   *Echo
	id  uint64
	buf []byte
}

// Caller returns the side of client id.
func (e *Echo) Caller(id int) *Caller {
	b := make([]byte, e.size)
	for j := range b {
		b[j] = byte(id + j)
	}
	return &Caller{e: e, id: uint64(id), buf: b}
}

// Call sends request seq on nc and waits for its echo until ctx is done.
// An echo that is not this request's is Failed.
func (c *Caller) Call(ctx context.Context, nc *nats.Conn, seq int) (Outcome, string) {
	binary.LittleEndian.PutUint64(c.buf[0:], c.id)
	binary.LittleEndian.PutUint64(c.buf[8:], uint64(seq))
	msg, err := nc.RequestWithContext(ctx, c.e.subject, c.buf)
	if err != nil {
		return Classify(err)
	}
	if !bytes.Equal(msg.Data, c.buf) {
		return Failed, "mismatch: the echo is not this request's"
	}
	return OK, ""
}

// Classify sorts the error of a NATS request that got no answer: a timeout
// (of the request or its context) is Lost, no responders is Failed (the
// server answered at once that nobody listens), anything else is Lost with
// its text as the kind.
func Classify(err error) (Outcome, string) {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return Lost, "timed out"
	case errors.Is(err, nats.ErrNoResponders):
		return Failed, "no responders on the subject"
	}
	return Lost, Kind(err.Error())
}

// Kind turns a text into a kind to count by: one line of at most 120
// characters, so that kinds stay few and printable.
func Kind(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 120 {
		return string(r[:119]) + "…"
	}
	return s
}
