package aggregate

import (
	"fmt"
	"slices"

	"github.com/serket-go/serket/nn"
	"github.com/serket-go/serket/poe"
)

// Learned is an aggregation with parameters of its own: the integrator
// trains them with the modules (their gradients are what its terms'
// Backward accumulates) and keeps them in the run's checkpoints.
type Learned interface {
	Aggregation
	// Bind sizes the parameters for a run's modules and latent size, at
	// their initial values. An aggregation is bound once, before use.
	Bind(modules []string, d int)
	// Params are the parameters; Backward adds into their G.
	Params() []*nn.Param
}

// Gated is a generalised product of experts (Cao & Fleet 2014) whose
// weights are learned: expert m's precision in dimension j is multiplied
// by α = exp(θ[m][n−1][j]), where n is how many experts the row fuses, so
//
//	T = 1 + Σ_m α_m T_m,  μ = Σ_m α_m T_m μ_m / T.
//
// The gated precision is bounded as every expert's is: it is exp(−clamp(l
// − θ)), the product of the experts whose log-variances are shifted by
// their gates, clamped to ±poe.MaxLogVar. So a gate that would take an
// expert past the bound gets no gradient there (the clamp's derivative),
// as an expert's own log-variance does, and no gate can make a precision
// overflow.
//
// θ starts at 0, where it is PoE. A weight that depends on the module and
// dimension alone could be learned by the module's encoder itself (its
// log-variance's bias); one that also depends on how many experts are
// fused cannot, since no encoder sees the others: it is what lets the
// product temper (or sharpen) itself as experts join, against the
// overconfidence a product of many experts is prone to. A module the
// gates were not bound with weighs 1 (before Bind, every module: PoE).
func Gated() Learned { return &gated{} }

type gated struct {
	modules []string
	index   map[string]int
	n, d    int
	params  []*nn.Param // per module, [n d]
}

func (*gated) Name() string                         { return "gpoe" }
func (*gated) Strata([]string) int                  { return 1 }
func (*gated) From(dst, _ []string, _ int) []string { return dst[:0] }
func (*gated) WeighsRows() bool                     { return false }
func (g *gated) NewTerm() TermFusion {
	return &gatedTerm{g: g}
}
func (g *gated) Params() []*nn.Param { return g.params }

func (g *gated) Bind(modules []string, d int) {
	g.modules, g.n, g.d = slices.Clone(modules), len(modules), d
	g.index = make(map[string]int, len(modules))
	g.params = make([]*nn.Param, len(modules))
	for i, m := range modules {
		g.index[m] = i
		g.params[i] = &nn.Param{Name: "gate." + m, Shape: []int{g.n, d}, W: make([]float32, g.n*d), G: make([]float32, g.n*d)}
	}
}

// theta is module m's gate row for rows that fuse n experts, and its
// gradient (nil: a module the gates do not know, which weighs 1).
func (g *gated) theta(m string, n int) (w, grad []float32) {
	i, ok := g.index[m]
	if !ok || n < 1 {
		return nil, nil
	}
	lo, hi := (min(n, g.n)-1)*g.d, min(n, g.n)*g.d
	return g.params[i].W[lo:hi], g.params[i].G[lo:hi]
}

func (g *gated) Posterior(experts []poe.Expert, modules []string, b, d int) Posterior {
	return g.PosteriorUnder(poe.Prior{}, experts, modules, b, d)
}

// PosteriorUnder weighs the experts by their gates; the prior expert
// weighs 1, as N(0, I) does.
func (g *gated) PosteriorUnder(prior poe.Prior, experts []poe.Expert, modules []string, b, d int) Posterior {
	var w weighted
	w.weigh(g, experts, modules, b, d)
	return poeAggregation{}.PosteriorUnder(prior, w.experts, nil, b, d)
}

// Evidence is that of the experts as their gates weigh them.
func (g *gated) Evidence(prec, shift []float32, experts []poe.Expert, modules []string, b, d int) {
	var w weighted
	w.weigh(g, experts, modules, b, d)
	poe.Evidence(prec, shift, w.experts, b, d)
}

var _ Conditioned = (*gated)(nil)

// weighted are experts whose log-variances are shifted by their gates:
// log(σ²/α) = l − θ, so that their product is the gated one.
type weighted struct {
	experts []poe.Expert
	lv      [][]float32
	count   []int // per row, how many experts it fuses
}

func (w *weighted) weigh(g *gated, experts []poe.Expert, modules []string, b, d int) {
	if len(modules) != len(experts) {
		panic(fmt.Sprintf("aggregate: gpoe: %d experts but %d module names", len(experts), len(modules)))
	}
	w.count = grow(w.count, b)
	clear(w.count)
	for _, e := range experts {
		for r := range b {
			if e.Present == nil || e.Present[r] {
				w.count[r]++
			}
		}
	}
	w.experts, w.lv = grow(w.experts, len(experts)), grow(w.lv, len(experts))
	for k, e := range experts {
		w.lv[k] = grow(w.lv[k], b*d)
		copy(w.lv[k], e.LogVar)
		for r := range b {
			theta, _ := g.theta(modules[k], w.count[r])
			if theta == nil || e.Present != nil && !e.Present[r] {
				continue
			}
			row := w.lv[k][r*d : (r+1)*d]
			for j, t := range theta {
				row[j] -= t
			}
		}
		w.experts[k] = poe.Expert{Mu: e.Mu, LogVar: w.lv[k], Present: e.Present}
	}
}

// gatedTerm is one term's gated product.
type gatedTerm struct {
	g       *gated
	poe     poeTerm
	w       weighted
	modules []string
	eg      []poe.ExpertGrad // the gradient with respect to the weighted experts
}

func (t *gatedTerm) Sample(z, w, eps []float32, s Stratum, b, d int) {
	t.modules = s.Modules
	t.w.weigh(t.g, s.Experts, s.Modules, b, d)
	t.poe.Sample(z, w, eps, Stratum{Experts: t.w.experts, Of: s.Of, Subset: s.Subset, K: s.K, Modules: s.Modules, Prior: s.Prior}, b, d)
}

func (t *gatedTerm) Penalty(pen, z []float32) float64 { return t.poe.Penalty(pen, z) }

// Backward: d(l − θ)/dl = 1, so an expert's gradient is its weighted
// one's, and θ's is minus the sum of its rows'.
func (t *gatedTerm) Backward(grads []poe.ExpertGrad, experts []poe.Expert, z, g, eps []float32, beta float32) {
	n := len(g)
	d := n / max(len(t.w.count), 1)
	t.eg = grow(t.eg, len(experts))
	for k := range t.eg {
		t.eg[k].DMu, t.eg[k].DLogVar = grow(t.eg[k].DMu, n), grow(t.eg[k].DLogVar, n)
		clear(t.eg[k].DMu)
		clear(t.eg[k].DLogVar)
	}
	t.poe.Backward(t.eg, t.w.experts, z, g, eps, beta)
	for k, e := range experts {
		for i := range n {
			grads[k].DMu[i] += t.eg[k].DMu[i]
			grads[k].DLogVar[i] += t.eg[k].DLogVar[i]
		}
		for r, c := range t.w.count {
			_, gr := t.g.theta(t.modules[k], c)
			if gr == nil || e.Present != nil && !e.Present[r] {
				continue
			}
			for j := range gr {
				gr[j] -= t.eg[k].DLogVar[r*d+j]
			}
		}
	}
}
