package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/serket-go/serket/internal/kernel"
)

// TestSiLUVectorIsTheLoop: SiLU's forward pass with the vector kernel and
// with the loops alone give the same bits, σ(x) kept for the backward pass
// included, over ordinary inputs and the edges of the exponential's range.
func TestSiLUVectorIsTheLoop(t *testing.T) {
	if kernel.SiLU(make([]float32, 8), make([]float32, 8), make([]float32, 8)) == 0 {
		t.Skip("no vector kernel for SiLU on this CPU")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, 4099) // not a multiple of the vector width
	for i := range x {
		x[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(5)-2)))
	}
	edges := []float32{0, float32(math.Copysign(0, -1)), 87, -87, 88, -88, 87.5, -87.5, 100, -100, 1e30, -1e30, 1e-40, -1e-40,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())}
	copy(x[100:], edges)
	vec, loop := NewSiLU(len(x)), NewSiLU(len(x))
	yv, yl := make([]float32, len(x)), make([]float32, len(x))
	vec.Forward(yv, x, 1)
	kernel.Vector = false
	loop.Forward(yl, x, 1)
	kernel.Vector = true
	same := func(a, b float32) bool {
		return math.Float32bits(a) == math.Float32bits(b) || a != a && b != b
	}
	for i := range x {
		if !same(yv[i], yl[i]) || !same(vec.sig[i], loop.sig[i]) {
			t.Fatalf("x[%d] = %v: the vector kernel gives y %v σ %v, the loops y %v σ %v", i, x[i], yv[i], vec.sig[i], yl[i], loop.sig[i])
		}
	}
}
