package module

import (
	"errors"
	"fmt"
	"time"

	"github.com/serket-go/serket/bus"
)

// control handles the integrator's request about a training run (on the
// actor, after every training message sent before it) and answers with
// the run and step the weights are of, and why the request failed if it
// did. A save or restore is refused unless the module is enrolled in the
// request's session: only the integrator that enrolled it decides when its
// checkpoint is written or read.
func (r *runner) control(c *bus.Control, reply string) {
	var err error
	switch {
	case c.Sender != integratorName:
		err = fmt.Errorf("a %s from %q: only the integrator may ask", c.Op, c.Sender)
	case c.Op == bus.OpEnrol:
		err = r.enrol(c)
	case c.Run != r.session:
		err = fmt.Errorf("a %s of session %s, but this module is enrolled in %s", c.Op, c.Run, orNone(r.session))
	case c.Op == bus.OpSave:
		err = r.saveFor(c)
	case c.Op == bus.OpRestore:
		err = r.restoreFor(c)
	}
	if err != nil {
		r.counters(func(s *trainStats) { s.Refused++; s.LastError = err.Error() })
		r.logLimit.Warn(r.log, "control "+c.Sender, "refused the integrator's request", "op", c.Op, "from", c.Sender, "err", err)
	}
	_, noKeep := r.saver()
	out := &bus.RunState{ID: r.weights.Run, Step: r.weights.Step, Instance: r.instance, Keeps: noKeep == nil}
	if err != nil {
		out.Err = err.Error()
	}
	if reply != "" {
		r.publish(reply, out)
	}
}

// enrol joins the session c.Run of run c.ID: any step under way is dropped,
// and messages of the earlier session are refused from now on. With Adopt
// the weights become the run's at c.Step (a new run starts from whatever
// its modules hold).
//
// Frozen, it takes part without learning; only trained weights (a
// checkpoint's) can be frozen, else it stays out of the session.
func (r *runner) enrol(c *bus.Control) error {
	if c.Frozen && !r.trained {
		return fmt.Errorf("asked to take part in run %s frozen, but its weights are fresh: no checkpoint was restored (%s), so there is nothing trained to freeze",
			c.ID, orNone(r.opts.Checkpoint))
	}
	r.abandon()
	r.session, r.runID, r.frozen = c.Run, c.ID, c.Frozen
	if c.Adopt && !c.Frozen {
		r.weights = Label{Run: c.ID, Step: c.Step}
	}
	r.counters(func(s *trainStats) { s.Run, s.Session = c.ID, c.Run })
	r.log.Info("enrolled in a training run", "run", c.ID, "session", c.Run, "step", c.Step, "weights", r.weights, "frozen", c.Frozen)
	return nil
}

// saveFor writes the checkpoint of the run at c.Step: the weights as they
// are once every message of the session before the request is handled.
func (r *runner) saveFor(c *bus.Control) error {
	if r.frozen {
		return errFrozen
	}
	s, err := r.saver()
	if err != nil {
		return err
	}
	r.abandon() // a step still under way has lost its expert gradient
	label := Label{Run: r.runID, Step: c.Step}
	start := time.Now()
	if err := save(s, r.opts.Checkpoint, label); err != nil {
		return err
	}
	r.weights, r.trained = label, true
	took := time.Since(start).Seconds()
	r.counters(func(st *trainStats) { st.SaveSeconds += took; st.Saved = c.Step })
	return nil
}

// restoreFor loads the run's checkpoint of c.Step, to roll back with the
// rest of the run.
func (r *runner) restoreFor(c *bus.Control) error {
	if r.frozen {
		return errFrozen
	}
	s, err := r.saver()
	if err != nil {
		return err
	}
	r.abandon()
	want := Label{Run: r.runID, Step: c.Step}
	if err := restoreLabelled(s, r.opts.Checkpoint, want); err != nil {
		return err
	}
	r.weights, r.trained = want, true
	r.log.Info("restored the run's checkpoint", "path", r.opts.Checkpoint, "weights", want)
	return nil
}

// errFrozen: a frozen module's weights and checkpoint do not change.
var errFrozen = errors.New("this module takes part in the run frozen: its weights and checkpoint do not change")

// errNoCheckpoint: the module keeps no checkpoint it could save or restore.
var errNoCheckpoint = errors.New("this module keeps no checkpoint")

func (r *runner) saver() (Saver, error) { return saverOf(r.m, "modality", r.opts.Checkpoint) }

// saverOf is m (a modality or a prior model, what) as the Saver of
// checkpoint, or why it keeps none.
func saverOf(m any, what, checkpoint string) (Saver, error) {
	s, ok := As[Saver](m)
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: its %s cannot save (it is no module.Saver)", errNoCheckpoint, what)
	case checkpoint == "":
		return nil, fmt.Errorf("%w: start it with --checkpoint FILE or $SERKET_CHECKPOINT_DIR", errNoCheckpoint)
	}
	return s, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
