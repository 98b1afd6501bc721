package integrator

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/nn"
)

// A learned aggregation's parameters (gpoe's gates) are the integrator's
// own weights: it updates them after every training step, with the
// modules, and its checkpoint (integrator.json) carries them and their
// optimiser's state, so that a checkpoint, a rollback and a resume are of
// one step for them as for every module.

// gateKind is the nn checkpoint kind of the gates.
const gateKind = "integrator.gates"

// gateState is a checkpoint's gates: the modules and latent size they were
// bound with, and the parameters (with Adam's state) as nn.Save writes them.
type gateState struct {
	Modules []string `json:"modules"`
	Latent  int      `json:"latent"`
	Params  []byte   `json:"params"`
}

// gates are a run's learned aggregation and its optimiser.
type gates struct {
	agg aggregate.Learned
	opt *nn.Adam
}

// newGates binds the run's aggregation, if it is learned (nil otherwise),
// for its modules and latent size d.
func newGates(cfg *TrainConfig, d int) *gates {
	l, ok := cfg.Aggregation.(aggregate.Learned)
	if !ok {
		return nil
	}
	l.Bind(cfg.Modules, d)
	opt := nn.NewAdam(l.Params(), cfg.GateLR)
	opt.Maximize = true // the gradients are of the ELBO
	return &gates{agg: l, opt: opt}
}

// step updates the gates by the gradient of the step's objective.
func (g *gates) step() {
	if g != nil {
		g.opt.Step()
	}
}

// save is the gates as a checkpoint carries them (nil for no gates).
func (g *gates) save(modules []string, d int) (*gateState, error) {
	if g == nil {
		return nil, nil
	}
	var buf bytes.Buffer
	if err := nn.Save(&buf, gateKind, g.agg.Params(), g.opt, nil); err != nil {
		return nil, fmt.Errorf("integrator: checkpoint of the %s gates: %w", g.agg.Name(), err)
	}
	return &gateState{Modules: slices.Clone(modules), Latent: d, Params: buf.Bytes()}, nil
}

// load takes up the gates of a checkpoint (from names it in errors). A
// learned aggregation cannot go on from a checkpoint without them.
func (g *gates) load(st *gateState, from string) error {
	if g == nil {
		return nil
	}
	if st == nil {
		return fmt.Errorf("%s holds no %s gate weights (a run of another aggregation, or of an older serket): it cannot be resumed as %s; start a new run",
			from, g.agg.Name(), g.agg.Name())
	}
	if _, err := nn.Load(bytes.NewReader(st.Params), gateKind, g.agg.Params(), g.opt); err != nil {
		return fmt.Errorf("%s: the %s gate weights: %w", from, g.agg.Name(), err)
	}
	return nil
}

// loadedAggregation is the learned aggregation of a checkpoint, bound as
// it was trained and with its gates, for serving and evaluation.
func loadedAggregation(l aggregate.Learned, st *gateState, from string) error {
	if st == nil {
		return fmt.Errorf("%s holds no %s gate weights", from, l.Name())
	}
	if st.Latent < 1 || st.Latent > bus.MaxElements || len(st.Modules) == 0 || len(st.Modules) > bus.MaxModules {
		return fmt.Errorf("%s: the %s gates are bound to %d modules of latent size %d", from, l.Name(), len(st.Modules), st.Latent)
	}
	for _, m := range st.Modules {
		if !bus.ValidName(m) {
			return fmt.Errorf("%s: the %s gates name module %q, which is not a valid name", from, l.Name(), m)
		}
	}
	l.Bind(st.Modules, st.Latent)
	if _, err := nn.Load(bytes.NewReader(st.Params), gateKind, l.Params(), nil); err != nil {
		return fmt.Errorf("%s: the %s gate weights: %w", from, l.Name(), err)
	}
	return nil
}
