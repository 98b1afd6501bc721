package aggregate

import (
	"math/bits"

	"github.com/serket-go/serket/mixture"
	"github.com/serket-go/serket/poe"
)

// MoPoE is the mixture of the products of experts of every non-empty subset
// of a term's experts (Sutter, Daunhawer & Vogt 2021, "Generalized
// Multimodal ELBO"): each component is the product of a subset's experts
// and the prior, the joint posterior their uniform mixture. It trains by the
// stratified ELBO MoE uses, a latent per component, so a term over M
// modules is 2^M − 1 strata (the authors' code samples one subset per item
// and bounds the mixture's KL by its components'; this is the exact
// mixture's objective, as for MoE). A component is in a row when all of its
// experts are, so a row's mixture is over the subsets of what it has.
func MoPoE() Aggregation { return mopoeAggregation{} }

type mopoeAggregation struct{}

func (mopoeAggregation) Name() string          { return "mopoe" }
func (mopoeAggregation) Strata(s []string) int { return 1<<min(len(s), 30) - 1 } // a bus step carries far fewer
func (mopoeAggregation) WeighsRows() bool      { return true }

// From is the subset of component k: the bits of k + 1.
func (mopoeAggregation) From(dst, s []string, k int) []string {
	dst = dst[:0]
	for j, m := range s {
		if (k+1)&(1<<j) != 0 {
			dst = append(dst, m)
		}
	}
	return dst
}
func (mopoeAggregation) NewTerm() TermFusion { return &mopoeTerm{} }

// Posterior is the mixture over the products of every subset of experts.
func (mopoeAggregation) Posterior(experts []poe.Expert, _ []string, b, d int) Posterior {
	var c components
	of := make([]int, len(experts))
	for i := range of {
		of[i] = i
	}
	c.build(Stratum{Experts: experts, Of: of, Subset: len(experts)}, b, d)
	return moeAggregation{}.Posterior(c.comps, nil, b, d)
}

// components are a term's mixture components: component k is the product
// of the experts in subset k+1 (a bit mask over the term's subset).
type components struct {
	fused   []poe.Fused
	comps   []poe.Expert   // each fused's mean and log-variance, and its rows
	sub     [][]poe.Expert // each component's experts
	members [][]int        // each component's experts, as indices into the stratum's
	present [][]bool       // storage of the comps' Present
}

// build fuses every component of the stratum's term. A component one of
// whose experts did not post is in no row.
func (c *components) build(st Stratum, b, d int) {
	n := 1<<st.Subset - 1
	c.fused, c.comps, c.sub = grow(c.fused, n), grow(c.comps, n), grow(c.sub, n)
	c.members, c.present = grow(c.members, n), grow(c.present, n)
	for k := range n {
		mask := k + 1
		c.members[k], c.sub[k] = c.members[k][:0], c.sub[k][:0]
		for j, idx := range st.Of {
			if mask&(1<<idx) != 0 {
				c.members[k] = append(c.members[k], j)
				c.sub[k] = append(c.sub[k], st.Experts[j])
			}
		}
		whole := len(c.members[k]) == bits.OnesCount(uint(mask))
		if !whole {
			c.sub[k] = c.sub[k][:0] // fused as the prior, for its shape
		}
		c.fused[k].Fuse(c.sub[k], b, d)
		c.comps[k] = poe.Expert{Mu: c.fused[k].Mu, LogVar: c.fused[k].LogVar, Present: c.rows(k, whole, b)}
	}
}

// rows is component k's Present: the rows all its experts have (nil: every
// row), none if it is not whole.
func (c *components) rows(k int, whole bool, b int) []bool {
	all := whole
	for _, e := range c.sub[k] {
		all = all && e.Present == nil
	}
	if all {
		return nil
	}
	p := grow(c.present[k], b)
	c.present[k] = p
	for r := range p {
		p[r] = whole
		for _, e := range c.sub[k] {
			p[r] = p[r] && (e.Present == nil || e.Present[r])
		}
	}
	return p
}

// mopoeTerm is one stratum of a term's mixture of products.
type mopoeTerm struct {
	c    components
	m    mixture.Mixture
	k    int
	cg   []poe.ExpertGrad // per component: the objective's gradient to its mean and log-variance
	dvar []float32        // one component's gradient to its variance
	eg   []poe.ExpertGrad // one component's experts' gradients
}

func (t *mopoeTerm) Sample(z, w, eps []float32, st Stratum, b, d int) {
	t.c.build(st, b, d)
	t.m.B, t.m.D, t.k = b, d, st.K
	t.m.Sample(z, eps, t.c.comps, st.K)
	t.m.Weights(w, t.c.comps, st.K)
}

func (t *mopoeTerm) Penalty(pen, z []float32) float64 {
	return t.m.Penalty(pen, z, t.c.comps, t.k)
}

// Backward takes the mixture's gradient to each component's mean and
// log-variance back through that component's product to its experts.
func (t *mopoeTerm) Backward(grads []poe.ExpertGrad, _ []poe.Expert, z, g, eps []float32, beta float32) {
	n := len(g)
	t.cg = grow(t.cg, len(t.c.comps))
	for k := range t.cg {
		t.cg[k].DMu, t.cg[k].DLogVar = grow(t.cg[k].DMu, n), grow(t.cg[k].DLogVar, n)
		clear(t.cg[k].DMu)
		clear(t.cg[k].DLogVar)
	}
	t.m.Backward(t.cg, t.c.comps, z, g, eps, beta, t.k)
	t.dvar = grow(t.dvar, n)
	for k, cg := range t.cg {
		if len(t.c.sub[k]) == 0 {
			continue // in no row: nothing flowed to it
		}
		f := &t.c.fused[k]
		for i, dl := range cg.DLogVar {
			t.dvar[i] = dl / f.Var[i] // l = log Var
		}
		t.eg = t.eg[:0]
		for _, j := range t.c.members[k] {
			t.eg = append(t.eg, grads[j])
		}
		f.Backward(t.eg, t.c.sub[k], cg.DMu, t.dvar)
	}
}

// grow returns s with length n, keeping its elements and their storage.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		s = append(s[:cap(s)], make([]T, n-cap(s))...)
	}
	return s[:n]
}
