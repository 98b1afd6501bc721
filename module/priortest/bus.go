package priortest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/module"
)

// pipeline is the pipeline the wire checks serve the model in.
const pipeline = "priortest"

// integrator is the sender RunPrior takes training requests and controls
// from (module's integratorName).
const integrator = "integrator"

// served is a model served by module.RunPrior on a server of its own, and
// a fresh instance, ref, to call directly and compare with.
type served struct {
	s       *suite
	nc      *nats.Conn // the suite's connection: it plays the integrator
	subj    bus.Subjects
	ckpt    string
	ref     module.PriorModel
	session string // the session and run it was enrolled in, if it was
	run     string
	// trainOnInference sends training requests to the inference subject,
	// as a forger without the integrator's permissions would.
	trainOnInference bool
}

// serve starts a nats-server and serves a fresh model on it until t ends,
// with training allowed and a checkpoint file, as `serket train` runs a
// prior module.
func (s *suite) serve(t testing.TB) *served {
	t.Helper()
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatalf("starting a nats-server: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	quiet := slog.New(slog.DiscardHandler) // what the checks need, they read from the status
	connect := func(name string) *nats.Conn {
		nc, err := bus.Connect(bus.ConnConfig{Server: srv, Name: name, Logger: quiet})
		if err != nil {
			t.Fatalf("connecting to the nats-server: %v", err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	w := &served{s: s, nc: connect("priortest"), ckpt: filepath.Join(t.TempDir(), s.name+".ckpt"), ref: s.fresh(t)}
	w.subj, err = bus.NewSubjects(pipeline)
	if err != nil {
		t.Fatal(err)
	}
	opts := module.Options{Pipeline: pipeline, Conn: connect(bus.ServiceName(s.name)), Logger: quiet, Train: true, Checkpoint: w.ckpt}
	ready := make(chan micro.Service, 1)
	opts.Ready = func(svc micro.Service) { ready <- svc }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	m := s.fresh(t)
	go func() { done <- module.RunPrior(ctx, m, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("module.RunPrior of %s: %v", s.name, err)
		}
	})
	select {
	case svc := <-ready:
		md := svc.Info().Metadata
		if md[bus.MetaRole] != bus.RolePrior || md[bus.MetaLatent] != strconv.Itoa(s.d) {
			t.Fatalf("%s serves with role %q and latent %q; want %q and %d: the integrator would not find it", s.name, md[bus.MetaRole], md[bus.MetaLatent], bus.RolePrior, s.d)
		}
	case err := <-done:
		t.Fatalf("module.RunPrior of %s returned before serving: %v", s.name, err)
	case <-time.After(s.cfg.Timeout):
		t.Fatalf("module.RunPrior of %s did not start serving within %v", s.name, s.cfg.Timeout)
	}
	return w
}

// request is a prior request of ev for the suite's query shape.
func (s *suite) request(h bus.Header, step uint64, train bool, ev []module.Evidence) *bus.PriorRequest {
	in := &bus.PriorRequest{Header: h, Step: step, Train: train, Terms: make([]bus.Evidence, len(ev))}
	for i, e := range ev {
		in.Terms[i] = bus.Evidence{Prec: bus.Matrix(s.cfg.Batch, s.d, e.Prec), Shift: bus.Matrix(s.cfg.Batch, s.d, e.Shift)}
	}
	return in
}

// replyError is a micro error reply, as the integrator reads one
// (integrator/service.go: request).
type replyError struct{ code, desc string }

func (e *replyError) Error() string { return fmt.Sprintf("error reply %s: %s", e.code, e.desc) }

// ask sends in as sender to the prior endpoint and decodes the answer
// as the integrator does. A transport failure (no answer) fails t.
func (w *served) ask(t testing.TB, in *bus.PriorRequest, sender string) (*bus.PriorReply, error) {
	t.Helper()
	in.SetSender(sender)
	data, err := bus.Marshal(in)
	if err != nil {
		t.Fatalf("priortest: marshalling its own request: %v", err)
	}
	subject := w.subj.Prior(w.s.name)
	if in.Train && !w.trainOnInference {
		subject = w.subj.PriorTrain(w.s.name)
	}
	msg := w.raw(t, subject, data)
	if desc := msg.Header.Get(micro.ErrorHeader); desc != "" {
		return nil, &replyError{msg.Header.Get(micro.ErrorCodeHeader), desc}
	}
	var rep bus.PriorReply
	e := bus.Expect{Latent: w.s.d, Batch: w.s.cfg.Batch, Terms: len(in.Terms)}
	if err := bus.UnmarshalFrom(subject, msg.Data, &rep, e); err != nil {
		return nil, err
	}
	if rep.Step != in.Step || rep.Sender != w.s.name {
		return nil, fmt.Errorf("reply of step %d from %q to a request of step %d to %s", rep.Step, rep.Sender, in.Step, w.s.name)
	}
	return &rep, nil
}

// raw sends data to subject, one of the prior endpoints, and returns
// the answer.
func (w *served) raw(t testing.TB, subject string, data []byte) *nats.Msg {
	t.Helper()
	msg, err := w.nc.Request(subject, data, w.s.cfg.Timeout)
	if err != nil {
		t.Fatalf("a prior request to %s got no answer: %v", w.s.name, err)
	}
	return msg
}

// expect asks in as sender and fails t unless the answer is want.
func (w *served) expect(t testing.TB, what string, in *bus.PriorRequest, sender string, want []module.PriorOut) {
	t.Helper()
	rep, err := w.ask(t, in, sender)
	if err != nil {
		t.Fatalf("%s: %v (%s)", what, err, w.counters(t).LastError)
	}
	if diff := replyDiff(rep, want); diff != "" {
		t.Fatalf("%s: the answer over the bus differs from calling the model directly: %s", what, diff)
	}
}

// counters are the prior module's status (module's priorStats).
type counters struct {
	Requests  int    `json:"requests"`
	Learned   int    `json:"learned"`
	Step      uint64 `json:"step"`
	Rejected  int    `json:"rejected"`
	Refused   int    `json:"refused"`
	LastError string `json:"last_error"`
}

// counters reads the module's status. RunPrior counts a request before
// it answers it, under the lock the status is read under, so the status
// asked after an answer includes its request.
func (w *served) counters(t testing.TB) counters {
	t.Helper()
	msg, err := w.nc.Request(w.subj.TrainStatus(w.s.name), nil, w.s.cfg.Timeout)
	if err != nil {
		t.Fatalf("the status of %s: %v", w.s.name, err)
	}
	var c counters
	if err := json.Unmarshal(msg.Data, &c); err != nil {
		t.Fatalf("the status of %s: %v (%q)", w.s.name, err, msg.Data)
	}
	return c
}

// control sends a control of the module's session as the integrator and
// returns its answer.
func (w *served) control(t testing.TB, c bus.Control) bus.RunState {
	t.Helper()
	c.Run, c.ID = w.session, w.run
	c.SetSender(integrator)
	data, err := bus.Marshal(&c)
	if err != nil {
		t.Fatalf("priortest: marshalling a %s: %v", c.Op, err)
	}
	subject := w.subj.Control(w.s.name)
	msg, err := w.nc.Request(subject, data, w.s.cfg.Timeout)
	if err != nil {
		t.Fatalf("a %s to %s got no answer: %v", c.Op, w.s.name, err)
	}
	var st bus.RunState
	if err := bus.UnmarshalFrom(subject, msg.Data, &st, bus.Expect{}); err != nil {
		t.Fatalf("the answer of %s to a %s: %v", w.s.name, c.Op, err)
	}
	return st
}

// enrol enrols the module in a training session of a new run, as the
// integrator does at a run's start.
func (w *served) enrol(t testing.TB) {
	t.Helper()
	w.session, w.run = bus.NewToken(), bus.NewToken()
	if st := w.control(t, bus.Control{Op: bus.OpEnrol, Adopt: true}); st.Err != "" {
		t.Fatalf("enrolling %s in a training run: %s", w.s.name, st.Err)
	}
}

// saveFile asks the module to save its checkpoint of step and returns the
// file, or nil for a model that cannot save (checking that it says so).
func (w *served) saveFile(t testing.TB, step uint64) []byte {
	t.Helper()
	st := w.control(t, bus.Control{Op: bus.OpSave, Step: step})
	if !isSaver(w.ref) {
		if st.Err == "" || st.Keeps {
			t.Fatalf("asked to save, %s, whose model is no Saver, answered %+v: want an error and Keeps false", w.s.name, st)
		}
		return nil
	}
	if st.Err != "" || !st.Keeps {
		t.Fatalf("asked to save its checkpoint of step %d, %s answered %+v", step, w.s.name, st)
	}
	data, err := os.ReadFile(w.ckpt)
	if err != nil {
		t.Fatalf("%s said it saved: %v", w.s.name, err)
	}
	return data
}

// wireInference: an inference request is answered as a direct call.
func (s *suite) wireInference(t testing.TB) {
	w := s.serve(t)
	for i := range uint64(2) {
		ev, step := s.random(i), inferStep+i
		w.expect(t, fmt.Sprintf("inference %d", step), s.request(bus.Header{}, step, false, ev), "priortest", s.prior(t, w.ref, ev, s.query(step, false)))
	}
}

// forge encodes a prior request as bus.Marshal would but without its
// checks, after mutate: what a broken or hostile sender can put on the
// wire.
func (s *suite) forge(t testing.TB, ev []module.Evidence, mutate func(*bus.PriorRequest)) []byte {
	t.Helper()
	in := s.request(bus.Header{Type: bus.TypePriorRequest, Version: bus.WireVersion, Sender: "priortest"}, inferStep, false, clone(ev))
	mutate(in)
	data, err := msgpack.Marshal(in)
	if err != nil {
		t.Fatalf("priortest: forging a request: %v", err)
	}
	return data
}

func clone(ev []module.Evidence) []module.Evidence {
	out := make([]module.Evidence, len(ev))
	for i, e := range ev {
		out[i] = module.Evidence{Prec: append([]float32(nil), e.Prec...), Shift: append([]float32(nil), e.Shift...)}
	}
	return out
}

// wireMalformed: requests the wire refuses get an error reply, are
// counted as rejected, and leave the module answering.
func (s *suite) wireMalformed(t testing.TB) {
	w := s.serve(t)
	ev := s.random(0)
	b, d := s.cfg.Batch, s.d
	wide := func(rows, cols int) bus.Evidence {
		return bus.Evidence{Prec: bus.Matrix(rows, cols, make([]float32, rows*cols)), Shift: bus.Matrix(rows, cols, make([]float32, rows*cols))}
	}
	cases := []struct {
		what string
		data []byte
	}{
		{"bytes that are not msgpack", []byte("not msgpack at all")},
		{"a NaN precision", s.forge(t, ev, func(r *bus.PriorRequest) { r.Terms[0].Prec.Data[d+1] = float32(math.NaN()) })},
		{"a negative precision", s.forge(t, ev, func(r *bus.PriorRequest) { r.Terms[0].Prec.Data[d+1] = -1 })},
		{"an infinite shift", s.forge(t, ev, func(r *bus.PriorRequest) { r.Terms[0].Shift.Data[d+1] = float32(math.Inf(1)) })},
		{fmt.Sprintf("a latent of %d, not %d", d+1, d), s.forge(t, ev, func(r *bus.PriorRequest) { r.Terms[0] = wide(b, d+1) })},
		{"terms of different batch sizes", s.forge(t, ev, func(r *bus.PriorRequest) { r.Terms[len(r.Terms)-1] = wide(b+1, d) })},
		{"no terms", s.forge(t, ev, func(r *bus.PriorRequest) { r.Terms = nil })},
		{"wire version 127", s.forge(t, ev, func(r *bus.PriorRequest) { r.Version = 127 })},
		{"the type of a reply", s.forge(t, ev, func(r *bus.PriorRequest) { r.Type = bus.TypePriorReply })},
	}
	// The forgery itself must make a request the module takes: the ones
	// above are refused for their fault, not for the way they were made.
	if msg := w.raw(t, w.subj.Prior(w.s.name), s.forge(t, ev, func(*bus.PriorRequest) {})); msg.Header.Get(micro.ErrorHeader) != "" {
		t.Fatalf("priortest: a sound request, encoded as the malformed ones are, was refused: %s", msg.Header.Get(micro.ErrorHeader))
	}
	before := w.counters(t)
	for _, c := range cases {
		if msg := w.raw(t, w.subj.Prior(w.s.name), c.data); msg.Header.Get(micro.ErrorHeader) == "" {
			t.Errorf("a request with %s was answered without an error (%d bytes); want an error reply", c.what, len(msg.Data))
		}
	}
	after := w.counters(t)
	if got := after.Rejected - before.Rejected; got != len(cases) {
		t.Errorf("%d malformed requests, %d counted as rejected (last error %q)", len(cases), got, after.LastError)
	}
	q := s.query(inferStep+1, false)
	w.expect(t, "an inference after malformed requests", s.request(bus.Header{}, q.Step, false, ev), "priortest", s.prior(t, w.ref, ev, q))
}

// wireForged: a training request the module must not learn from is
// answered from the model as it is, and counted as refused.
func (s *suite) wireForged(t testing.TB) {
	w := s.serve(t)
	var saved []byte
	forged := func(why string, h bus.Header, sender string, step uint64) {
		t.Helper()
		ev := s.clusters(seedTeach, step)
		before := w.counters(t)
		what := "a training request " + why
		w.expect(t, what, s.request(h, step, true, ev), sender, s.prior(t, w.ref, ev, s.query(step, false)))
		after := w.counters(t)
		if after.Learned != before.Learned || after.Refused != before.Refused+1 {
			t.Fatalf("%s: the status counts learned %d → %d, refused %d → %d; want it refused, not learned from",
				what, before.Learned, after.Learned, before.Refused, after.Refused)
		}
		probe, q := s.random(0), s.query(inferStep, false)
		w.expect(t, "an inference after "+what, s.request(bus.Header{}, q.Step, false, probe), "priortest", s.prior(t, w.ref, probe, q))
		if saved != nil && !bytes.Equal(saved, w.saveFile(t, 1)) {
			t.Fatalf("%s changed the module's checkpoint", what)
		}
	}
	forged("of a session, the module enrolled in none", bus.Header{Run: bus.NewToken()}, integrator, 1)
	w.enrol(t)
	saved = w.saveFile(t, 1)
	forged("of another session than the module's", bus.Header{Run: bus.NewToken()}, integrator, 2)
	forged("of the module's session, not from the integrator", bus.Header{Run: w.session}, "intruder", 3)
	w.trainOnInference = true
	forged("of the module's session, from the integrator, on the inference subject", bus.Header{Run: w.session}, integrator, 4)
}

// wireTraining: once enrolled, the module learns from every training
// request of its session as direct calls learn; a Saver's checkpoint
// saved over the bus is the model's, and restoring it rolls back.
func (s *suite) wireTraining(t testing.TB) {
	w := s.serve(t)
	w.enrol(t)
	before := w.counters(t)
	n := s.steps()
	for step := uint64(1); step <= n; step++ {
		ev := s.clusters(seedTeach, step)
		w.expect(t, fmt.Sprintf("training step %d", step), s.request(bus.Header{Run: w.session}, step, true, ev), integrator, s.prior(t, w.ref, ev, s.query(step, true)))
	}
	after := w.counters(t)
	if after.Learned-before.Learned != int(n) || after.Refused != before.Refused || after.Step != n {
		t.Fatalf("after %d training requests of its session, the status counts learned %d → %d, refused %d → %d, step %d; want every one learned from",
			n, before.Learned, after.Learned, before.Refused, after.Refused, after.Step)
	}
	probe, q := s.random(0), s.query(inferStep, false)
	want := s.prior(t, w.ref, probe, q)
	w.expect(t, "an inference after training", s.request(bus.Header{}, q.Step, false, probe), "priortest", want)

	file := w.saveFile(t, n)
	if file == nil {
		return
	}
	if model := s.save(t, w.ref); !bytes.HasSuffix(file, model) {
		t.Fatalf("the checkpoint file saved over the bus (%d bytes) does not end with the model's checkpoint (%d bytes)", len(file), len(model))
	}
	if l, err := module.CheckpointLabel(w.ckpt); err != nil || l != (module.Label{Run: w.run, Step: n}) {
		t.Fatalf("the checkpoint file saved over the bus is labelled %v (%v); want %v", l, err, module.Label{Run: w.run, Step: n})
	}
	ev := s.clusters(seedTeach, n+1)
	if _, err := w.ask(t, s.request(bus.Header{Run: w.session}, n+1, true, ev), integrator); err != nil {
		t.Fatalf("training step %d: %v", n+1, err)
	}
	if st := w.control(t, bus.Control{Op: bus.OpRestore, Step: n}); st.Err != "" || st.Step != n {
		t.Fatalf("asked to restore its checkpoint of step %d, %s answered %+v", n, s.name, st)
	}
	w.expect(t, fmt.Sprintf("an inference after rolling back to step %d", n), s.request(bus.Header{}, q.Step, false, probe), "priortest", want)
}
