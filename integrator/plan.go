package integrator

import (
	"fmt"
	"math/bits"
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

// PlanFunc appends the plan of one step over the pipeline's modules to
// dst[:0] and returns it; rng is seeded by the step so a plan is
// reproducible. dst is the last step's plan, whose storage (the terms and
// their Subset and Targets slices) the function may reuse, as the built-in
// plans do so that a step allocates nothing; a PlanFunc may as well ignore
// dst and return new slices. The caller does not change a plan.
type PlanFunc func(dst []bus.Term, modules []string, rng *rand.Rand) []bus.Term

// MVAEPlan is the MVAE sub-sampled ELBO (Wu & Goodman 2018): the joint term
// (every module, targets all), one term per module (targets itself), and k
// random subsets of two or more modules short of all (targets all), drawn
// without repeating a term.
func MVAEPlan(k int) PlanFunc {
	return func(dst []bus.Term, modules []string, rng *rand.Rand) []bus.Term {
		return mvaePlan(dst, modules, rng, k, false)
	}
}

// CrossPlan is MVAEPlan with every single-module term scoring every
// module: the unimodal posteriors are trained to explain the other
// modalities too (cross-modal reconstruction, as MoPoE-style objectives
// do), which is what makes one modality predict the others. It costs a
// decode per module per single term.
func CrossPlan(k int) PlanFunc {
	return func(dst []bus.Term, modules []string, rng *rand.Rand) []bus.Term {
		return mvaePlan(dst, modules, rng, k, true)
	}
}

// mvaePlan builds MVAEPlan(k)'s terms (every target list all modules if
// cross) in dst's storage.
func mvaePlan(dst []bus.Term, modules []string, rng *rand.Rand, k int, cross bool) []bus.Term {
	plan := dst[:0]
	// next appends a term, reusing the storage dst has there: no subset
	// yet, every module its target.
	next := func() *bus.Term {
		plan = slices.Grow(plan, 1)[:len(plan)+1]
		t := &plan[len(plan)-1]
		t.Subset, t.Targets = t.Subset[:0], append(t.Targets[:0], modules...)
		return t
	}
	addMask := func(mask uint64) {
		t := next()
		for i, m := range modules {
			if mask&(1<<i) != 0 {
				t.Subset = append(t.Subset, m)
			}
		}
	}
	joint := next()
	joint.Subset = append(joint.Subset, modules...)
	if len(modules) == 1 {
		return plan
	}
	for _, m := range modules {
		t := next()
		t.Subset = append(t.Subset, m)
		if !cross {
			t.Targets = append(t.Targets[:0], m)
		}
	}
	// k random subsets of size 2..n-1, as bit masks; there are 2^n - n - 2
	// of them. Up to 7 modules their pool lives on the stack; past 16 there
	// are too many to list, and they are drawn until k distinct ones are.
	n := len(modules)
	if n > 16 {
		var stack [16]uint64
		drawn := stack[:0]
		for len(drawn) < k {
			mask := rng.Uint64() & (1<<n - 1)
			if c := bits.OnesCount64(mask); c >= 2 && c < n && !slices.Contains(drawn, mask) {
				drawn = append(drawn, mask)
				addMask(mask)
			}
		}
		return plan
	}
	var stack [128]uint64
	pool := stack[:0]
	for mask := uint64(1); mask < 1<<n-1; mask++ {
		if bits.OnesCount64(mask) >= 2 {
			pool = append(pool, mask)
		}
	}
	rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	for _, mask := range pool[:min(k, len(pool))] {
		addMask(mask)
	}
	return plan
}

// JointPlan is the plain multimodal ELBO: one term, every module, targets all.
func JointPlan() PlanFunc {
	return func(dst []bus.Term, modules []string, _ *rand.Rand) []bus.Term {
		plan := slices.Grow(dst[:0], 1)[:1]
		plan[0].Subset = append(plan[0].Subset[:0], modules...)
		plan[0].Targets = append(plan[0].Targets[:0], modules...)
		return plan
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
