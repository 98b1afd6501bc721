package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/serket-go/serket/internal/kernel"
)

// TestAdamVectorIsTheLoop: steps of Adam with the vector kernel and with the
// scalar loop alone, from the same state, give the same bits, over params
// whose lengths are and are not multiples of the vector width, minimising
// and maximising.
func TestAdamVectorIsTheLoop(t *testing.T) {
	if !kernel.Vector {
		t.Skip("no vector kernels on this CPU")
	}
	for _, maximize := range []bool{false, true} {
		rng := rand.New(rand.NewPCG(1, 2))
		build := func() (*Adam, []*Param) {
			var ps []*Param
			for i, n := range []int{8, 1003, 40000, 3} {
				ps = append(ps, &Param{Name: string(rune('a' + i)), W: make([]float32, n), G: make([]float32, n)})
			}
			a := NewAdam(ps, 1e-3)
			a.Maximize = maximize
			return a, ps
		}
		vec, pv := build()
		loop, pl := build()
		for k := range pv {
			for j := range pv[k].W {
				w := float32(rng.NormFloat64())
				pv[k].W[j], pl[k].W[j] = w, w
			}
		}
		for step := range 3 {
			for k := range pv {
				for j := range pv[k].G {
					// Gradients over many scales, zeros among them.
					g := float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(12)-8)))
					if rng.IntN(50) == 0 {
						g = 0
					}
					pv[k].G[j], pl[k].G[j] = g, g
				}
			}
			vec.Step()
			kernel.Vector = false
			loop.Step()
			kernel.Vector = true
			for k := range pv {
				for j := range pv[k].W {
					if math.Float32bits(pv[k].W[j]) != math.Float32bits(pl[k].W[j]) || math.Float32bits(vec.m[k][j]) != math.Float32bits(loop.m[k][j]) ||
						math.Float32bits(vec.v[k][j]) != math.Float32bits(loop.v[k][j]) {
						t.Fatalf("maximize %v, step %d, param %s[%d]: the vector kernel gives w %v m %v v %v, the loop w %v m %v v %v",
							maximize, step, pv[k].Name, j, pv[k].W[j], vec.m[k][j], vec.v[k][j], pl[k].W[j], loop.m[k][j], loop.v[k][j])
					}
				}
			}
		}
	}
}
