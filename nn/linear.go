package nn

import (
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// Linear is a fully connected layer y = x Wᵀ + b, with W stored out×in
// row-major as in PyTorch's nn.Linear.
type Linear struct {
	Weight *Param // shape [out in]
	Bias   *Param // shape [out]

	params  []*Param
	in, out int
	x       []float32 // input of the latest Forward
	b       int       // batch of the latest Forward, −1 before any
}

var _ Layer = (*Linear)(nil)

// NewLinear returns a Linear layer from in to out features whose parameters
// are named name+".W" and name+".b", initialised like PyTorch's nn.Linear:
// W and b drawn from U(−1/√in, 1/√in) using rng.
func NewLinear(name string, in, out int, rng *rand.Rand) *Linear {
	mustPositive("NewLinear", "in, out", in, out)
	bound := fanInBound(in)
	l := &Linear{
		Weight: newParam(name+".W", bound, rng, out, in),
		Bias:   newParam(name+".b", bound, rng, out),
		in:     in,
		out:    out,
		b:      -1,
	}
	l.params = []*Param{l.Weight, l.Bias}
	return l
}

// InSize returns the number of input features.
func (l *Linear) InSize() int { return l.in }

// OutSize returns the number of output features.
func (l *Linear) OutSize() int { return l.out }

// Params returns the weight and the bias. The slice belongs to the layer.
func (l *Linear) Params() []*Param { return l.params }

// Forward writes y = x Wᵀ + b for b rows and keeps a reference to x.
func (l *Linear) Forward(y, x []float32, b int) {
	checkBatch("Linear.Forward", b)
	checkLen("Linear.Forward", "x", x, b*l.in)
	checkLen("Linear.Forward", "y", y, b*l.out)
	bias := l.Bias.W
	for i := 0; i < b; i++ {
		copy(y[i*l.out:(i+1)*l.out], bias)
	}
	gemm(blas.NoTrans, blas.Trans, 1,
		blas32.General{Rows: b, Cols: l.in, Stride: l.in, Data: x},
		blas32.General{Rows: l.out, Cols: l.in, Stride: l.in, Data: l.Weight.W},
		1, blas32.General{Rows: b, Cols: l.out, Stride: l.out, Data: y})
	l.x, l.b = x, b
}

// Backward adds dyᵀx to the weight gradient and the column sums of dy to the
// bias gradient, and writes dx = dy W when dx is not nil.
func (l *Linear) Backward(dx, dy []float32, b int) {
	checkBackward("Linear.Backward", l.b, b)
	checkLen("Linear.Backward", "dy", dy, b*l.out)
	if dx != nil {
		checkLen("Linear.Backward", "dx", dx, b*l.in)
	}
	if b == 0 {
		return
	}
	DY := blas32.General{Rows: b, Cols: l.out, Stride: l.out, Data: dy}
	gemm(blas.Trans, blas.NoTrans, 1, DY,
		blas32.General{Rows: b, Cols: l.in, Stride: l.in, Data: l.x},
		1, blas32.General{Rows: l.out, Cols: l.in, Stride: l.in, Data: l.Weight.G})
	gb := l.Bias.G[:l.out]
	for i := 0; i < b; i++ {
		row := dy[i*l.out : (i+1)*l.out]
		row = row[:len(gb)]
		for j, v := range row {
			gb[j] += v
		}
	}
	if dx != nil {
		gemm(blas.NoTrans, blas.NoTrans, 1, DY,
			blas32.General{Rows: l.out, Cols: l.in, Stride: l.in, Data: l.Weight.W},
			0, blas32.General{Rows: b, Cols: l.in, Stride: l.in, Data: dx})
	}
}
