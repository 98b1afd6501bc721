package integrator

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/serket-go/serket/bus"
)

// TestEpochOrderWithoutAShareIsThePermutation: a run without a paired
// share, or whose paired items are already that share of all, takes its
// items in the permutation it always did, so its checkpoints' positions
// mean what they meant.
func TestEpochOrderWithoutAShareIsThePermutation(t *testing.T) {
	ids := make([]uint64, 500)
	for i := range ids {
		ids[i] = uint64(1000 + 3*i)
	}
	for _, p := range []Pairing{{}, {SeenOnly: true}, {Share: 0.5, Paired: func(uint64) bool { return true }}, {Share: 0.2, Paired: func(id uint64) bool { return id%2 == 0 }}} {
		c := TrainConfig{IDs: ids, Batch: 10, Seed: 4, Pairing: p}
		got := c.epochOrder(nil, 2)
		for i, k := range rand.New(rand.NewPCG(4, 2)).Perm(len(ids)) {
			if got[i] != ids[k] {
				t.Fatalf("pairing %+v: item %d of the epoch is %d, want %d (the plain permutation)", p, i, got[i], ids[k])
			}
		}
	}
}

// TestEpochOrderTakesThePairedShare: every batch takes its share from the
// paired items, which are used evenly; the others come at most once; the
// epoch keeps its length; the order is the seed's and the epoch's.
func TestEpochOrderTakesThePairedShare(t *testing.T) {
	ids := make([]uint64, 1000)
	for i := range ids {
		ids[i] = uint64(i)
	}
	c := TrainConfig{IDs: ids, Batch: 10, Seed: 1, Pairing: Pairing{Share: 0.3, Paired: func(id uint64) bool { return id%100 == 7 }}}
	order := c.epochOrder(nil, 0)
	if len(order) != len(ids) {
		t.Fatalf("the epoch has %d items, want %d", len(order), len(ids))
	}
	seen := map[uint64]int{}
	for i, id := range order {
		if paired := id%100 == 7; paired != (i%10 < 3) {
			t.Fatalf("item %d of the epoch (%d, paired %v) is at place %d of its batch; want the paired ones at places 0–2", i, id, paired, i%10)
		}
		seen[id]++
	}
	for id, n := range seen {
		if id%100 == 7 && n != 30 {
			t.Errorf("paired item %d taken %d times, want 30 (300 paired places, 10 paired items)", id, n)
		}
		if id%100 != 7 && n != 1 {
			t.Errorf("unpaired item %d taken %d times, want at most once", id, n)
		}
	}
	if len(seen) != 10+700 {
		t.Errorf("%d distinct items, want 10 paired and 700 others", len(seen))
	}
	if again := c.epochOrder(nil, 0); !slices.Equal(again, order) {
		t.Error("the same epoch's order differs between calls")
	}
	if next := c.epochOrder(nil, 1); slices.Equal(next, order) {
		t.Error("the next epoch takes the items in the same order")
	}
}

func TestPairingRefusesBadShares(t *testing.T) {
	yes := func(uint64) bool { return true }
	for _, p := range []Pairing{{Share: -0.1, Paired: yes}, {Share: 1, Paired: yes}, {Share: math.NaN(), Paired: yes}, {Share: 0.2}} {
		c := TrainConfig{Modules: []string{"a"}, IDs: []uint64{1}, Pairing: p}
		if err := c.defaults(); err == nil || !strings.Contains(err.Error(), "paired share") {
			t.Errorf("pairing %+v: %v, want an error naming the paired share", p, err)
		}
	}
}

// TestSeenOnlyWeighsUnseenRowsZero: with SeenOnly, a row of a term that
// none of its experts saw weighs 0 — in the weights sent to the modules
// and in the term's statistics — and every other row 1; without it, a PoE
// step sends no weights.
func TestSeenOnlyWeighsUnseenRowsZero(t *testing.T) {
	const b, d = 6, 3
	c := newStepCase(3, b, d)
	c.posts["a"].Present = []bool{true, false, true, false, true, false}
	c.posts["b"].Present = []bool{true, true, false, false, true, true}
	delete(c.posts, "c") // c missed the step: a term of c alone saw nothing
	var s StepMath
	s.Reset(StepMath{Step: 1, Seed: 5, B: b, D: d, Plan: c.plan, Lambda: c.lambda, Beta: 1})
	s.Latents(c.posts)
	if w := s.RowWeights(); w != nil {
		t.Fatalf("a PoE step without SeenOnly sends row weights %v", w)
	}
	s.Reset(StepMath{Step: 1, Seed: 5, B: b, D: d, Plan: c.plan, Lambda: c.lambda, Beta: 1, SeenOnly: true})
	s.Latents(c.posts)
	w := s.RowWeights()
	if len(w) != len(c.plan) {
		t.Fatalf("%d row weight vectors for %d terms", len(w), len(c.plan))
	}
	for i, term := range c.plan {
		for r, got := range w[i].Data {
			seen := false
			for _, m := range term.Subset {
				if p := c.posts[m]; p != nil && p.Present[r] {
					seen = true
				}
			}
			if want := map[bool]float32{true: 1, false: 0}[seen]; got != want {
				t.Errorf("term %v row %d: weight %v, want %v (seen %v)", term.Subset, r, got, want, seen)
			}
		}
	}
	if n := testing.AllocsPerRun(10, func() {
		s.Reset(StepMath{Step: 1, Seed: 5, B: b, D: d, Plan: c.plan, Lambda: c.lambda, Beta: 1, SeenOnly: true})
		s.Latents(c.posts)
		s.RowWeights()
	}); n != 0 {
		t.Errorf("a reused seen-only step allocates %v times, want 0", n)
	}
	// The statistics: a target's log-likelihood is the mean over the rows
	// the term saw and the target has.
	delete(c.zgrads, "c")
	_, stats, err := s.Grads(c.zgrads)
	if err != nil {
		t.Fatal(err)
	}
	for i, term := range c.plan {
		for _, m := range term.Targets {
			if c.posts[m] == nil {
				continue
			}
			var sum, n float64
			for r, v := range c.zgrads[m].Terms[i].LogLik.Data {
				if w[i].Data[r] > 0 && c.posts[m].Present[r] {
					sum, n = sum+float64(v), n+1
				}
			}
			got, ok := stats[i].LogLik[m]
			if n == 0 {
				continue
			}
			if !ok || math.Abs(got-sum/n) > 1e-5 {
				t.Errorf("term %v target %s: log-likelihood %v, want %v over its %v seen rows", term.Subset, m, got, sum/n, n)
			}
		}
	}
}

// TestSeenOnlyNeedsModulesThatHonourRowWeights: a module that does not
// say it honours row weights is named.
func TestSeenOnlyNeedsModulesThatHonourRowWeights(t *testing.T) {
	ig := &Integrator{modules: map[string]*member{
		"a": {Name: "a", Training: bus.TrainsRowWeights},
		"b": {Name: "b", Training: ""},
	}}
	missing, err := ig.withoutRowWeights([]string{"a", "c"}, "seen-only training")
	if err != nil || !slices.Equal(missing, []string{"c"}) {
		t.Errorf("a honours them and c is not discovered: got %v, %v", missing, err)
	}
	if _, err := ig.withoutRowWeights([]string{"a", "b"}, "seen-only training"); err == nil || !strings.Contains(err.Error(), "module b") || !strings.Contains(err.Error(), "seen-only") {
		t.Errorf("b does not say it honours row weights: got %v, want an error naming it and why", err)
	}
}
