package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Param is one learnable tensor: the values W and the gradient G that
// Backward accumulates into, both of length product(Shape), stored row-major.
// Name identifies the tensor in checkpoints ("enc.0.W"); Shape documents its
// layout (a Linear weight is [out in]).
type Param struct {
	Name  string
	Shape []int
	W, G  []float32
}

// newParam returns a Param of the given shape with W drawn from U(-bound, bound)
// and G zero.
func newParam(name string, bound float64, rng *rand.Rand, shape ...int) *Param {
	n := 1
	for _, d := range shape {
		n *= d
	}
	p := &Param{Name: name, Shape: shape, W: make([]float32, n), G: make([]float32, n)}
	for i := range p.W {
		p.W[i] = float32((2*rng.Float64() - 1) * bound)
	}
	return p
}

// fanInBound is PyTorch's default init bound for weights and biases:
// kaiming_uniform(a=√5) gives U(−1/√fan_in, 1/√fan_in).
func fanInBound(fanIn int) float64 { return 1 / math.Sqrt(float64(fanIn)) }

// ZeroGrad sets every G in ps to zero.
func ZeroGrad(ps []*Param) {
	for _, p := range ps {
		clear(p.G)
	}
}

// NumParams returns the total number of scalars in ps.
func NumParams(ps []*Param) int {
	n := 0
	for _, p := range ps {
		n += len(p.W)
	}
	return n
}

// shapeLen returns the number of elements of shape.
func shapeLen(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// checkLen panics unless len(s) == want. op names the caller.
func checkLen(op, name string, s []float32, want int) {
	if len(s) != want {
		panic(fmt.Sprintf("nn: %s: len(%s) = %d, want %d", op, name, len(s), want))
	}
}

// checkBatch panics on a negative batch size.
func checkBatch(op string, b int) {
	if b < 0 {
		panic(fmt.Sprintf("nn: %s: negative batch size %d", op, b))
	}
}

// checkBackward panics unless Backward follows a Forward with the same batch.
func checkBackward(op string, forwardB, b int) {
	if forwardB != b {
		if forwardB < 0 {
			panic(fmt.Sprintf("nn: %s: Backward before Forward", op))
		}
		panic(fmt.Sprintf("nn: %s: Backward batch %d, latest Forward had %d", op, b, forwardB))
	}
}

// grow returns buf resliced to n elements, reallocating only when its
// capacity is short. Contents are not preserved.
func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// mustPositive panics unless every v is > 0.
func mustPositive(op string, names string, vs ...int) {
	for _, v := range vs {
		if v <= 0 {
			panic(fmt.Sprintf("nn: %s: sizes (%s) must be positive, got %v", op, names, vs))
		}
	}
}
