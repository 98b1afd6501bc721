package integrator

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/poe"
)

// quadStep is a step of StepMath over modules whose decoders are known in
// closed form: module m scores a row log p(x_m|z) = -a_m/2 |z - c_m|², as a
// module process would (its rows weighed by λ/B, its presence and the
// latent's row weights), so that the whole objective is a function of the
// posteriors that finite differences can check.
type quadStep struct {
	agg     aggregate.Aggregation
	modules []string
	plan    []bus.Term
	posts   map[string]*bus.Posterior
	lambda  map[string]float32
	a       map[string]float64
	c       map[string][]float64
	b, d    int
	priors  []poe.Prior // a prior module's, per term (nil: N(0, I))
}

// withPriors gives every term of q a random prior of its own, as a prior
// module would send (a Conditioned aggregation has a term per plan term).
func (q *quadStep) withPriors(seed uint64) *quadStep {
	rng := rand.New(rand.NewPCG(seed, 13))
	for range q.plan {
		mu, lv := randNormal(rng, q.b*q.d), randNormal(rng, q.b*q.d)
		for k := range lv {
			lv[k] = lv[k]*0.5 - 0.5
		}
		q.priors = append(q.priors, poe.Prior{Mu: mu, LogVar: lv})
	}
	return q
}

func newQuadStep(agg aggregate.Aggregation, seed uint64) *quadStep {
	rng := rand.New(rand.NewPCG(seed, 11))
	q := &quadStep{agg: agg, modules: []string{"a", "b", "c"}, posts: map[string]*bus.Posterior{}, lambda: map[string]float32{"b": 2},
		a: map[string]float64{}, c: map[string][]float64{}, b: 4, d: 3}
	q.plan = CrossPlan(1)(nil, q.modules, rng)
	n := q.b * q.d
	for i, m := range q.modules {
		lv := randNormal(rng, n)
		for k := range lv {
			lv[k] *= 0.5
		}
		p := &bus.Posterior{Mu: bus.Matrix(q.b, q.d, randNormal(rng, n)), LogVar: bus.Matrix(q.b, q.d, lv)}
		if i > 0 { // b lacks row 1, c lacks rows 1 and 2: row 1 has a alone
			p.Present = []bool{true, false, i == 1, true}
		}
		q.posts[m] = p
		q.a[m] = 0.5 + rng.Float64()
		for range q.d {
			q.c[m] = append(q.c[m], rng.NormFloat64())
		}
	}
	return q
}

// run takes the step and returns the objective (the sum of the plan
// terms' ELBOs, batch means) and the expert gradients, copied out.
func (q *quadStep) run(t *testing.T, s *StepMath) (float64, map[string]bus.ExpertGrad) {
	t.Helper()
	s.Reset(StepMath{Step: 3, Seed: 5, B: q.b, D: q.d, Plan: q.plan, Lambda: q.lambda, Beta: 0.7, Agg: q.agg, Priors: q.priors})
	weights := s.Weights(q.modules)
	_, z := s.Latents(q.posts)
	rows := s.RowWeights()
	zgrads := map[string]*bus.ZGrad{}
	for _, m := range q.modules {
		zgrads[m] = q.decode(m, s.Terms(), z, rows, weights[m])
	}
	grads, stats, err := s.Grads(zgrads)
	if err != nil {
		t.Fatal(err)
	}
	var obj float64
	for _, st := range stats {
		obj += st.ELBO
	}
	out := map[string]bus.ExpertGrad{}
	for m, g := range grads {
		out[m] = bus.ExpertGrad{DMu: bus.Vector(slices.Clone(g.DMu.Data)), DLogVar: bus.Vector(slices.Clone(g.DLogVar.Data))}
	}
	return obj, out
}

// decode is module m's decoder result for every term that targets it.
func (q *quadStep) decode(m string, terms []bus.Term, z, rows []bus.Tensor, weight float32) *bus.ZGrad {
	zg := &bus.ZGrad{}
	for i, t := range terms {
		if !slices.Contains(t.Targets, m) {
			continue
		}
		ll, dz := make([]float32, q.b), make([]float32, q.b*q.d)
		for r := range q.b {
			w := float64(weight)
			if p := q.posts[m].Present; p != nil && !p[r] {
				w = 0
			}
			if len(rows) > 0 && !rows[i].Empty() {
				w *= float64(rows[i].Data[r])
			}
			if w == 0 {
				continue
			}
			var sq float64
			for j := range q.d {
				diff := float64(z[i].Data[r*q.d+j]) - q.c[m][j]
				sq += diff * diff
				dz[r*q.d+j] = float32(-w * q.a[m] * diff)
			}
			ll[r] = float32(-q.a[m] / 2 * sq)
		}
		zg.Terms = append(zg.Terms, bus.TermGrad{Term: i, DZ: bus.Matrix(q.b, q.d, dz), LogLik: bus.Vector(ll)})
	}
	return zg
}

// TestStepGradientsByFiniteDifferences: for each aggregation, the expert
// gradients of a step are the derivatives of its objective with respect to
// every posterior mean and log-variance, with the step's noise fixed, on
// a cross plan whose modules lack some rows.
func TestStepGradientsByFiniteDifferences(t *testing.T) {
	cases := []struct {
		agg   aggregate.Aggregation
		prior bool // under a prior module's prior
	}{{aggregate.PoE(), false}, {aggregate.MoE(), false}, {aggregate.MoPoE(), false}, {randomGates(3), false},
		{aggregate.PoE(), true}, {randomGates(3), true}}
	for _, c := range cases {
		agg := c.agg
		name := agg.Name()
		if c.prior {
			name += "+prior"
		}
		t.Run(name, func(t *testing.T) {
			q := newQuadStep(agg, 1)
			if c.prior {
				q.withPriors(2)
			}
			var s StepMath
			_, grads := q.run(t, &s)
			const h = 1e-2
			for _, m := range q.modules {
				p := q.posts[m]
				for what, params := range map[string][]float32{"mu": p.Mu.Data, "logvar": p.LogVar.Data} {
					for k := range params {
						if p.Present != nil && !p.Present[k/q.d] {
							continue
						}
						old := params[k]
						params[k] = old + h
						plus, _ := q.run(t, &s)
						params[k] = old - h
						minus, _ := q.run(t, &s)
						params[k] = old
						want := (plus - minus) / (2 * h)
						got := float64(grads[m].DMu.Data[k])
						if what == "logvar" {
							got = float64(grads[m].DLogVar.Data[k])
						}
						if math.Abs(got-want) > 2e-3+2e-2*math.Abs(want) {
							t.Errorf("d objective / d %s[%s][%d] = %.5f, finite differences give %.5f", what, m, k, got, want)
						}
					}
				}
			}
		})
	}
}

// randomGates is a gpoe bound to newQuadStep's modules and latent size,
// its gates away from 0 (where it is PoE).
func randomGates(seed uint64) aggregate.Learned {
	g := aggregate.Gated()
	g.Bind([]string{"a", "b", "c"}, 3)
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, p := range g.Params() {
		for i := range p.W {
			p.W[i] = float32(0.5 * rng.NormFloat64())
		}
	}
	return g
}

// TestGateGradientsByFiniteDifferences: the gradient a gpoe step leaves in
// its gates is the derivative of the step's objective with respect to
// each of them, with the step's noise fixed.
func TestGateGradientsByFiniteDifferences(t *testing.T) {
	g := randomGates(4)
	q := newQuadStep(g, 1)
	var s StepMath
	q.run(t, &s)
	var grads [][]float32
	for _, p := range g.Params() {
		grads = append(grads, slices.Clone(p.G))
	}
	const h = 1e-2
	var nonzero int
	for i, p := range g.Params() {
		for k := range p.W {
			old := p.W[k]
			p.W[k] = old + h
			plus, _ := q.run(t, &s)
			p.W[k] = old - h
			minus, _ := q.run(t, &s)
			p.W[k] = old
			want, got := (plus-minus)/(2*h), float64(grads[i][k])
			if math.Abs(got-want) > 2e-3+2e-2*math.Abs(want) {
				t.Errorf("d objective / d %s[%d] = %.5f, finite differences give %.5f", p.Name, k, got, want)
			}
			if got != 0 {
				nonzero++
			}
		}
	}
	if nonzero < 9 { // a row of each module's gates, at least, is fused in some term
		t.Errorf("only %d gates have a gradient", nonzero)
	}
}

// TestMixtureStrata: a mixture draws a latent per component of each term
// (an expert for MoE, a non-empty subset's product for MoPoE), and the
// strata of a term weigh 1 together in every row that has one of its
// experts (each present component's 1/M), 0 in a row that has none.
func TestMixtureStrata(t *testing.T) {
	for _, agg := range []aggregate.Aggregation{aggregate.MoE(), aggregate.MoPoE()} {
		t.Run(agg.Name(), func(t *testing.T) {
			q := newQuadStep(agg, 2)
			var s StepMath
			q.run(t, &s)
			var want int
			for _, t := range q.plan {
				want += agg.Strata(t.Subset)
			}
			if len(s.Terms()) != want {
				t.Fatalf("%d terms, want %d: one per component", len(s.Terms()), want)
			}
			// Each stratum says which experts its latent is drawn from:
			// MoE's one each, MoPoE's every non-empty subset once.
			for p, pt := range q.plan {
				seen := map[string]bool{}
				for i, term := range s.Terms() {
					if s.planOf[i] != p {
						continue
					}
					key := strings.Join(term.From, ",")
					if len(term.From) == 0 || seen[key] || agg.Name() == "moe" && len(term.From) != 1 {
						t.Errorf("plan term %d (%v): stratum %d drawn from %v", p, pt.Subset, i, term.From)
					}
					seen[key] = true
				}
			}
			rows := s.RowWeights()
			for p := range q.plan {
				sum := make([]float64, q.b)
				for i := range s.Terms() {
					if s.planOf[i] == p {
						for r, v := range rows[i].Data {
							sum[r] += float64(v)
						}
					}
				}
				for r, v := range sum {
					want := 0.0
					for _, m := range q.plan[p].Subset {
						if pr := q.posts[m].Present; pr == nil || pr[r] {
							want = 1
						}
					}
					if math.Abs(v-want) > 1e-6 {
						t.Errorf("plan term %d (%v), row %d: its strata weigh %v together, want %v", p, q.plan[p].Subset, r, v, want)
					}
				}
			}
		})
	}
	var s StepMath
	s.Reset(StepMath{B: 2, D: 1, Plan: []bus.Term{{Subset: []string{"a"}, Targets: []string{"a"}}}})
	if s.RowWeights() != nil {
		t.Error("a PoE step has row weights, want none")
	}
}

// TestMixtureStepAllocatesNothing: a reused StepMath with a mixture
// allocates nothing in its steady state, as the PoE one does.
func TestMixtureStepAllocatesNothing(t *testing.T) {
	c := newStepCase(1, 20, 4)
	gates := aggregate.Gated()
	gates.Bind(c.modules, 4)
	for _, agg := range []aggregate.Aggregation{aggregate.MoE(), aggregate.MoPoE(), gates} {
		var s StepMath
		var zgrads map[string]*bus.ZGrad
		step := func() {
			s.Reset(StepMath{Step: 1, Seed: 5, B: 20, D: 4, Plan: c.plan, Lambda: c.lambda, Beta: 0.5, Agg: agg})
			s.Weights(c.modules)
			s.Latents(c.posts)
			s.RowWeights()
			if zgrads == nil {
				// newStepCase's decoder results are for the plan's
				// terms, fewer than a mixture's: every stratum gets
				// its term's.
				zgrads = stratify(c.zgrads, s.planOf)
			}
			if _, _, err := s.Grads(zgrads); err != nil {
				t.Fatal(err)
			}
		}
		step()
		if n := testing.AllocsPerRun(20, step); n != 0 {
			t.Errorf("a reused %s StepMath: %v allocations per step, want 0", agg.Name(), n)
		}
	}
}

// stratify copies each module's term results to every stratum of the term.
func stratify(zgrads map[string]*bus.ZGrad, planOf []int) map[string]*bus.ZGrad {
	out := make(map[string]*bus.ZGrad, len(zgrads))
	for m, zg := range zgrads {
		s := &bus.ZGrad{Terms: make([]bus.TermGrad, 0, len(planOf))}
		for i, p := range planOf {
			for _, tg := range zg.Terms {
				if tg.Term == p {
					tg.Term = i
					s.Terms = append(s.Terms, tg)
				}
			}
		}
		out[m] = s
	}
	return out
}
