package integrator_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/integrator"
)

// referenceMVAE is MVAEPlan as it was written before plans reused their
// storage: a run's plans, and so its results, must not change with it.
func referenceMVAE(modules []string, rng *rand.Rand, k int) []bus.Term {
	all := slices.Clone(modules)
	plan := []bus.Term{{Subset: all, Targets: all}}
	if len(modules) == 1 {
		return plan
	}
	for _, m := range modules {
		plan = append(plan, bus.Term{Subset: []string{m}, Targets: []string{m}})
	}
	n := len(modules)
	var pool [][]string
	for mask := 1; mask < 1<<n-1; mask++ {
		var s []string
		for i, m := range modules {
			if mask&(1<<i) != 0 {
				s = append(s, m)
			}
		}
		if len(s) >= 2 {
			pool = append(pool, s)
		}
	}
	rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	for _, s := range pool[:min(k, len(pool))] {
		plan = append(plan, bus.Term{Subset: s, Targets: all})
	}
	return plan
}

func names(n int) []string {
	var s []string
	for i := range n {
		s = append(s, fmt.Sprintf("m%d", i))
	}
	return s
}

func TestMVAEPlanMatchesReference(t *testing.T) {
	for n := 1; n <= 7; n++ {
		for _, k := range []int{0, 1, 3, 200} {
			mods := names(n)
			plan := integrator.MVAEPlan(k)
			var dst []bus.Term
			for step := uint64(1); step <= 5; step++ {
				want := referenceMVAE(mods, rand.New(rand.NewPCG(9, step)), k)
				dst = plan(dst, mods, rand.New(rand.NewPCG(9, step)))
				if !reflect.DeepEqual(dst, want) {
					t.Fatalf("%d modules, k=%d, step %d (reusing the last plan):\n got %v\nwant %v", n, k, step, dst, want)
				}
				if fresh := plan(nil, mods, rand.New(rand.NewPCG(9, step))); !reflect.DeepEqual(fresh, want) {
					t.Fatalf("%d modules, k=%d, step %d (fresh):\n got %v\nwant %v", n, k, step, fresh, want)
				}
			}
		}
	}
}

func TestCrossAndJointPlans(t *testing.T) {
	mods := names(4)
	cross := integrator.CrossPlan(2)(nil, mods, rand.New(rand.NewPCG(1, 2)))
	if len(cross) != 1+4+2 {
		t.Fatalf("CrossPlan(2) over 4 modules: %d terms, want 7", len(cross))
	}
	for i, term := range cross {
		if !slices.Equal(term.Targets, mods) {
			t.Errorf("cross term %d targets %v, want every module", i, term.Targets)
		}
	}
	for i, m := range mods {
		if !slices.Equal(cross[1+i].Subset, []string{m}) {
			t.Errorf("cross term %d fuses %v, want [%s]", 1+i, cross[1+i].Subset, m)
		}
	}
	// Reusing a cross plan's storage for an MVAE plan must not leak targets.
	mvae := integrator.MVAEPlan(2)(cross, mods, rand.New(rand.NewPCG(1, 2)))
	if want := referenceMVAE(mods, rand.New(rand.NewPCG(1, 2)), 2); !reflect.DeepEqual(mvae, want) {
		t.Errorf("MVAE plan in a cross plan's storage:\n got %v\nwant %v", mvae, want)
	}
	joint := integrator.JointPlan()(mvae, mods, nil)
	if want := []bus.Term{{Subset: mods, Targets: mods}}; !reflect.DeepEqual(joint, want) {
		t.Errorf("JointPlan: %v, want %v", joint, want)
	}
}

func TestMVAEPlanManyModules(t *testing.T) {
	mods := names(40)
	plan := integrator.MVAEPlan(5)(nil, mods, rand.New(rand.NewPCG(3, 4)))
	if len(plan) != 1+40+5 {
		t.Fatalf("MVAEPlan(5) over 40 modules: %d terms, want 46", len(plan))
	}
	seen := map[string]bool{}
	for _, term := range plan[41:] {
		if len(term.Subset) < 2 || len(term.Subset) >= 40 {
			t.Errorf("random subset of %d modules, want 2 to 39", len(term.Subset))
		}
		key := fmt.Sprint(term.Subset)
		if seen[key] {
			t.Errorf("subset %v drawn twice", term.Subset)
		}
		seen[key] = true
	}
}

func TestPlansDoNotAllocate(t *testing.T) {
	mods := names(3)
	rng := rand.New(rand.NewPCG(1, 1))
	for name, plan := range map[string]integrator.PlanFunc{"mvae": integrator.MVAEPlan(1), "cross": integrator.CrossPlan(1), "joint": integrator.JointPlan()} {
		dst := plan(nil, mods, rng)
		if n := testing.AllocsPerRun(100, func() { dst = plan(dst, mods, rng) }); n != 0 {
			t.Errorf("%s plan into the last one's storage: %v allocations, want 0", name, n)
		}
	}
}
