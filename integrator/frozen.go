package integrator

import (
	"context"
	"slices"

	"github.com/serket-go/serket/bus"
)

// Coordinated training (TrainConfig.Frozen): a new module joins a trained
// pipeline by training alone against it. The frozen modules take part in
// every step (they encode and decode, and the new module's gradients pass
// through their decoders) but never learn, never save and never roll back:
// their weights are the same at every step, and their checkpoint files are
// not written. The run's checkpoints, rollbacks and resumes are of the
// modules that learn.

// isFrozen reports whether module m is frozen in the run.
func (c *TrainConfig) isFrozen(m string) bool { return slices.Contains(c.Frozen, m) }

// learning are the modules of names that learn (are not frozen), in order.
func (r *run) learning(names []string) []string {
	if len(r.cfg.Frozen) == 0 {
		return names
	}
	return slices.DeleteFunc(slices.Clone(names), r.cfg.isFrozen)
}

// enrolAll enrols every module of names in the session at the run's step:
// those that learn adopting the run's weights if adopt, the frozen ones
// frozen.
func (r *run) enrolAll(ctx context.Context, names []string, run string, step uint64, adopt bool) (map[string]bus.RunState, error) {
	learners := r.learning(names)
	states, err := r.allOf(ctx, learners, bus.Control{Op: bus.OpEnrol, ID: run, Step: step, Adopt: adopt})
	if err != nil {
		return states, err
	}
	var frozen []string
	for _, m := range names {
		if r.cfg.isFrozen(m) {
			frozen = append(frozen, m)
		}
	}
	if len(frozen) == 0 {
		return states, nil
	}
	fs, err := r.allOf(ctx, frozen, bus.Control{Op: bus.OpEnrol, ID: run, Step: step, Frozen: true})
	for m, st := range fs {
		states[m] = st
	}
	return states, err
}

// coordinate keeps of plan what teaches the modules that learn: a term
// whose subset has a learner (its gradient reaches that learner's encoder,
// through every target's decoder), and of a term whose subset is frozen
// alone, its learning targets (their decoders learn to read the frozen
// pipeline's latent). The rest would cost steps and teach nothing. The
// result reuses dst's storage.
func (c *TrainConfig) coordinate(dst, plan []bus.Term) []bus.Term {
	if len(c.Frozen) == 0 {
		return plan
	}
	dst = dst[:0]
	for _, t := range plan {
		if slices.ContainsFunc(t.Subset, c.learns) {
			dst = append(dst, t)
			continue
		}
		targets := slices.DeleteFunc(slices.Clone(t.Targets), c.isFrozen)
		if len(targets) > 0 {
			dst = append(dst, bus.Term{Subset: t.Subset, Targets: targets})
		}
	}
	return dst
}

func (c *TrainConfig) learns(m string) bool { return !c.isFrozen(m) }
