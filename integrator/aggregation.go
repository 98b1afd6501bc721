package integrator

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/mixture"
	"github.com/serket-go/serket/poe"
)

// An Aggregation is how a plan term's experts become the latent its targets
// decode, and how the term's objective flows back to every expert: the
// joint posteriors of the survey's joint models (a product of experts, a
// mixture of them, …). A run chooses one (TrainConfig.Aggregation); modules
// do not change with it: they still send posteriors and receive latents,
// row weights and gradients.
type Aggregation interface {
	// Name is the aggregation as flags and pipeline files name it.
	Name() string
	// Strata is how many latents a term over the subset is drawn as: one
	// for a product, one per expert for a mixture (its strata).
	Strata(subset []string) int
	// WeighsRows reports whether its latents weigh their rows
	// (bus.Latent.W), which modules must honour.
	WeighsRows() bool
	// NewTerm is the state of one latent's fusion, reused step after step.
	NewTerm() TermFusion
	// Joint writes the joint posterior of one item's experts (d
	// dimensions each) for inference: its mean and log-variance into mu
	// and logvar (a mixture's are its moments), and n draws of it into z
	// (n×d) with noise from rng. No experts is the prior N(0, I).
	Joint(mu, logvar, z []float32, experts []poe.Expert, n, d int, rng *rand.Rand)
}

// TermFusion draws one latent of a term and takes its objective back to
// the experts. Within a step StepMath calls Sample, then Penalty, then
// Backward, with the same experts.
type TermFusion interface {
	// Sample fuses the term's experts (b rows of d dimensions) for stratum
	// s, the index in experts of the one the latent is drawn from, or -1
	// for none (a mixture's stratum whose expert did not post), draws the
	// latent z with noise eps, and writes each row's weight into w.
	Sample(z, w, eps []float32, experts []poe.Expert, s, b, d int)
	// Penalty writes each row's regulariser into pen (KL(q‖N(0, I)), or a
	// one-sample estimate of it) and returns its sum weighed by w.
	Penalty(pen, z []float32) float64
	// Backward adds into grads (one per expert) the gradient of the
	// term's objective Σ_rows w·(loglik − beta·pen), given g, the
	// decoders' gradient with respect to z of Σ_rows w·loglik.
	Backward(grads []poe.ExpertGrad, experts []poe.Expert, z, g, eps []float32, beta float32)
}

// PoE is the product of the experts and the N(0, I) prior (MVAE, Wu &
// Goodman 2018): one latent per term, every row weighing 1, the KL in
// closed form.
func PoE() Aggregation { return poeAggregation{} }

// MoE is the uniform mixture of the experts (MMVAE, Shi et al. 2019): a
// term over M experts is M strata, each a latent drawn from one expert and
// decoded by every target, weighing 1/M in each row where that expert is
// present and 0 elsewhere; the penalty is the one-sample estimate log q(z|X)
// − log N(z; 0, I) of the stratified ELBO (package mixture).
func MoE() Aggregation { return moeAggregation{} }

// ParseAggregation reads an aggregation's name as the CLI and pipeline
// file give it: "poe" (the default) or "moe".
func ParseAggregation(name string) (Aggregation, error) {
	switch strings.ToLower(name) {
	case "poe", "":
		return PoE(), nil
	case "moe":
		return MoE(), nil
	}
	return nil, fmt.Errorf("integrator: unknown aggregation %q (want poe or moe)", name)
}

type poeAggregation struct{}

func (poeAggregation) Name() string        { return "poe" }
func (poeAggregation) Strata([]string) int { return 1 }
func (poeAggregation) WeighsRows() bool    { return false }
func (poeAggregation) NewTerm() TermFusion { return &poeTerm{} }

func (poeAggregation) Joint(mu, logvar, z []float32, experts []poe.Expert, n, d int, rng *rand.Rand) {
	var f poe.Fused
	f.Fuse(experts, 1, d)
	copy(mu, f.Mu)
	copy(logvar, f.LogVar)
	eps := make([]float32, d)
	for i := range n {
		for k := range eps {
			eps[k] = float32(rng.NormFloat64())
		}
		f.Sample(z[i*d:(i+1)*d], eps)
	}
}

type moeAggregation struct{}

func (moeAggregation) Name() string          { return "moe" }
func (moeAggregation) Strata(s []string) int { return len(s) }
func (moeAggregation) WeighsRows() bool      { return true }
func (moeAggregation) NewTerm() TermFusion   { return &moeTerm{} }

// Joint draws each latent from an expert chosen uniformly (the mixture),
// and gives the mixture's mean and variance as its summary.
func (moeAggregation) Joint(mu, logvar, z []float32, experts []poe.Expert, n, d int, rng *rand.Rand) {
	if len(experts) == 0 {
		poeAggregation{}.Joint(mu, logvar, z, nil, n, d, rng)
		return
	}
	m := float64(len(experts))
	for j := range d {
		var mean, second float64
		for _, e := range experts {
			l, _ := poe.ClampLogVar(float64(e.LogVar[j]))
			u := float64(e.Mu[j])
			mean += u / m
			second += (math.Exp(l) + u*u) / m
		}
		mu[j] = float32(mean)
		logvar[j] = float32(math.Log(math.Max(second-mean*mean, math.SmallestNonzeroFloat64)))
	}
	for i := range n {
		e := experts[rng.IntN(len(experts))]
		for j := range d {
			l, _ := poe.ClampLogVar(float64(e.LogVar[j]))
			z[i*d+j] = float32(float64(e.Mu[j]) + math.Exp(l/2)*rng.NormFloat64())
		}
	}
}

// poeTerm is one term's product of experts.
type poeTerm struct {
	f         poe.Fused
	dmu, dvar []float32 // the gradient with respect to the fused mean and variance
}

func (t *poeTerm) Sample(z, w, eps []float32, experts []poe.Expert, _, b, d int) {
	t.f.Fuse(experts, b, d)
	t.f.Sample(z, eps)
	for i := range w {
		w[i] = 1
	}
}

func (t *poeTerm) Penalty(pen, _ []float32) float64 { return t.f.KL(pen) }

func (t *poeTerm) Backward(grads []poe.ExpertGrad, experts []poe.Expert, _, g, eps []float32, beta float32) {
	n := len(g)
	t.dmu, t.dvar = growTo(t.dmu, n), growTo(t.dvar, n)
	t.f.TermGrad(t.dmu, t.dvar, g, eps, beta)
	t.f.Backward(grads, experts, t.dmu, t.dvar)
}

// moeTerm is one stratum of a term's mixture.
type moeTerm struct {
	m       mixture.Mixture
	experts []poe.Expert
	s       int
}

func (t *moeTerm) Sample(z, w, eps []float32, experts []poe.Expert, s, b, d int) {
	t.m.B, t.m.D, t.experts, t.s = b, d, experts, s
	if s < 0 { // the stratum's expert did not post: no row has it
		copy(z, eps)
		clear(w)
		return
	}
	t.m.Sample(z, eps, experts, s)
	t.m.Weights(w, experts, s)
}

func (t *moeTerm) Penalty(pen, z []float32) float64 {
	if t.s < 0 {
		clear(pen)
		return 0
	}
	return t.m.Penalty(pen, z, t.experts, t.s)
}

func (t *moeTerm) Backward(grads []poe.ExpertGrad, experts []poe.Expert, z, g, eps []float32, beta float32) {
	if t.s < 0 {
		return
	}
	t.m.Backward(grads, experts, z, g, eps, beta, t.s)
}

// checkRowWeights fails unless every module of the run says it honours
// row weights, when the run's aggregation weighs rows: a module that
// ignored them would train on another objective, silently. A module not
// discovered yet is waited for, over a few discovery polls.
func (r *run) checkRowWeights(ctx context.Context) error {
	agg := r.cfg.Aggregation
	if !agg.WeighsRows() {
		return nil
	}
	for polls := 0; ; polls++ {
		missing, err := r.ig.withoutRowWeights(r.cfg.Modules, agg)
		if err != nil || len(missing) == 0 || polls >= 5 {
			if err == nil && len(missing) > 0 {
				err = fmt.Errorf("integrator: aggregation %s: %s not discovered, so whether they honour row weights is not known", agg.Name(), strings.Join(missing, ", "))
			}
			return err
		}
		select {
		case <-r.ig.Polled():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// withoutRowWeights returns the modules of names not discovered yet, or an
// error naming one that is and does not honour row weights.
func (ig *Integrator) withoutRowWeights(names []string, agg Aggregation) ([]string, error) {
	ig.mu.Lock()
	defer ig.mu.Unlock()
	var missing []string
	for _, name := range names {
		m := ig.modules[name]
		if m == nil {
			missing = append(missing, name)
			continue
		}
		if !slices.Contains(strings.Split(m.Training, ","), bus.TrainsRowWeights) {
			return nil, fmt.Errorf("integrator: aggregation %s weighs rows, and module %s does not say it honours row weights (its service's %s is %q): built on an older module SDK?",
				agg.Name(), name, bus.MetaTraining, m.Training)
		}
	}
	return missing, nil
}
