package concept

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"

	"github.com/serket-go/serket/module"
)

// ModuleConfig configures the concept module: a Mixture served as a prior
// module (module.RunPrior).
type ModuleConfig struct {
	Name    string // the module's name; default "concept"
	Mixture Config // its mixture; D is the pipeline's latent size
	// Items is how many items a training epoch has: SVI weighs a batch as
	// Items/B copies of itself. Default 60000, Fashion-MNIST's.
	Items int
	// Warmup is how many training steps the module sits out at first:
	// it sends N(0, I) and learns nothing while the modalities' latent
	// takes shape, so that its first components are not fitted to the
	// noise of fresh encoders.
	Warmup int
	// Unit sends each item its category's mean with unit variance,
	// SERKET's N(μ_k, I), rather than the category's own Gaussian: its
	// prior expert then weighs in the product what N(0, I) did, and pulls
	// no harder. On the demo's budget (one seed, docs/training.md) the
	// category's own Gaussian clustered the latent more (k-means on it
	// 0.42 against 0.27) for 27 nats of test ELBO.
	Unit bool
	// Logger gets its progress (default slog.Default()).
	Logger *slog.Logger
}

// Module is SERKET's concept formation over the shared latent: at every
// training step it places each item of each term in a category given what
// the term's experts say of it (Assign), sends back that category's
// Gaussian as the item's prior, and learns from the items' posteriors
// under it (prior × evidence) by one SVI step. Between steps it changes
// only by the integrator's training requests of its run.
type Module struct {
	cfg   ModuleConfig
	mix   *Mixture
	steps int // training requests seen, warm-up included

	a      Assignment
	pcg    rand.PCG
	rng    *rand.Rand
	x, v   []float32 // the step's posteriors, every term's rows
	window updateWindow
}

var (
	_ module.PriorModel = (*Module)(nil)
	_ module.Saver      = (*Module)(nil)
)

// NewModule returns a concept module with a fresh mixture.
func NewModule(cfg ModuleConfig) (*Module, error) {
	if cfg.Name == "" {
		cfg.Name = "concept"
	}
	if cfg.Items == 0 {
		cfg.Items = 60000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Items < 1 || cfg.Warmup < 0 {
		return nil, fmt.Errorf("%w: items %d and warm-up %d: want at least 1 and 0", ErrInvalidConfig, cfg.Items, cfg.Warmup)
	}
	mix, err := New(cfg.Mixture)
	if err != nil {
		return nil, err
	}
	m := &Module{cfg: cfg, mix: mix}
	m.rng = rand.New(&m.pcg)
	return m, nil
}

// Mixture is the module's mixture (read it, do not change it).
func (m *Module) Mixture() *Mixture { return m.mix }

// Steps is how many training steps the module has taken part in.
func (m *Module) Steps() int { return m.steps }

// PriorSpec implements module.PriorModel.
func (m *Module) PriorSpec() module.PriorSpec {
	return module.PriorSpec{Name: m.cfg.Name, Latent: m.mix.Config().D}
}

// Prior implements module.PriorModel: each term's items get the Gaussian
// of their category, or N(0, I) before the mixture has learned anything
// (in warm-up). A row with no evidence draws its category from the
// mixture's weights, seeded by the step, so that generating from nothing
// samples the mixture.
func (m *Module) Prior(out []module.PriorOut, ev []module.Evidence, q module.PriorQuery) error {
	if q.Learn {
		m.steps++
	}
	if m.mix.Steps() == 0 {
		standard(out)
	} else {
		for t := range ev {
			m.pcg.Seed(q.Step, uint64(t)^seedStream)
			m.mix.Assign(&m.a, ev[t].Prec, ev[t].Shift, q.B, m.rng)
			m.send(out[t], ev[t], q)
		}
	}
	if q.Learn && m.steps > m.cfg.Warmup {
		m.learn(out, ev, q)
	}
	return nil
}

// send writes the assignment into o: each item its category's mean,
// with its own variance, or unit variance (Unit, SERKET's); an item
// nothing was seen of gets the category's own variance either way, so
// that generating from nothing draws from the mixture itself.
func (m *Module) send(o module.PriorOut, ev module.Evidence, q module.PriorQuery) {
	d := q.D
	copy(o.Mu, m.a.Mu)
	for r, k := range m.a.Category {
		o.Concept[r], o.Prob[r] = int32(k), m.a.Prob[r]
		lo, hi := r*d, (r+1)*d
		if !m.cfg.Unit || sum(ev.Prec[lo:hi]) == 0 {
			copy(o.LogVar[lo:hi], m.a.LogVar[lo:hi])
		} else {
			clear(o.LogVar[lo:hi])
		}
	}
}

// standard makes every prior N(0, I), without a category.
func standard(out []module.PriorOut) {
	for _, o := range out {
		clear(o.Mu)
		clear(o.LogVar)
	}
}

// learn takes one SVI step from the step's items, each once: its
// posterior under the prior just sent, in the term whose experts say the
// most of it (the most precision; the joint term, when it has every
// modality). The terms' posteriors of one item are not items of their own:
// a mixture fitted to all of them finds categories of which modalities
// spoke (a language-only latent sits apart from a vision-only one) rather
// than of what was seen. An item no expert saw is left out.
func (m *Module) learn(out []module.PriorOut, ev []module.Evidence, q module.PriorQuery) {
	d := q.D
	m.x, m.v = growTo(m.x, q.B*d), growTo(m.v, q.B*d)
	rows := 0
	for r := range q.B {
		lo, hi := r*d, (r+1)*d
		t, total := 0, float32(0)
		for i := range ev {
			if s := sum(ev[i].Prec[lo:hi]); s > total {
				t, total = i, s
			}
		}
		if total == 0 {
			continue
		}
		at := rows * d
		Fuse(m.x[at:at+d], m.v[at:at+d], out[t].Mu[lo:hi], out[t].LogVar[lo:hi], ev[t].Prec[lo:hi], ev[t].Shift[lo:hi])
		rows++
	}
	m.x, m.v = m.x[:rows*d], m.v[:rows*d]
	if rows == 0 {
		return
	}
	st := m.mix.Update(m.x, m.v, rows, max(m.cfg.Items, rows))
	m.window.add(st)
	if m.mix.Steps()%logEvery == 0 {
		w := m.window.mean()
		m.cfg.Logger.Info("concepts", "steps", m.mix.Steps(), "used", m.mix.Used(DefaultMinShare), "elbo", w.ELBO, "loglik", w.LogLik,
			"rho", st.Rho, "mean_shift", w.MeanShift, "merged", w.Merged)
		m.window = updateWindow{}
	}
}

// logEvery is how many SVI steps a progress line of the mixture covers:
// their mean ELBO per item and how far the components moved, to show it
// converging.
const logEvery = 100

// updateWindow sums the UpdateStats since the last progress line.
type updateWindow struct {
	n   int
	sum UpdateStats
}

func (w *updateWindow) add(st UpdateStats) {
	w.n++
	w.sum.ELBO += st.ELBO
	w.sum.LogLik += st.LogLik
	w.sum.MeanShift += st.MeanShift
	w.sum.Merged += st.Merged
}

func (w *updateWindow) mean() UpdateStats {
	n := float64(max(w.n, 1))
	return UpdateStats{ELBO: w.sum.ELBO / n, LogLik: w.sum.LogLik / n, MeanShift: w.sum.MeanShift / n, Merged: w.sum.Merged}
}

// sum is the total of a row's precisions.
func sum(prec []float32) float32 {
	var s float32
	for _, p := range prec {
		s += p
	}
	return s
}

// moduleMagic starts the module's checkpoint, before its mixture's.
const moduleMagic = "serket-concept-module\x00"

// Save implements module.Saver: the steps seen and whether it sends the
// categories' own variances (the run's model: serving it must send what
// training did), then the mixture.
func (m *Module) Save(w io.Writer) error {
	head := binary.LittleEndian.AppendUint64([]byte(moduleMagic), uint64(m.steps))
	learned := byte(1)
	if m.cfg.Unit {
		learned = 0
	}
	if _, err := w.Write(append(head, learned)); err != nil {
		return err
	}
	return m.mix.Save(w)
}

// Restore implements module.Saver; m is unchanged when it fails. The
// checkpoint's variance setting wins over the module's own flag.
func (m *Module) Restore(r io.Reader) error {
	head := make([]byte, len(moduleMagic)+9)
	if _, err := io.ReadFull(r, head); err != nil {
		return fmt.Errorf("concept module checkpoint: %w", errors.Join(errors.New("too short"), err))
	}
	if string(head[:len(moduleMagic)]) != moduleMagic {
		return errors.New("concept module checkpoint: not one (bad magic)")
	}
	steps, learned := binary.LittleEndian.Uint64(head[len(moduleMagic):]), head[len(head)-1]
	if steps > 1<<40 || learned > 1 {
		return fmt.Errorf("concept module checkpoint: %d steps, variance setting %d: damaged", steps, learned)
	}
	if err := m.mix.Restore(r); err != nil {
		return err
	}
	if unit := learned == 0; unit != m.cfg.Unit {
		m.cfg.Logger.Info("the checkpoint's variance setting wins", "unit_variance", unit)
		m.cfg.Unit = unit
	}
	m.steps = int(steps)
	return nil
}
