package nn_test

import (
	"math"
	"testing"

	"github.com/serket-go/serket/nn"
)

// TestAdamTrajectory checks three steps against torch.optim.Adam's update
// computed by hand in float64 (step_size = lr/(1−β1ᵗ), denom = √v/√(1−β2ᵗ) + ε).
func TestAdamTrajectory(t *testing.T) {
	grads := [][]float32{{0.5, -1, 0}, {0.1, 2, 1e-4}, {-0.3, 0.05, -2}}
	tests := []struct {
		name            string
		lr, b1, b2, eps float32
		maximize        bool
		want            [][]float64
	}{
		{"defaults", 0.1, 0.9, 0.999, 1e-8, false, [][]float64{
			{0.90000000199999997, -1.900000001, 0.5},
			{0.81969590638465173, -1.9366103534720749, 0.42559683720861413},
			{0.79862461176350796, -1.9663321118759793, 0.48947532185457276},
		}},
		{"maximize", 0.05, 0.8, 0.99, 1e-3, true, [][]float64{
			{1.0499001996007984, -2.0499500499500498, 0.5},
			{1.0884036616154213, -2.0289131937429787, 0.50259390101038626},
			{1.094399236593504, -2.0128817429916372, 0.46731018878633473},
		}},
	}
	for _, tt := range tests {
		p := &nn.Param{Name: "p", Shape: []int{3}, W: []float32{1, -2, 0.5}, G: make([]float32, 3)}
		opt := nn.NewAdam([]*nn.Param{p}, tt.lr)
		if tt.name == "defaults" && (opt.Beta1 != 0.9 || opt.Beta2 != 0.999 || opt.Eps != 1e-8 || opt.Maximize) {
			t.Fatalf("NewAdam defaults: %+v", opt)
		}
		opt.Beta1, opt.Beta2, opt.Eps, opt.Maximize = tt.b1, tt.b2, tt.eps, tt.maximize
		for step, g := range grads {
			copy(p.G, g)
			opt.Step()
			for i, want := range tt.want[step] {
				if math.Abs(float64(p.W[i])-want) > 2e-6 {
					t.Errorf("%s: step %d: W[%d] = %.8f, want %.8f", tt.name, step+1, i, p.W[i], want)
				}
			}
			for i := range g {
				if p.G[i] != g[i] {
					t.Fatalf("%s: Step changed G", tt.name)
				}
			}
		}
		if opt.Steps() != 3 {
			t.Errorf("Steps() = %d, want 3", opt.Steps())
		}
	}
}

// TestAdamDirection runs Adam on the concave f(p) = −Σ(p−c)², feeding
// G = ∇f: with Maximize it climbs to the maximum at c, without it descends.
func TestAdamDirection(t *testing.T) {
	c := []float32{3, -1}
	f := func(w []float32) float64 {
		var s float64
		for i := range w {
			d := float64(w[i] - c[i])
			s -= d * d
		}
		return s
	}
	for _, maximize := range []bool{true, false} {
		p := &nn.Param{Name: "p", Shape: []int{2}, W: []float32{0, 0}, G: make([]float32, 2)}
		opt := nn.NewAdam([]*nn.Param{p}, 0.05)
		opt.Maximize = maximize
		start := f(p.W)
		prev := start
		for range 300 {
			for i := range p.W {
				p.G[i] = -2 * (p.W[i] - c[i])
			}
			opt.Step()
			cur := f(p.W)
			if maximize && cur < prev-1e-3 || !maximize && cur > prev {
				t.Fatalf("maximize=%v: f went from %g to %g", maximize, prev, cur)
			}
			prev = cur
		}
		if maximize && prev < -1e-2 {
			t.Errorf("maximize: f = %g after 300 steps, want ≈ 0 (p = %v)", prev, p.W)
		}
		if !maximize && prev > start-10 {
			t.Errorf("minimize: f = %g after 300 steps, started at %g", prev, start)
		}
	}
}
