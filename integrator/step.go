package integrator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/nn"
	"github.com/serket-go/serket/poe"
)

// StepMath is the transport-free part of one training step: from the
// modules' posteriors to the latents of every plan term, and from their
// decoder gradients to every expert's gradient and the step's ELBO terms.
// The distributed trainer and single-process references use the same code.
//
// The objective is the batch mean of Σ_terms [Σ_{j∈targets} λ_j log
// p(x_j|z) − β KL(q‖p)]: modules are sent λ_j/B as their weight, so their
// dz already carries it, and the KL enters with β/B here. A step is
// Reset, then Weights, Latents, RowWeights and Grads.
type StepMath struct {
	Step   uint64
	Seed   uint64
	B, D   int
	Plan   []bus.Term
	Lambda map[string]float32 // unscaled λ per module (missing: 1)
	Beta   float32            // KL weight
	// Agg is how each term's experts make its latents (nil: PoE). A
	// mixture draws several latents per plan term (Terms).
	Agg aggregate.Aggregation
	// Priors are a prior module's prior for each term (Terms), the prior
	// expert and KL reference of its product; nil: N(0, I) for every
	// term. Only a Conditioned aggregation takes them.
	Priors []poe.Prior
	// SeenOnly weighs 0 every row of a term that none of its experts saw
	// (Pairing.SeenOnly); RowWeights then carries the weights whatever
	// the aggregation.
	SeenOnly bool

	terms    []bus.Term // Plan, each term once per stratum: what modules decode
	strata   []int      // per term, its stratum (a mixture's: which component it is drawn from)
	from     [][]string // per term, the storage of its From
	planOf   []int      // per term, its plan term
	members  []string
	posts    map[string]*bus.Posterior
	fusion   []aggregate.TermFusion // per term, of the aggregation fusionOf
	fusionOf aggregate.Aggregation
	experts  [][]poe.Expert // per term, in subset order (members only)
	of       [][]int        // per term, the index in its Subset of each expert
	owners   [][]string     // per term, the module of each expert
	eps, z   [][]float32    // per term, B×D
	w        [][]float32    // per term, the rows' weights (B)

	zt, wt []bus.Tensor   // per term, z and w as Latents and RowWeights return them
	ev     []bus.Evidence // per term, Evidence's result
	pcg    rand.PCG       // the noise's source and generator, reseeded each step
	rng    *rand.Rand

	grads, gradBufs map[string]*bus.ExpertGrad // this step's expert gradients; their storage, by module
	g, kl           []float32                  // Grads' scratch
	eg              []poe.ExpertGrad
	stats           []TermStats          // Grads' result, per plan term, reused
	llw             []map[string]float64 // per plan term, the weight of each target's rows
	weights         map[string]float32
}

// TermStats is one term's part of the objective, batch means.
type TermStats struct {
	Subset, Targets []string
	ELBO            float64            // Σ λ_j ll_j − β KL
	KL              float64            // KL(q‖p): from N(0, I), or a prior module's prior
	LogLik          map[string]float64 // per target, over its present rows
}

// Reset makes s the step described by the exported fields of next, keeping
// s's buffers for the next Latents and Grads to reuse.
func (s *StepMath) Reset(next StepMath) {
	next.terms, next.strata, next.from, next.planOf, next.members, next.fusion, next.fusionOf = s.terms, s.strata, s.from, s.planOf, s.members, s.fusion, s.fusionOf
	next.experts, next.of, next.owners, next.eps, next.z, next.w = s.experts, s.of, s.owners, s.eps, s.z, s.w
	next.grads, next.gradBufs, next.g, next.kl, next.eg = s.grads, s.gradBufs, s.g, s.kl, s.eg
	next.zt, next.wt, next.stats, next.llw, next.weights, next.rng, next.ev = s.zt, s.wt, s.stats, s.llw, s.weights, s.rng, s.ev
	*s = next
	if s.rng == nil {
		s.rng = rand.New(&s.pcg)
	}
	if s.Agg == nil {
		s.Agg = aggregate.PoE()
	}
	s.expand()
}

// expand lays out the step's terms: each plan term once per stratum of
// the aggregation, in the last step's storage.
func (s *StepMath) expand() {
	s.terms, s.strata, s.planOf = s.terms[:0], s.strata[:0], s.planOf[:0]
	for p, t := range s.Plan {
		for k := range s.Agg.Strata(t.Subset) {
			if len(s.terms) > bus.MaxTerms { // more than a step carries: the step refuses it
				return
			}
			i := len(s.terms)
			s.from = growTo(s.from, i+1)
			s.from[i] = s.Agg.From(s.from[i], t.Subset, k)
			t.From = s.from[i]
			s.terms = append(s.terms, t)
			s.strata = append(s.strata, k)
			s.planOf = append(s.planOf, p)
		}
	}
}

// Terms are the step's terms as modules decode them (StepBegin's plan):
// Plan itself for PoE, each term once per stratum for a mixture. They are
// s's storage, valid until the next Reset.
func (s *StepMath) Terms() []bus.Term { return s.terms }

// Latents fuses each term's experts among the modules that posted and
// samples its latent with the step's noise (seeded by Seed and Step). The
// members are the posters, sorted. members and z are s's storage: they are
// valid until the next step's Latents.
func (s *StepMath) Latents(posts map[string]*bus.Posterior) (members []string, z []bus.Tensor) {
	s.take(posts)
	n := len(s.terms)
	// The last step's storage, if any, is reused: its fusions' buffers,
	// its experts' lists, its noise, latents and weights.
	s.growFusion(n)
	s.eps, s.z, s.w = growTo(s.eps, n), growTo(s.z, n), growTo(s.w, n)
	s.pcg.Seed(s.Seed, s.Step^0x5e4e7)
	s.zt = growTo(s.zt, n)
	for i, t := range s.terms {
		s.gather(i, t)
		s.eps[i] = growTo(s.eps[i], s.B*s.D)
		for k := range s.eps[i] {
			s.eps[i][k] = float32(s.rng.NormFloat64())
		}
		s.z[i], s.w[i] = growTo(s.z[i], s.B*s.D), growTo(s.w[i], s.B)
		st := aggregate.Stratum{Experts: s.experts[i], Of: s.of[i], Subset: len(t.Subset), K: s.strata[i], Modules: s.owners[i]}
		if s.Priors != nil {
			st.Prior = s.Priors[i]
		}
		s.fusion[i].Sample(s.z[i], s.w[i], s.eps[i], st, s.B, s.D)
		if s.SeenOnly {
			s.dropUnseen(i)
		}
		s.zt[i].SetMatrix(s.B, s.D, s.z[i])
	}
	return s.members, s.zt
}

// dropUnseen weighs 0 each row of term i that none of its experts saw.
func (s *StepMath) dropUnseen(i int) {
	for r := range s.w[i] {
		seen := false
		for _, e := range s.experts[i] {
			seen = seen || present(e.Present, r)
		}
		if !seen {
			s.w[i][r] = 0
		}
	}
}

// take makes posts the step's posteriors: the members are the posters,
// sorted.
func (s *StepMath) take(posts map[string]*bus.Posterior) {
	s.posts = posts
	s.members = s.members[:0]
	for m := range posts {
		s.members = append(s.members, m)
	}
	slices.Sort(s.members)
	n := len(s.terms)
	s.experts, s.of, s.owners = growTo(s.experts, n), growTo(s.of, n), growTo(s.owners, n)
}

// Evidence is what each term's experts among the posters say of every
// item, without a prior (aggregate.Conditioned.Evidence): what a prior
// module is asked about, before Latents. It is s's storage, valid until
// the next step's Evidence. It panics if the aggregation is not
// Conditioned (a run refuses a prior module with another).
func (s *StepMath) Evidence(posts map[string]*bus.Posterior) []bus.Evidence {
	agg := s.Agg.(aggregate.Conditioned)
	s.take(posts)
	s.ev = growTo(s.ev, len(s.terms))
	for i, t := range s.terms {
		s.gather(i, t)
		ev := &s.ev[i]
		ev.Prec.SetMatrix(s.B, s.D, growTo(ev.Prec.Data, s.B*s.D))
		ev.Shift.SetMatrix(s.B, s.D, growTo(ev.Shift.Data, s.B*s.D))
		agg.Evidence(ev.Prec.Data, ev.Shift.Data, s.experts[i], s.owners[i], s.B, s.D)
	}
	return s.ev
}

// gather lists term i's experts among the posters, with the index in the
// term's subset of each.
func (s *StepMath) gather(i int, t bus.Term) {
	s.experts[i], s.of[i], s.owners[i] = s.experts[i][:0], s.of[i][:0], s.owners[i][:0]
	for k, m := range t.Subset {
		p := s.posts[m]
		if p == nil {
			continue
		}
		s.experts[i] = append(s.experts[i], poe.Expert{Mu: p.Mu.Data, LogVar: p.LogVar.Data, Present: p.Present})
		s.of[i] = append(s.of[i], k)
		s.owners[i] = append(s.owners[i], m)
	}
}

// growFusion gives s a fusion of its aggregation per term, keeping those it
// has when the aggregation is the same one.
func (s *StepMath) growFusion(n int) {
	if s.fusionOf != s.Agg {
		s.fusion, s.fusionOf = s.fusion[:0], s.Agg
	}
	for len(s.fusion) < n {
		s.fusion = append(s.fusion, s.Agg.NewTerm())
	}
}

// Noise is, after Latents, the standard normal noise each term's latent
// was drawn with (Terms order, B×D each), for a reference that recomputes
// the step from its definition (bench/torch_check.py): with it, a term's
// experts and, for a mixture, the stratum its Term.From names, the latent
// follows. It is s's storage, valid until the next step's Latents.
func (s *StepMath) Noise() [][]float32 { return s.eps[:len(s.terms)] }

// RowWeights are the latents' row weights as bus.Latent.W carries them,
// or nil if neither the aggregation nor SeenOnly weighs rows. They are s's
// storage, valid until the next step's Latents.
func (s *StepMath) RowWeights() []bus.Tensor {
	if !s.Agg.WeighsRows() && !s.SeenOnly {
		return nil
	}
	s.wt = growTo(s.wt, len(s.terms))
	for i := range s.terms {
		s.wt[i].SetVector(s.w[i])
	}
	return s.wt
}

// Grads turns the decoder gradients of the modules that answered into every
// member's expert gradient (summed over the terms its expert is in; zero for
// a member in no subset) and the statistics of each plan term (the sum of
// its strata's). A term target that did not answer is left out of that
// term. The gradients and statistics are s's storage: they are valid until
// the next step's Grads.
func (s *StepMath) Grads(zgrads map[string]*bus.ZGrad) (map[string]*bus.ExpertGrad, []TermStats, error) {
	b, d := s.B, s.D
	grads := s.zeroGrads()
	if l, ok := s.Agg.(aggregate.Learned); ok {
		nn.ZeroGrad(l.Params())
	}
	s.resetStats()
	s.g, s.kl = growTo(s.g, b*d), growTo(s.kl, b)
	for i, t := range s.terms {
		st := &s.stats[s.planOf[i]]
		llSum, err := s.termLogLik(i, t, zgrads, st.LogLik, s.llw[s.planOf[i]])
		if err != nil {
			return nil, nil, err
		}
		penalty := s.fusion[i].Penalty(s.kl, s.z[i])
		s.eg = growTo(s.eg, len(s.experts[i]))
		for k, j := range s.of[i] {
			eg := grads[t.Subset[j]]
			s.eg[k] = poe.ExpertGrad{DMu: eg.DMu.Data, DLogVar: eg.DLogVar.Data}
		}
		s.fusion[i].Backward(s.eg, s.experts[i], s.z[i], s.g, s.eps[i], s.Beta/float32(b))
		st.KL += penalty / float64(b)
		st.ELBO += (llSum - float64(s.Beta)*penalty) / float64(b)
	}
	for p, st := range s.stats {
		for m, sum := range st.LogLik {
			st.LogLik[m] = sum / s.llw[p][m]
		}
		if math.IsNaN(st.ELBO) || math.IsInf(st.ELBO, 0) {
			return nil, nil, fmt.Errorf("step %d: the objective of term %d (%v → %v) is %v: training diverged", s.Step, p, st.Subset, st.Targets, st.ELBO)
		}
	}
	for m, eg := range grads {
		for _, v := range eg.DMu.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, nil, fmt.Errorf("step %d: the gradient for %s is not finite: training diverged", s.Step, m)
			}
		}
	}
	return grads, s.stats, nil
}

// resetStats empties the statistics of every plan term, keeping their maps.
func (s *StepMath) resetStats() {
	s.stats, s.llw = growTo(s.stats, len(s.Plan)), growTo(s.llw, len(s.Plan))
	for p, t := range s.Plan {
		ll := s.stats[p].LogLik
		if ll == nil {
			ll = map[string]float64{}
		}
		if s.llw[p] == nil {
			s.llw[p] = map[string]float64{}
		}
		clear(ll)
		clear(s.llw[p])
		s.stats[p] = TermStats{Subset: t.Subset, Targets: t.Targets, LogLik: ll}
	}
}

// zeroGrads gives every member a zero expert gradient to accumulate the
// terms into. Their storage is the last step's (the caller sends the
// gradients before the next step).
func (s *StepMath) zeroGrads() map[string]*bus.ExpertGrad {
	b, d := s.B, s.D
	if s.grads == nil {
		s.grads, s.gradBufs = map[string]*bus.ExpertGrad{}, map[string]*bus.ExpertGrad{}
	}
	clear(s.grads)
	for _, m := range s.members {
		eg := s.gradBufs[m]
		if eg == nil || len(eg.DMu.Data) != b*d {
			eg = &bus.ExpertGrad{DMu: bus.Matrix(b, d, make([]float32, b*d)), DLogVar: bus.Matrix(b, d, make([]float32, b*d))}
			s.gradBufs[m] = eg
		}
		clear(eg.DMu.Data)
		clear(eg.DLogVar.Data)
		eg.Step = s.Step
		s.grads[m] = eg
	}
	return s.grads
}

// termLogLik sums term i's decoder gradients into s.g, adds to ll and llw
// each target's log-likelihood summed over its present rows as the term
// weighs them and the rows' weight, and returns Σ_j λ_j Σ_rows w·loglik.
func (s *StepMath) termLogLik(i int, t bus.Term, zgrads map[string]*bus.ZGrad, ll, llw map[string]float64) (float64, error) {
	clear(s.g)
	var llSum float64
	w := s.w[i]
	for _, m := range t.Targets {
		zg := zgrads[m]
		if zg == nil || s.posts[m] == nil {
			continue
		}
		var tg *bus.TermGrad
		for k := range zg.Terms {
			if zg.Terms[k].Term == i {
				tg = &zg.Terms[k]
			}
		}
		if tg == nil {
			return 0, fmt.Errorf("step %d: %s sent no gradient for term %d, of which it is a target", s.Step, m, i)
		}
		for k, v := range tg.DZ.Data {
			s.g[k] += v
		}
		var sum, n float64
		for r, v := range tg.LogLik.Data {
			if present(s.posts[m].Present, r) {
				sum += float64(w[r]) * float64(v)
				n += float64(w[r])
			}
		}
		llSum += float64(s.lambda(m)) * sum
		if n > 0 {
			ll[m] += sum
			llw[m] += n
		}
	}
	return llSum, nil
}

// Weights are the per-module weights StepBegin carries: λ_j / B. The map
// is s's: it is valid until the next step's Weights.
func (s *StepMath) Weights(modules []string) map[string]float32 {
	if s.weights == nil {
		s.weights = make(map[string]float32, len(modules))
	}
	w := s.weights
	clear(w)
	for _, m := range modules {
		w[m] = s.lambda(m) / float32(s.B)
	}
	return w
}

func (s *StepMath) lambda(m string) float32 {
	if l, ok := s.Lambda[m]; ok {
		return l
	}
	return 1
}

func present(mask []bool, r int) bool { return len(mask) == 0 || mask[r] }

// growTo returns s with length n, keeping its elements (and their storage)
// and adding zero ones as needed.
func growTo[T any](s []T, n int) []T {
	if cap(s) < n {
		s = append(s[:cap(s)], make([]T, n-cap(s))...)
	}
	return s[:n]
}
