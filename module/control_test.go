package module_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/module"
)

// integratorConn is a connection to srv to act as the integrator from.
func integratorConn(t *testing.T, srv *bus.Server) *nats.Conn {
	t.Helper()
	nc, err := bus.Connect(bus.ConnConfig{Server: srv, Name: "serket-integrator"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// control sends c (as the integrator, in session) to module name and
// returns its answer.
func control(t *testing.T, nc *nats.Conn, subj bus.Subjects, name string, c bus.Control, session string) bus.RunState {
	t.Helper()
	return controlAs(t, nc, subj, name, c, bus.Header{Sender: "integrator", Run: session})
}

// controlAs is control with the given sender and session.
func controlAs(t *testing.T, nc *nats.Conn, subj bus.Subjects, name string, c bus.Control, h bus.Header) bus.RunState {
	t.Helper()
	c.Header = h
	data, err := bus.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := nc.Request(subj.Control(name), data, 10*time.Second)
	if err != nil {
		t.Fatalf("%s to %s: %v", c.Op, name, err)
	}
	var st bus.RunState
	if err := bus.Unmarshal(msg.Data, &st, bus.Expect{}); err != nil {
		t.Fatal(err)
	}
	return st
}

// runServing runs m with opts on srv, calls during (on the test's
// goroutine) once it serves, then stops it and returns Run's error.
func runServing(t *testing.T, srv *bus.Server, m module.Modality, opts module.Options, during func()) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts.NATS = bus.ConnConfig{Server: srv}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ready := make(chan struct{})
	opts.Ready = func(micro.Service) { close(ready) }
	done := make(chan error, 1)
	go func() { done <- module.Run(ctx, m, opts) }()
	select {
	case <-ready:
	case err := <-done:
		return err
	}
	func() {
		defer func() { cancel(); <-done }() // also when during fails the test
		during()
	}()
	return nil
}

// mustServe is runServing that fails the test if Run fails.
func mustServe(t *testing.T, srv *bus.Server, m module.Modality, opts module.Options, during func()) {
	t.Helper()
	if err := runServing(t, srv, m, opts, during); err != nil {
		t.Fatal(err)
	}
}

// status is module name's training counters.
func status(t *testing.T, nc *nats.Conn, subj bus.Subjects, name string) (st struct {
	Refused, Rejected, Steps int
	LastError                string `json:"last_error"`
}) {
	t.Helper()
	msg, err := nc.Request(subj.TrainStatus(name), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(msg.Data, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestTrainingModuleRefusesForeignMessages: a module that trains takes
// part only in the session it was enrolled in, and only from the
// integrator. A whole step with no session, one of another session (a
// replay of an old run) and one of its session but sent by another module
// are refused and counted: it answers none of them, its weights do not
// change, and no save or restore asked by anyone else or in another
// session touches its checkpoint. A step of its session from the
// integrator it does answer.
func TestTrainingModuleRefusesForeignMessages(t *testing.T) {
	srv := server(t)
	subj, _ := bus.NewSubjects("")
	path := filepath.Join(t.TempDir(), "left.ckpt")
	m := newToy(t)
	x, _, _ := m.LoadBatch([]uint64{1, 2})
	want, wantLV := make([]float32, 4), make([]float32, 4)
	m.Encode(x, want, wantLV)
	ig := integratorConn(t, srv)
	posts := make(chan *nats.Msg, 16)
	if _, err := ig.ChanSubscribe(subj.Post("left"), posts); err != nil {
		t.Fatal(err)
	}
	run, session, old := bus.NewToken(), bus.NewToken(), bus.NewToken()

	mustServe(t, srv, m, module.Options{Checkpoint: path, Train: true}, func() {
		control(t, ig, subj, "left", bus.Control{Op: bus.OpEnrol, ID: run, Adopt: true}, session)
		for _, h := range []bus.Header{{Sender: "integrator"}, {Sender: "integrator", Run: old}, {Sender: "language", Run: session}} {
			forgeAs(t, ig, subj, "left", 2, 2, h)
		}
		refusedSave := controlAs(t, ig, subj, "left", bus.Control{Op: bus.OpSave, ID: run}, bus.Header{Sender: "language", Run: session})
		oldSave := control(t, ig, subj, "left", bus.Control{Op: bus.OpSave, ID: run}, old)
		oldRestore := control(t, ig, subj, "left", bus.Control{Op: bus.OpRestore, ID: run}, old)
		for _, st := range []bus.RunState{refusedSave, oldSave, oldRestore} {
			if st.Err == "" {
				t.Errorf("a save or restore not from the session's integrator was done: %+v", st)
			}
		}
		// Every forged message came before the last answer, on one
		// connection: a posterior it sent would be here.
		if len(posts) > 0 {
			t.Errorf("the module answered %d forged steps", len(posts))
		}
		st := status(t, ig, subj, "left")
		if st.Refused != 9+3 || st.Steps != 0 || !strings.Contains(st.LastError, "session") {
			t.Errorf("status %+v: want 12 refused (3 steps of 3 messages, 3 requests), none learned, naming the session", st)
		}
		// Its own session's step it answers, with the session.
		step := &bus.StepBegin{Header: bus.Header{Sender: "integrator", Run: session}, Step: 1, Train: true, IDs: []uint64{1, 2},
			Plan: []bus.Term{{Subset: []string{"left"}, Targets: []string{"left"}}}}
		publish(t, ig, subj.Step(), step)
		select {
		case msg := <-posts:
			var p bus.Posterior
			if err := bus.Unmarshal(msg.Data, &p, bus.Expect{}); err != nil || p.Run != session || p.Step != 1 {
				t.Errorf("posterior %+v (%v), want one of step 1 in the session", p.Header, err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the module did not answer a step of its session")
		}
	})
	got, gotLV := make([]float32, 4), make([]float32, 4)
	m.Encode(x, got, gotLV)
	if !slices.Equal(got, want) || !slices.Equal(gotLV, wantLV) {
		t.Errorf("weights changed: it encodes %v/%v, was %v/%v", got, gotLV, want, wantLV)
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("a checkpoint was written though only forged saves asked")
	}
}

// publish marshals m and publishes it on subject.
func publish(t *testing.T, nc *nats.Conn, subject string, m bus.Message) {
	t.Helper()
	data, err := bus.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(subject, data); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreRollsBackToTheRunsCheckpoint: a module that saved its run's
// checkpoints of steps 0 and 1 restores step 0 from the previous
// generation when asked, and refuses a step it has no checkpoint of,
// saying what it has and leaving its weights alone.
func TestRestoreRollsBackToTheRunsCheckpoint(t *testing.T) {
	srv := server(t)
	subj, _ := bus.NewSubjects("")
	path := filepath.Join(t.TempDir(), "left.ckpt")
	m := newToy(t)
	x, _, _ := m.LoadBatch([]uint64{1, 2})
	enc := func() []float32 {
		mu, lv := make([]float32, 4), make([]float32, 4)
		m.Encode(x, mu, lv)
		return append(mu, lv...)
	}
	at0 := enc()
	ig := integratorConn(t, srv)
	run, session := bus.NewToken(), bus.NewToken()
	mustServe(t, srv, m, module.Options{Checkpoint: path, Train: true}, func() {
		control(t, ig, subj, "left", bus.Control{Op: bus.OpEnrol, ID: run, Adopt: true}, session)
		control(t, ig, subj, "left", bus.Control{Op: bus.OpSave, ID: run, Step: 0}, session)
		learnOneStep(t, ig, subj, "left", session, 1)
		if st := control(t, ig, subj, "left", bus.Control{Op: bus.OpSave, ID: run, Step: 1}, session); st.Err != "" || st.Step != 1 {
			t.Fatalf("save of step 1: %+v", st)
		}
		if st := control(t, ig, subj, "left", bus.Control{Op: bus.OpRestore, ID: run, Step: 5}, session); !strings.Contains(st.Err, "no checkpoint of run "+run+" step 5") || st.Step != 1 {
			t.Errorf("restore of a step never saved: %+v", st)
		}
		if st := control(t, ig, subj, "left", bus.Control{Op: bus.OpRestore, ID: run, Step: 0}, session); st.Err != "" || st.Step != 0 {
			t.Errorf("restore of step 0: %+v", st)
		}
	})
	if got := enc(); !slices.Equal(got, at0) {
		t.Errorf("after restoring step 0 it encodes %v, at step 0 it encoded %v", got, at0)
	}
}

// learnOneStep drives module name through a whole training step of the
// session as the integrator does: a step begin, the latent once its
// posterior arrives, the expert gradient once its decoder gradient does.
func learnOneStep(t *testing.T, nc *nats.Conn, subj bus.Subjects, name, session string, step uint64) {
	t.Helper()
	h := bus.Header{Sender: "integrator", Run: session}
	posts, zgrads := make(chan *nats.Msg, 1), make(chan *nats.Msg, 1)
	for subject, ch := range map[string]chan *nats.Msg{subj.Post(name): posts, subj.ZGrad(name): zgrads} {
		sub, err := nc.ChanSubscribe(subject, ch)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	await := func(ch chan *nats.Msg) {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not answer step %d", name, step)
		}
	}
	one := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = 0.5
		}
		return v
	}
	publish(t, nc, subj.Step(), &bus.StepBegin{Header: h, Step: step, Train: true, IDs: []uint64{1, 2},
		Plan: []bus.Term{{Subset: []string{name}, Targets: []string{name}}}})
	await(posts)
	publish(t, nc, subj.Latent(), &bus.Latent{Header: h, Step: step, Members: []string{name}, Z: []bus.Tensor{bus.Matrix(2, 2, one(4))}})
	await(zgrads)
	publish(t, nc, subj.EGrad(name), &bus.ExpertGrad{Header: h, Step: step, DMu: bus.Matrix(2, 2, one(4)), DLogVar: bus.Matrix(2, 2, one(4))})
}

// TestRefusalsAreLoggedOncePerInterval: a flood of 20,000 garbage training
// messages and 20,000 forged steps (the 13.9 MB of logs in 6 s) is
// counted whole but logged a line per kind per interval.
func TestRefusalsAreLoggedOncePerInterval(t *testing.T) {
	srv := server(t)
	subj, _ := bus.NewSubjects("")
	var log syncBuffer
	ig := integratorConn(t, srv)
	const n = 20000
	forged, err := bus.Marshal(&bus.StepBegin{Header: bus.Header{Sender: "language"}, Step: 1, Train: true, IDs: []uint64{1},
		Plan: []bus.Term{{Subset: []string{"left"}}}})
	if err != nil {
		t.Fatal(err)
	}
	mustServe(t, srv, newToy(t), module.Options{Train: true, Logger: slog.New(slog.NewTextHandler(&log, nil))}, func() {
		session := bus.NewToken()
		for i := range n {
			ig.Publish(subj.Step(), []byte("garbage"))
			ig.Publish(subj.Step(), forged)
			if i%250 == 249 {
				// A control travels behind them on the module's ordered
				// channel: its answer says they are handled, and the
				// channel never overflows (which would drop some).
				control(t, ig, subj, "left", bus.Control{Op: bus.OpEnrol, ID: session}, session)
			}
		}
		if st := status(t, ig, subj, "left"); st.Rejected != n || st.Refused != n {
			t.Fatalf("counted %d rejected and %d refused of %d each", st.Rejected, st.Refused, n)
		}
	})
	lines := strings.Count(log.String(), "level=WARN")
	if lines > 10 {
		t.Errorf("%d log lines for %d refused messages; want a line per kind per interval:\n%.2000s", lines, 2*n, log.String())
	}
}
