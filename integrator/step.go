package integrator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/poe"
)

// StepMath is the transport-free part of one training step: from the
// modules' posteriors to the latents of every plan term, and from their
// decoder gradients to every expert's gradient and the step's ELBO terms.
// The distributed trainer and single-process references use the same code.
//
// The objective is the batch mean of Σ_terms [Σ_{j∈targets} λ_j log
// p(x_j|z) − β KL(q‖p)]: modules are sent λ_j/B as their weight, so their
// dz already carries it, and the KL enters with β/B here.
type StepMath struct {
	Step   uint64
	Seed   uint64
	B, D   int
	Plan   []bus.Term
	Lambda map[string]float32 // unscaled λ per module (missing: 1)
	Beta   float32            // KL weight

	members []string
	posts   map[string]*bus.Posterior
	fused   []poe.Fused
	experts [][]poe.Expert // per term, in subset order (members only)
	owners  [][]string     // per term, the module of each expert
	eps, z  [][]float32    // per term, B×D

	zt  []bus.Tensor // per term, z as Latents returns it
	pcg rand.PCG     // the noise's source and generator, reseeded each step
	rng *rand.Rand

	grads, gradBufs  map[string]*bus.ExpertGrad // this step's expert gradients; their storage, by module
	g, dmu, dvar, kl []float32                  // Grads' scratch
	eg               []poe.ExpertGrad
	stats            []TermStats // Grads' result, reused
	weights          map[string]float32
}

// TermStats is one term's part of the objective, batch means.
type TermStats struct {
	Subset, Targets []string
	ELBO            float64            // Σ λ_j ll_j − β KL
	KL              float64            // KL(q‖N(0, I))
	LogLik          map[string]float64 // per target, over its present rows
}

// Reset makes s the step described by the exported fields of next, keeping
// s's buffers for the next Latents and Grads to reuse.
func (s *StepMath) Reset(next StepMath) {
	next.members, next.fused, next.experts, next.owners, next.eps, next.z = s.members, s.fused, s.experts, s.owners, s.eps, s.z
	next.grads, next.gradBufs, next.g, next.dmu, next.dvar, next.kl, next.eg = s.grads, s.gradBufs, s.g, s.dmu, s.dvar, s.kl, s.eg
	next.zt, next.stats, next.weights, next.rng = s.zt, s.stats, s.weights, s.rng
	*s = next
	if s.rng == nil {
		s.rng = rand.New(&s.pcg)
	}
}

// Latents fuses each term's experts among the modules that posted and
// samples its latent with the step's noise (seeded by Seed and Step). The
// members are the posters, sorted. members and z are s's storage: they are
// valid until the next step's Latents.
func (s *StepMath) Latents(posts map[string]*bus.Posterior) (members []string, z []bus.Tensor) {
	s.posts = posts
	s.members = s.members[:0]
	for m := range posts {
		s.members = append(s.members, m)
	}
	slices.Sort(s.members)
	n := len(s.Plan)
	// The last step's storage, if any, is reused: its fused posteriors'
	// buffers, its experts' lists and its noise and latents.
	s.fused = growTo(s.fused, n)
	s.experts, s.owners = growTo(s.experts, n), growTo(s.owners, n)
	s.eps, s.z = growTo(s.eps, n), growTo(s.z, n)
	if s.rng == nil { // a StepMath that was never Reset
		s.rng = rand.New(&s.pcg)
	}
	s.pcg.Seed(s.Seed, s.Step^0x5e4e7)
	rng := s.rng
	s.zt = growTo(s.zt, n)
	z = s.zt
	for i, t := range s.Plan {
		s.experts[i], s.owners[i] = s.experts[i][:0], s.owners[i][:0]
		for _, m := range t.Subset {
			p := posts[m]
			if p == nil {
				continue
			}
			s.experts[i] = append(s.experts[i], poe.Expert{Mu: p.Mu.Data, LogVar: p.LogVar.Data, Present: p.Present})
			s.owners[i] = append(s.owners[i], m)
		}
		s.fused[i].Fuse(s.experts[i], s.B, s.D)
		s.eps[i] = growTo(s.eps[i], s.B*s.D)
		for k := range s.eps[i] {
			s.eps[i][k] = float32(rng.NormFloat64())
		}
		s.z[i] = growTo(s.z[i], s.B*s.D)
		s.fused[i].Sample(s.z[i], s.eps[i])
		z[i].SetMatrix(s.B, s.D, s.z[i])
	}
	return s.members, z
}

// Grads turns the decoder gradients of the modules that answered into every
// member's expert gradient (summed over the terms its expert is in; zero for
// a member in no subset) and the step's statistics. A term target that did
// not answer is left out of that term. The gradients and statistics are
// s's storage: they are valid until the next step's Grads.
func (s *StepMath) Grads(zgrads map[string]*bus.ZGrad) (map[string]*bus.ExpertGrad, []TermStats, error) {
	b, d := s.B, s.D
	// The expert gradients accumulate over the terms from zero. Their
	// storage and the scratch below are the last step's (the caller sends
	// the gradients before the next step).
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
	grads := s.grads
	s.stats = growTo(s.stats, len(s.Plan))
	stats := s.stats
	s.g, s.dmu, s.dvar, s.kl = growTo(s.g, b*d), growTo(s.dmu, b*d), growTo(s.dvar, b*d), growTo(s.kl, b)
	g, dmu, dvar, kl := s.g, s.dmu, s.dvar, s.kl
	for i, t := range s.Plan {
		clear(g)
		ll := stats[i].LogLik
		if ll == nil {
			ll = map[string]float64{}
		}
		clear(ll)
		st := TermStats{Subset: t.Subset, Targets: t.Targets, LogLik: ll}
		var llSum float64
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
				return nil, nil, fmt.Errorf("step %d: %s sent no gradient for term %d, of which it is a target", s.Step, m, i)
			}
			for k, v := range tg.DZ.Data {
				g[k] += v
			}
			lam := float64(s.lambda(m))
			var sum float64
			n := 0
			for r, v := range tg.LogLik.Data {
				if present(s.posts[m].Present, r) {
					sum += float64(v)
					n++
				}
			}
			llSum += lam * sum
			if n > 0 {
				st.LogLik[m] = sum / float64(n)
			}
		}
		klSum := s.fused[i].KL(kl)
		s.fused[i].TermGrad(dmu, dvar, g, s.eps[i], s.Beta/float32(b))
		s.eg = growTo(s.eg, len(s.experts[i]))
		for k, m := range s.owners[i] {
			s.eg[k] = poe.ExpertGrad{DMu: grads[m].DMu.Data, DLogVar: grads[m].DLogVar.Data}
		}
		s.fused[i].Backward(s.eg, s.experts[i], dmu, dvar)
		st.KL = klSum / float64(b)
		st.ELBO = (llSum - float64(s.Beta)*klSum) / float64(b)
		if math.IsNaN(st.ELBO) || math.IsInf(st.ELBO, 0) {
			return nil, nil, fmt.Errorf("step %d: the objective of term %d (%v → %v) is %v: training diverged", s.Step, i, t.Subset, t.Targets, st.ELBO)
		}
		stats[i] = st
	}
	for m, eg := range grads {
		for _, v := range eg.DMu.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, nil, fmt.Errorf("step %d: the gradient for %s is not finite: training diverged", s.Step, m)
			}
		}
	}
	return grads, stats, nil
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
