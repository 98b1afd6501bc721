package nn

import "github.com/serket-go/serket/internal/kernel"

// Elementwise activations. Each keeps what its derivative needs: ReLU the
// input it was given, SiLU and Sigmoid a cache of σ they own (grown to the
// largest batch seen), so Backward costs no exp.

// SiLU is the Swish activation y = x·σ(x).
type SiLU struct {
	n   int
	x   []float32
	sig []float32 // σ(x) of the latest Forward
	b   int
}

var _ Layer = (*SiLU)(nil)

// NewSiLU returns a SiLU over n features.
func NewSiLU(n int) *SiLU {
	mustPositive("NewSiLU", "n", n)
	return &SiLU{n: n, b: -1}
}

// InSize returns the number of features.
func (a *SiLU) InSize() int { return a.n }

// OutSize returns the number of features.
func (a *SiLU) OutSize() int { return a.n }

// Params returns nil: SiLU has no parameters.
func (a *SiLU) Params() []*Param { return nil }

// Forward writes y = x·σ(x).
func (a *SiLU) Forward(y, x []float32, b int) {
	checkBatch("SiLU.Forward", b)
	checkLen("SiLU.Forward", "x", x, b*a.n)
	checkLen("SiLU.Forward", "y", y, b*a.n)
	a.sig = grow(a.sig, len(x))
	sig := a.sig[:len(x)]
	y = y[:len(x)]
	a.x, a.b = x, b
	// The vector kernel does what the loops below do, to the bit; they
	// do what it leaves.
	done := kernel.SiLU(y, sig, x)
	x, y, sig = x[done:], y[done:], sig[done:]
	for i, v := range x {
		sig[i] = -v
	}
	expfSlice(sig, sig)
	for i, v := range x {
		s := 1 / (1 + sig[i])
		sig[i] = s
		y[i] = v * s
	}
}

// Backward writes dx = dy·σ(x)(1 + x(1−σ(x))).
func (a *SiLU) Backward(dx, dy []float32, b int) {
	checkBackward("SiLU.Backward", a.b, b)
	checkLen("SiLU.Backward", "dy", dy, b*a.n)
	if dx == nil {
		return
	}
	checkLen("SiLU.Backward", "dx", dx, b*a.n)
	x := a.x[:len(dx)]
	sig := a.sig[:len(dx)]
	dy = dy[:len(dx)]
	for i, s := range sig {
		dx[i] = dy[i] * s * (1 + x[i]*(1-s))
	}
}

// ReLU is the rectifier y = max(x, 0). Its derivative at 0 is taken as 0.
type ReLU struct {
	n int
	x []float32
	b int
}

var _ Layer = (*ReLU)(nil)

// NewReLU returns a ReLU over n features.
func NewReLU(n int) *ReLU {
	mustPositive("NewReLU", "n", n)
	return &ReLU{n: n, b: -1}
}

// InSize returns the number of features.
func (a *ReLU) InSize() int { return a.n }

// OutSize returns the number of features.
func (a *ReLU) OutSize() int { return a.n }

// Params returns nil: ReLU has no parameters.
func (a *ReLU) Params() []*Param { return nil }

// Forward writes y = max(x, 0).
func (a *ReLU) Forward(y, x []float32, b int) {
	checkBatch("ReLU.Forward", b)
	checkLen("ReLU.Forward", "x", x, b*a.n)
	checkLen("ReLU.Forward", "y", y, b*a.n)
	y = y[:len(x)]
	for i, v := range x {
		y[i] = max(v, 0)
	}
	a.x, a.b = x, b
}

// Backward writes dx = dy where x > 0 and 0 elsewhere.
func (a *ReLU) Backward(dx, dy []float32, b int) {
	checkBackward("ReLU.Backward", a.b, b)
	checkLen("ReLU.Backward", "dy", dy, b*a.n)
	if dx == nil {
		return
	}
	checkLen("ReLU.Backward", "dx", dx, b*a.n)
	x := a.x[:len(dx)]
	dy = dy[:len(dx)]
	for i, v := range x {
		if v > 0 {
			dx[i] = dy[i]
		} else {
			dx[i] = 0
		}
	}
}

// Sigmoid is the logistic function y = σ(x) = 1/(1+e^−x).
type Sigmoid struct {
	n   int
	sig []float32 // y of the latest Forward
	b   int
}

var _ Layer = (*Sigmoid)(nil)

// NewSigmoid returns a Sigmoid over n features.
func NewSigmoid(n int) *Sigmoid {
	mustPositive("NewSigmoid", "n", n)
	return &Sigmoid{n: n, b: -1}
}

// InSize returns the number of features.
func (a *Sigmoid) InSize() int { return a.n }

// OutSize returns the number of features.
func (a *Sigmoid) OutSize() int { return a.n }

// Params returns nil: Sigmoid has no parameters.
func (a *Sigmoid) Params() []*Param { return nil }

// Forward writes y = σ(x). It keeps its own copy of y for Backward.
func (a *Sigmoid) Forward(y, x []float32, b int) {
	checkBatch("Sigmoid.Forward", b)
	checkLen("Sigmoid.Forward", "x", x, b*a.n)
	checkLen("Sigmoid.Forward", "y", y, b*a.n)
	a.sig = grow(a.sig, len(x))
	sig := a.sig[:len(x)]
	y = y[:len(x)]
	for i, v := range x {
		sig[i] = -v
	}
	expfSlice(sig, sig)
	for i, e := range sig {
		s := 1 / (1 + e)
		sig[i] = s
		y[i] = s
	}
	a.b = b
}

// Backward writes dx = dy·y(1−y).
func (a *Sigmoid) Backward(dx, dy []float32, b int) {
	checkBackward("Sigmoid.Backward", a.b, b)
	checkLen("Sigmoid.Backward", "dy", dy, b*a.n)
	if dx == nil {
		return
	}
	checkLen("Sigmoid.Backward", "dx", dx, b*a.n)
	sig := a.sig[:len(dx)]
	dy = dy[:len(dx)]
	for i, s := range sig {
		dx[i] = dy[i] * s * (1 - s)
	}
}
