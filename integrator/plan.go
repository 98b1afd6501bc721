package integrator

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/serket-go/serket/bus"
)

// A fusion plan is the list of (subset, targets) terms of one training step
// (DESIGN.md section 3): each term fuses the experts of Subset with the
// prior and scores the modalities of Targets under that latent. Plans are
// data, so another fusion is another PlanFunc; modules only follow the
// terms they are named in.

// PlanFunc makes the plan of one step over the pipeline's modules; rng is
// seeded by the step so a plan is reproducible.
type PlanFunc func(modules []string, rng *rand.Rand) []bus.Term

// MVAEPlan is the MVAE sub-sampled ELBO (Wu & Goodman 2018): the joint term
// (every module, targets all), one term per module (targets itself), and k
// random subsets of two or more modules short of all (targets all), drawn
// without repeating a term.
func MVAEPlan(k int) PlanFunc {
	return func(modules []string, rng *rand.Rand) []bus.Term {
		all := slices.Clone(modules)
		plan := []bus.Term{{Subset: all, Targets: all}}
		if len(modules) == 1 {
			return plan
		}
		for _, m := range modules {
			plan = append(plan, bus.Term{Subset: []string{m}, Targets: []string{m}})
		}
		// Subsets of size 2..n-1; there are 2^n - n - 2 of them.
		n := len(modules)
		var pool [][]string
		for mask := 1; mask < 1<<n-1; mask++ {
			if popcount(mask) < 2 {
				continue
			}
			var s []string
			for i, m := range modules {
				if mask&(1<<i) != 0 {
					s = append(s, m)
				}
			}
			pool = append(pool, s)
		}
		rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
		for _, s := range pool[:min(k, len(pool))] {
			plan = append(plan, bus.Term{Subset: s, Targets: all})
		}
		return plan
	}
}

// CrossPlan is MVAEPlan with every single-module term scoring every
// module: the unimodal posteriors are trained to explain the other
// modalities too (cross-modal reconstruction, as MoPoE-style objectives
// do), which is what makes one modality predict the others. It costs a
// decode per module per single term.
func CrossPlan(k int) PlanFunc {
	mvae := MVAEPlan(k)
	return func(modules []string, rng *rand.Rand) []bus.Term {
		plan := mvae(modules, rng)
		for i := range plan {
			plan[i].Targets = slices.Clone(modules)
		}
		return plan
	}
}

// JointPlan is the plain multimodal ELBO: one term, every module, targets all.
func JointPlan() PlanFunc {
	return func(modules []string, _ *rand.Rand) []bus.Term {
		return []bus.Term{{Subset: slices.Clone(modules), Targets: slices.Clone(modules)}}
	}
}

// ParsePlan reads a plan name as the CLI and pipeline file give it:
// "mvae" or "cross" (with k random subsets), or "joint".
func ParsePlan(name string, k int) (PlanFunc, error) {
	switch strings.ToLower(name) {
	case "mvae", "":
		return MVAEPlan(k), nil
	case "cross":
		return CrossPlan(k), nil
	case "joint":
		return JointPlan(), nil
	}
	return nil, fmt.Errorf("integrator: unknown fusion plan %q (want mvae, cross or joint)", name)
}

func popcount(x int) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}
