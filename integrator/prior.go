package integrator

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/poe"
)

// A run's prior module (TrainConfig.Prior) is asked, at every step, for
// the prior of each item of each term given what the term's experts say
// (StepMath.Evidence), before the latents are drawn; the products are
// then taken under it. It is a peer of the run like a module: enrolled,
// saved, restored and rolled back with them, and while it is gone (or
// answers late, or garbage) the steps go on under N(0, I), counted in
// EpochStats.PlainPrior and logged.

// checkPrior refuses a prior module the run cannot use.
func (c *TrainConfig) checkPrior() error {
	switch {
	case c.Prior == "":
		return nil
	case !bus.ValidName(c.Prior):
		return fmt.Errorf("integrator: prior module name %q is not valid", c.Prior)
	case slices.Contains(c.Modules, c.Prior):
		return fmt.Errorf("integrator: %s is both a modality and the prior module", c.Prior)
	}
	if _, ok := c.Aggregation.(aggregate.Conditioned); !ok {
		return fmt.Errorf("integrator: a prior module (%s) needs an aggregation that fuses under its prior (poe or gpoe), not %s", c.Prior, c.Aggregation.Name())
	}
	return nil
}

// peers are the run's modules and its prior module: what is enrolled,
// checkpointed and rolled back.
func (c *TrainConfig) peers() []string {
	if c.Prior == "" {
		return c.Modules
	}
	return append(slices.Clone(c.Modules), c.Prior)
}

// askPrior asks the prior module for the step's priors, one per term of
// sm, and returns them, or nil (N(0, I)) when there is no prior module,
// it is gone, or its answer is not usable: refused, late, of another
// step or shape.
func (r *run) askPrior(ctx context.Context, step uint64, posts map[string]*bus.Posterior, eval bool) []poe.Prior {
	m := r.cfg.Prior
	if m == "" {
		return nil
	}
	if ms := r.mods[m]; ms != nil && !ms.gone.IsZero() {
		r.plainPrior(step, errors.New("it is gone"))
		return nil
	}
	st := r.store
	sm := &st.math
	st.priorReq = bus.PriorRequest{Header: bus.Header{Run: r.session}, Step: step, Train: !eval, Terms: sm.Evidence(posts)}
	e := bus.Expect{Latent: sm.D, Batch: sm.B, Terms: len(sm.Terms())}
	// Bounded: a module killed with the request in hand never answers,
	// and no-responders is only for a subject nobody hears.
	rctx, cancel := context.WithTimeout(ctx, r.cfg.Deadline)
	subject := r.ig.subj.PriorTrain(m) // what it may learn from
	if eval {
		subject = r.ig.subj.Prior(m)
	}
	err := r.ig.request(rctx, r.cfg.Deadline, subject, &st.priorReq, &st.priorRep, e)
	cancel()
	if err == nil && st.priorRep.Step != step {
		err = fmt.Errorf("its reply is of step %d", st.priorRep.Step)
	}
	if err != nil {
		if ctx.Err() == nil && r.gone(m) {
			err = fmt.Errorf("%w; it is gone", err)
		}
		r.plainPrior(step, err)
		return nil
	}
	if !eval && !st.priorRep.Learned && !r.cfg.isFrozen(m) {
		// A new process of it (it restarted) is not enrolled: found gone,
		// it rejoins before the next step, rolling the run back with it.
		if r.gone(m) {
			r.plainPrior(step, errors.New("it restarted"))
			return nil
		}
		r.limit.Warn(r.log, "prior not learning", "the prior module answered a training step without learning from it (is it enrolled, and started with --train?)", "peer", m, "step", step)
	}
	st.priors = growTo(st.priors, len(st.priorRep.Terms))
	for i, t := range st.priorRep.Terms {
		st.priors[i] = poe.Prior{Mu: t.Mu.Data, LogVar: t.LogVar.Data}
	}
	return st.priors
}

// plainPrior counts and logs (once per interval) a step that goes on
// under N(0, I) without the prior module's prior.
func (r *run) plainPrior(step uint64, why error) {
	if r.es != nil {
		r.es.PlainPrior++
	}
	r.limit.Warn(r.log, "plain prior", "the prior module gave no usable prior: steps go on under N(0, I) until it does", "peer", r.cfg.Prior, "step", step, "err", why)
}
