package aggregate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/serket-go/serket/mixture"
	"github.com/serket-go/serket/poe"
)

// An Aggregation is how a plan term's experts become the latent its targets
// decode, and how the term's objective flows back to every expert: the
// joint posteriors of the survey's joint models (a product of experts, a
// mixture of them, …). A run chooses one (the integrator's
// TrainConfig.Aggregation); modules do not change with it: they still send
// posteriors and receive latents, row weights and gradients.
type Aggregation interface {
	// Name is the aggregation as flags and pipeline files name it.
	Name() string
	// Strata is how many latents a term over the subset is drawn as: one
	// for a product, one per expert for a mixture (its strata).
	Strata(subset []string) int
	// From appends to dst[:0] the modules of subset whose posteriors
	// stratum k's latent is drawn from (bus.Term.From), none for all.
	From(dst, subset []string, k int) []string
	// WeighsRows reports whether its latents weigh their rows
	// (bus.Latent.W), which modules must honour.
	WeighsRows() bool
	// NewTerm is the state of one latent's fusion, reused step after step.
	NewTerm() TermFusion
	// Posterior is the joint posterior of b items given their experts (d
	// dimensions each) and the module of each, for inference and
	// evaluation. It keeps experts.
	Posterior(experts []poe.Expert, modules []string, b, d int) Posterior
}

// Conditioned is an Aggregation that can fuse under a prior other than
// N(0, I): a prior module's, one Gaussian per row (SERKET's concept
// mixture sends each item the Gaussian of its category). In training the
// prior comes in Stratum.Prior; every term's product takes it as its prior
// expert and its KL is taken from it. PoE and Gated are; the mixtures are
// not (their one-sample penalties would need the prior's density per
// stratum, which nothing implements yet).
type Conditioned interface {
	Aggregation
	// PosteriorUnder is Posterior with prior in place of N(0, I).
	PosteriorUnder(prior poe.Prior, experts []poe.Expert, modules []string, b, d int) Posterior
	// Evidence writes what the experts say of each of b items without a
	// prior, in natural parameters (poe.Evidence): the prior module's
	// input. Under prior p the posterior is p times it.
	Evidence(prec, shift []float32, experts []poe.Expert, modules []string, b, d int)
}

// Posterior is a batch's joint posterior q(z | the experts of each row).
// Rows without an expert are the prior N(0, I). Draw uses scratch of its
// own: one goroutine at a time.
type Posterior interface {
	// Mean and LogVar are its mean and log-variance (B×D; a mixture's
	// are its moments): the representation of each item.
	Mean() []float32
	LogVar() []float32
	// Draw writes a draw of row r into z (D numbers), its noise from
	// rng, and returns log q(z), the density the draw came from.
	Draw(z []float32, r int, rng *rand.Rand) float64
}

// TermFusion draws one latent of a term and takes its objective back to
// the experts. Within a step StepMath calls Sample, then Penalty, then
// Backward, with the same experts.
type TermFusion interface {
	// Sample fuses the stratum's experts (b rows of d dimensions), draws
	// the latent z with noise eps, and writes each row's weight into w.
	Sample(z, w, eps []float32, s Stratum, b, d int)
	// Penalty writes each row's regulariser into pen (KL(q‖N(0, I)), or a
	// one-sample estimate of it) and returns its sum weighed by w.
	Penalty(pen, z []float32) float64
	// Backward adds into grads (one per expert) the gradient of the
	// term's objective Σ_rows w·(loglik − beta·pen), given g, the
	// decoders' gradient with respect to z of Σ_rows w·loglik.
	Backward(grads []poe.ExpertGrad, experts []poe.Expert, z, g, eps []float32, beta float32)
}

// Stratum is one latent of a term, as TermFusion.Sample fuses it.
type Stratum struct {
	Experts []poe.Expert // of the term's subset, those that posted
	Of      []int        // the index in the subset of each expert
	Subset  int          // the subset's size
	K       int          // which of the term's strata, 0 ≤ K < Strata
	Modules []string     // the module of each expert
	// Prior is the prior expert of each row (zero: N(0, I)), for a
	// Conditioned aggregation; the others are never given one.
	Prior poe.Prior
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

// Parse reads an aggregation's name as the CLI and pipeline
// file give it: "poe" (the default), "moe", "mopoe" or "gpoe" (Gated, not
// yet bound).
func Parse(name string) (Aggregation, error) {
	switch strings.ToLower(name) {
	case "poe", "":
		return PoE(), nil
	case "moe":
		return MoE(), nil
	case "mopoe":
		return MoPoE(), nil
	case "gpoe":
		return Gated(), nil
	}
	return nil, fmt.Errorf("unknown aggregation %q (want poe, moe, mopoe or gpoe)", name)
}

type poeAggregation struct{}

var _ Conditioned = poeAggregation{}

func (poeAggregation) Name() string                         { return "poe" }
func (poeAggregation) Strata([]string) int                  { return 1 }
func (poeAggregation) From(dst, _ []string, _ int) []string { return dst[:0] }
func (poeAggregation) WeighsRows() bool                     { return false }
func (poeAggregation) NewTerm() TermFusion                  { return &poeTerm{} }

func (a poeAggregation) Posterior(experts []poe.Expert, modules []string, b, d int) Posterior {
	return a.PosteriorUnder(poe.Prior{}, experts, modules, b, d)
}

func (poeAggregation) Evidence(prec, shift []float32, experts []poe.Expert, _ []string, b, d int) {
	poe.Evidence(prec, shift, experts, b, d)
}

func (poeAggregation) PosteriorUnder(prior poe.Prior, experts []poe.Expert, _ []string, b, d int) Posterior {
	p := &poePosterior{eps: make([]float32, d)}
	p.f.FuseWith(prior, experts, b, d)
	return p
}

// poePosterior is the product of the experts: a diagonal Gaussian.
type poePosterior struct {
	f   poe.Fused
	eps []float32
}

func (p *poePosterior) Mean() []float32   { return p.f.Mu }
func (p *poePosterior) LogVar() []float32 { return p.f.LogVar }

func (p *poePosterior) Draw(z []float32, r int, rng *rand.Rand) float64 {
	var logq float64
	for j := range p.eps {
		e := rng.NormFloat64()
		p.eps[j] = float32(e)
		logq += -0.5*e*e - halfLog2Pi - 0.5*float64(p.f.LogVar[r*p.f.D+j])
	}
	p.f.SampleRow(z, p.eps, r)
	return logq
}

// halfLog2Pi is log √(2π), a Gaussian density's constant per dimension.
var halfLog2Pi = 0.5 * math.Log(2*math.Pi)

type moeAggregation struct{}

func (moeAggregation) Name() string                         { return "moe" }
func (moeAggregation) Strata(s []string) int                { return len(s) }
func (moeAggregation) From(dst, s []string, k int) []string { return append(dst[:0], s[k]) }
func (moeAggregation) WeighsRows() bool                     { return true }
func (moeAggregation) NewTerm() TermFusion                  { return &moeTerm{} }

func (moeAggregation) Posterior(experts []poe.Expert, _ []string, b, d int) Posterior {
	p := &moePosterior{experts: experts, b: b, d: d, mu: make([]float32, b*d), logvar: make([]float32, b*d),
		logq: make([]float64, len(experts))}
	for r := range b {
		p.moments(r)
	}
	return p
}

// moePosterior is the uniform mixture of each row's present experts.
type moePosterior struct {
	experts    []poe.Expert
	b, d       int
	mu, logvar []float32
	logq       []float64 // Draw's scratch: each expert's log-density
	present    []int     // Draw's scratch: the row's experts
}

func (p *moePosterior) Mean() []float32   { return p.mu }
func (p *moePosterior) LogVar() []float32 { return p.logvar }

// moments writes row r's mixture mean and variance (the prior's, 0 and 1,
// for a row without experts).
func (p *moePosterior) moments(r int) {
	present := p.rowExperts(r)
	m := float64(len(present))
	for j := range p.d {
		i := r*p.d + j
		if m == 0 {
			p.mu[i], p.logvar[i] = 0, 0
			continue
		}
		var mean, second float64
		for _, k := range present {
			e := p.experts[k]
			l, _ := poe.ClampLogVar(float64(e.LogVar[i]))
			u := float64(e.Mu[i])
			mean += u / m
			second += (math.Exp(l) + u*u) / m
		}
		p.mu[i] = float32(mean)
		p.logvar[i] = float32(math.Log(math.Max(second-mean*mean, math.SmallestNonzeroFloat64)))
	}
}

// rowExperts lists the experts present in row r.
func (p *moePosterior) rowExperts(r int) []int {
	p.present = p.present[:0]
	for k, e := range p.experts {
		if e.Present == nil || e.Present[r] {
			p.present = append(p.present, k)
		}
	}
	return p.present
}

// Draw picks one of the row's experts uniformly and draws from it; log q
// is the mixture's density, by log-sum-exp over the row's experts.
func (p *moePosterior) Draw(z []float32, r int, rng *rand.Rand) float64 {
	present := p.rowExperts(r)
	if len(present) == 0 {
		var logq float64
		for j := range z {
			e := rng.NormFloat64()
			z[j] = float32(e)
			logq += -0.5*e*e - halfLog2Pi
		}
		return logq
	}
	e := p.experts[present[rng.IntN(len(present))]]
	for j := range z {
		l, _ := poe.ClampLogVar(float64(e.LogVar[r*p.d+j]))
		z[j] = float32(float64(e.Mu[r*p.d+j]) + math.Exp(l/2)*rng.NormFloat64())
	}
	most := math.Inf(-1)
	for n, k := range present {
		var lq float64
		for j, zj := range z {
			l, _ := poe.ClampLogVar(float64(p.experts[k].LogVar[r*p.d+j]))
			diff := float64(zj) - float64(p.experts[k].Mu[r*p.d+j])
			lq += -0.5*diff*diff*math.Exp(-l) - halfLog2Pi - 0.5*l
		}
		p.logq[n] = lq
		most = math.Max(most, lq)
	}
	var sum float64
	for n := range present {
		sum += math.Exp(p.logq[n] - most)
	}
	return most + math.Log(sum/float64(len(present)))
}

// poeTerm is one term's product of experts.
type poeTerm struct {
	f         poe.Fused
	dmu, dvar []float32 // the gradient with respect to the fused mean and variance
}

func (t *poeTerm) Sample(z, w, eps []float32, s Stratum, b, d int) {
	t.f.FuseWith(s.Prior, s.Experts, b, d)
	t.f.Sample(z, eps)
	for i := range w {
		w[i] = 1
	}
}

func (t *poeTerm) Penalty(pen, _ []float32) float64 { return t.f.KL(pen) }

func (t *poeTerm) Backward(grads []poe.ExpertGrad, experts []poe.Expert, _, g, eps []float32, beta float32) {
	n := len(g)
	t.dmu, t.dvar = grow(t.dmu, n), grow(t.dvar, n)
	t.f.TermGrad(t.dmu, t.dvar, g, eps, beta)
	t.f.Backward(grads, experts, t.dmu, t.dvar)
}

// moeTerm is one stratum of a term's mixture.
type moeTerm struct {
	m       mixture.Mixture
	experts []poe.Expert
	s       int
}

// Sample draws stratum K from the K-th expert of the subset, if it posted.
func (t *moeTerm) Sample(z, w, eps []float32, st Stratum, b, d int) {
	experts := st.Experts
	t.m.B, t.m.D, t.experts, t.s = b, d, experts, slices.Index(st.Of, st.K)
	s := t.s
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
