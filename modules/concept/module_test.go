package concept

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/serket-go/serket/module"
)

// clusters is evidence of b items around two points, ±3 in every one of
// d dimensions, with precision 4, as one term.
func clusters(b, d int, seed uint64) []module.Evidence {
	rng := rand.New(rand.NewPCG(seed, 1))
	ev := module.Evidence{Prec: make([]float32, b*d), Shift: make([]float32, b*d)}
	for r := range b {
		c := float32(3 - 6*(r%2))
		for j := range d {
			ev.Prec[r*d+j] = 4
			ev.Shift[r*d+j] = 4 * (c + float32(rng.NormFloat64())*0.3)
		}
	}
	return []module.Evidence{ev}
}

func outs(b, d int) []module.PriorOut {
	return []module.PriorOut{{Mu: make([]float32, b*d), LogVar: make([]float32, b*d), Concept: make([]int32, b), Prob: make([]float32, b)}}
}

// TestModuleSitsOutItsWarmup: for Warmup training steps it sends N(0, I)
// and learns nothing; then it learns, and sends each item its category's
// mean (with unit variance, asked for here).
func TestModuleSitsOutItsWarmup(t *testing.T) {
	const b, d, warmup = 64, 4, 3
	m, err := NewModule(ModuleConfig{Mixture: Config{D: d, K: 5}, Items: 640, Warmup: warmup, Unit: true})
	if err != nil {
		t.Fatal(err)
	}
	for step := range uint64(warmup) {
		out := outs(b, d)
		if err := m.Prior(out, clusters(b, d, step), module.PriorQuery{B: b, D: d, Step: step, Learn: true}); err != nil {
			t.Fatal(err)
		}
		if m.Mixture().Steps() != 0 || out[0].Mu[0] != 0 || out[0].LogVar[0] != 0 {
			t.Fatalf("step %d of the warm-up: the mixture took %d steps and sent N(%g, e^%g)", step, m.Mixture().Steps(), out[0].Mu[0], out[0].LogVar[0])
		}
	}
	for step := uint64(warmup); step < 20; step++ {
		if err := m.Prior(outs(b, d), clusters(b, d, step), module.PriorQuery{B: b, D: d, Step: step, Learn: true}); err != nil {
			t.Fatal(err)
		}
	}
	out := outs(b, d)
	if err := m.Prior(out, clusters(b, d, 99), module.PriorQuery{B: b, D: d, Step: 99}); err != nil {
		t.Fatal(err)
	}
	if m.Mixture().Steps() != 20-warmup || out[0].Concept[0] == out[0].Concept[1] || out[0].Mu[0] < 2 || out[0].Mu[d] > -2 || out[0].LogVar[0] != 0 {
		t.Fatalf("after %d steps: concepts %d and %d, means %g and %g, log-variance %g; want two categories near ±3, unit variance",
			m.Mixture().Steps(), out[0].Concept[0], out[0].Concept[1], out[0].Mu[0], out[0].Mu[d], out[0].LogVar[0])
	}
}

// TestCheckpointKeepsTheVarianceSetting: a module restored from a run
// trained with the categories' own variances sends them, whatever its
// flag: serving a run sends what training did.
func TestCheckpointKeepsTheVarianceSetting(t *testing.T) {
	const b, d = 64, 4
	trained, _ := NewModule(ModuleConfig{Mixture: Config{D: d, K: 5}, Items: 640})
	for step := range uint64(10) {
		trained.Prior(outs(b, d), clusters(b, d, step), module.PriorQuery{B: b, D: d, Step: step, Learn: true})
	}
	var buf bytes.Buffer
	if err := trained.Save(&buf); err != nil {
		t.Fatal(err)
	}
	served, _ := NewModule(ModuleConfig{Mixture: Config{D: d, K: 5}, Unit: true})
	if err := served.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	want, got := outs(b, d), outs(b, d)
	q := module.PriorQuery{B: b, D: d, Step: 7}
	trained.Prior(want, clusters(b, d, 7), q)
	served.Prior(got, clusters(b, d, 7), q)
	if got[0].LogVar[0] == 0 || got[0].LogVar[0] != want[0].LogVar[0] {
		t.Fatalf("restored module sends log-variance %g, the trained one %g", got[0].LogVar[0], want[0].LogVar[0])
	}
}
