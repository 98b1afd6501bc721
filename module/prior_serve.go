package module

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bus"
)

// handlePrior answers one prior request. It learns only from a training
// step of the session it is enrolled in, sent by the integrator on the
// training subject (training); any other request is answered from the
// model as it is.
func (p *priorRunner) handlePrior(req micro.Request, training bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Requests++
	in := &p.in
	if err := bus.UnmarshalReuse(req.Subject(), req.Data(), in, bus.Expect{Latent: p.spec.Latent}); err != nil {
		p.refuse("prior request", true, err)
		p.replyError(req, "400", err)
		return
	}
	learn := p.learns(in, training)
	b := in.Terms[0].Prec.Rows()
	q := PriorQuery{B: b, D: p.spec.Latent, Step: in.Step, Learn: learn}
	p.ev, p.out = growTo(p.ev, len(in.Terms)), growTo(p.out, len(in.Terms))
	for t := range in.Terms {
		p.ev[t] = Evidence{Prec: in.Terms[t].Prec.Data, Shift: in.Terms[t].Shift.Data}
		p.out[t].grow(b, q.D)
	}
	start := time.Now()
	err := p.safely(func() error { return p.m.Prior(p.out, p.ev, q) })
	p.stats.Seconds += time.Since(start).Seconds()
	if err != nil {
		p.refuse("prior request", false, err)
		p.replyError(req, "500", err)
		return
	}
	if err := p.checkOut(b, q.D); err != nil {
		p.refuse("prior request", false, err)
		p.replyError(req, "500", err)
		return
	}
	if learn {
		p.stats.Learned++
		p.stats.Step = in.Step
	}
	p.respond(req, in, learn)
}

// learns reports whether request in may change the model, counting a
// training request it may not learn from as refused.
func (p *priorRunner) learns(in *bus.PriorRequest, training bool) bool {
	if !in.Train {
		return false
	}
	var why string
	switch {
	case !training:
		why = "it came on the inference subject, where anyone may ask (the integrator's training steps come on …train.prior.<module>)"
	case p.session == "" || in.Run != p.session:
		why = fmt.Sprintf("it is of session %s, and this module is enrolled in %s", orNone(in.Run), orNone(p.session))
	case in.Sender != integratorName:
		why = fmt.Sprintf("it is from %q: only the integrator trains", in.Sender)
	case p.frozenRun:
		return false
	default:
		return true
	}
	p.refuse("training prior request", false, fmt.Errorf("step %d: answered without learning: %s", in.Step, why))
	return false
}

// checkOut refuses outputs the model resized: they would not fit the
// reply (a model bug, answered as an error rather than a crash).
func (p *priorRunner) checkOut(b, d int) error {
	for t, o := range p.out {
		if len(o.Mu) != b*d || len(o.LogVar) != b*d || len(o.Concept) != b || len(o.Prob) != b {
			return fmt.Errorf("module %s: the prior model resized term %d's outputs (Mu %d, LogVar %d, Concept %d, Prob %d; want %d×%d, %d)",
				p.spec.Name, t, len(o.Mu), len(o.LogVar), len(o.Concept), len(o.Prob), b, d, b)
		}
	}
	return nil
}

// respond sends the model's priors, in the request's session.
func (p *priorRunner) respond(req micro.Request, in *bus.PriorRequest, learned bool) {
	r := &p.reply
	r.Header = bus.Header{Run: in.Run}
	r.SetSender(p.spec.Name)
	r.Step, r.Learned = in.Step, learned
	r.Terms = growTo(r.Terms, len(p.out))
	b, d := in.Terms[0].Prec.Rows(), p.spec.Latent
	for t, o := range p.out {
		pt := &r.Terms[t]
		pt.Mu.SetMatrix(b, d, o.Mu)
		pt.LogVar.SetMatrix(b, d, o.LogVar)
		pt.Concept = o.Concept
		pt.Prob.SetVector(o.Prob)
	}
	data, err := bus.MarshalLimit(r, bus.PayloadLimit(p.nc))
	if err != nil {
		err = fmt.Errorf("module %s: its prior cannot be sent: %w", p.spec.Name, err)
		p.refuse("prior reply", false, err)
		p.replyError(req, "500", err)
		return
	}
	if err := req.Respond(data); err != nil {
		p.log.Error("cannot reply", "subject", req.Subject(), "err", err)
	}
}

func (p *priorRunner) replyError(req micro.Request, code string, err error) {
	if req.Reply() == "" {
		return
	}
	if e := req.Error(code, err.Error(), nil); e != nil {
		p.log.Error("cannot send error reply", "subject", req.Subject(), "err", e)
	}
}

// grow sizes o for b items of d dimensions, N(0, I) and no category
// each until the model says otherwise: nothing of an earlier request is
// left in it.
func (o *PriorOut) grow(b, d int) {
	o.Mu, o.LogVar = growTo(o.Mu, b*d), growTo(o.LogVar, b*d)
	clear(o.Mu)
	clear(o.LogVar)
	o.Concept, o.Prob = growTo(o.Concept, b), growTo(o.Prob, b)
	for i := range o.Concept {
		o.Concept[i], o.Prob[i] = -1, 0
	}
}

// handleControl answers the integrator's enrol, save and restore, as a
// modality's module does (control.go).
func (p *priorRunner) handleControl(msg *nats.Msg) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var c bus.Control
	err := bus.UnmarshalFrom(msg.Subject, msg.Data, &c, bus.Expect{})
	if err == nil {
		err = p.control(&c)
	}
	if err != nil {
		p.refuse("control", false, err)
	}
	_, noKeep := p.saver()
	out := &bus.RunState{ID: p.weights.Run, Step: p.weights.Step, Instance: p.instance, Keeps: noKeep == nil}
	if err != nil {
		out.Err = err.Error()
	}
	out.SetSender(p.spec.Name)
	if msg.Reply == "" {
		return
	}
	if data, err := bus.Marshal(out); err == nil {
		p.nc.Publish(msg.Reply, data)
	}
}

func (p *priorRunner) control(c *bus.Control) error {
	switch {
	case c.Sender != integratorName:
		return fmt.Errorf("a %s from %q: only the integrator may ask", c.Op, c.Sender)
	case c.Op == bus.OpEnrol:
		return p.enrol(c)
	case c.Run != p.session:
		return fmt.Errorf("a %s of session %s, but this module is enrolled in %s", c.Op, c.Run, orNone(p.session))
	case p.frozenRun:
		return errFrozen
	}
	s, err := p.saver()
	if err != nil {
		return err
	}
	label := Label{Run: p.runID, Step: c.Step}
	if c.Op == bus.OpSave {
		err = save(s, p.opts.Checkpoint, label)
	} else {
		err = restoreLabelled(s, p.opts.Checkpoint, label)
	}
	if err != nil {
		return err
	}
	p.weights, p.trained = label, true
	if c.Op == bus.OpSave {
		p.stats.Saved = c.Step
	}
	return nil
}

func (p *priorRunner) enrol(c *bus.Control) error {
	if c.Frozen && !p.trained {
		return fmt.Errorf("asked to take part in run %s frozen, but its model is fresh: no checkpoint was restored (%s)", c.ID, orNone(p.opts.Checkpoint))
	}
	p.session, p.runID, p.frozenRun = c.Run, c.ID, c.Frozen
	if c.Adopt && !c.Frozen {
		p.weights = Label{Run: c.ID, Step: c.Step}
	}
	p.stats.Run, p.stats.Session = c.ID, c.Run
	p.log.Info("enrolled in a training run", "run", c.ID, "session", c.Run, "step", c.Step, "weights", p.weights, "frozen", c.Frozen)
	return nil
}

func (p *priorRunner) saver() (Saver, error) { return saverOf(p.m, "prior model", p.opts.Checkpoint) }

// growTo returns s with length n, keeping its storage when it is large
// enough.
func growTo[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
