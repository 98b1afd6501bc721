package nn_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/serket-go/serket/nn"
	"github.com/serket-go/serket/nn/nntest"
)

func newRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

func TestGradCheckLayers(t *testing.T) {
	rng := newRNG(1)
	tests := []struct {
		name string
		l    nn.Layer
		b    int
	}{
		{"Linear", nn.NewLinear("lin", 13, 7, rng), 5},
		{"Linear/MVAE", nn.NewLinear("lin", 784, 512, rng), 2},
		{"SiLU", nn.NewSiLU(11), 4},
		{"ReLU", nn.NewReLU(11), 4},
		{"Sigmoid", nn.NewSigmoid(11), 4},
		{"Conv2D/k3s1p1", nn.NewConv2D("c", 2, 5, 6, 3, 3, 1, 1, rng), 2},
		{"Conv2D/k3s2p0", nn.NewConv2D("c", 3, 7, 7, 2, 3, 2, 0, rng), 3},
		{"Conv2D/k2s2p1", nn.NewConv2D("c", 1, 5, 4, 4, 2, 2, 1, rng), 2},
		{"Conv2D/k5s3p2", nn.NewConv2D("c", 2, 9, 8, 3, 5, 3, 2, rng), 2},
		{"Conv2D/MVAE1", nn.NewConv2D("c", 1, 28, 28, 64, 4, 2, 1, rng), 2},
		{"Conv2D/MVAE2", nn.NewConv2D("c", 64, 14, 14, 128, 4, 2, 1, rng), 1},
		{"ConvTranspose2D/k3s1p1", nn.NewConvTranspose2D("ct", 2, 5, 6, 3, 3, 1, 1, rng), 2},
		{"ConvTranspose2D/k3s2p0", nn.NewConvTranspose2D("ct", 3, 4, 3, 2, 3, 2, 0, rng), 3},
		{"ConvTranspose2D/k2s2p1", nn.NewConvTranspose2D("ct", 1, 3, 4, 4, 2, 2, 1, rng), 2},
		{"ConvTranspose2D/k5s3p2", nn.NewConvTranspose2D("ct", 2, 3, 4, 3, 5, 3, 2, rng), 2},
		{"ConvTranspose2D/MVAE1", nn.NewConvTranspose2D("ct", 128, 7, 7, 64, 4, 2, 1, rng), 1},
		{"ConvTranspose2D/MVAE2", nn.NewConvTranspose2D("ct", 64, 14, 14, 1, 4, 2, 1, rng), 2},
		{"Sequential", nn.NewSequential(
			nn.NewLinear("s.0", 10, 16, rng), nn.NewSiLU(16),
			nn.NewLinear("s.2", 16, 8, rng), nn.NewSigmoid(8),
			nn.NewLinear("s.4", 8, 3, rng)).AsLayer(), 4},
		{"Sequential/conv", nn.NewSequential(
			nn.NewConv2D("e.0", 1, 8, 8, 4, 4, 2, 1, rng), nn.NewSiLU(4*4*4),
			nn.NewConv2D("e.2", 4, 4, 4, 8, 4, 2, 1, rng), nn.NewSiLU(8*2*2),
			nn.NewConvTranspose2D("d.0", 8, 2, 2, 4, 4, 2, 1, rng), nn.NewSiLU(4*4*4),
			nn.NewConvTranspose2D("d.2", 4, 4, 4, 1, 4, 2, 1, rng)).AsLayer(), 3},
		{"Sequential/nested", nn.NewSequential(
			nn.NewSequential(nn.NewLinear("a", 6, 9, rng), nn.NewSiLU(9)).AsLayer(),
			nn.NewLinear("b", 9, 4, rng),
			nn.NewSequential(nn.NewSigmoid(4), nn.NewLinear("c", 4, 5, rng)).AsLayer()).AsLayer(), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nntest.GradCheck(t, tt.l, tt.b, newRNG(2))
		})
	}
}

func TestLayerSizes(t *testing.T) {
	rng := newRNG(3)
	tests := []struct {
		name    string
		l       nn.Layer
		in, out int
	}{
		{"Linear", nn.NewLinear("l", 784, 512, rng), 784, 512},
		{"SiLU", nn.NewSiLU(5), 5, 5},
		{"Conv2D/MVAE1", nn.NewConv2D("c", 1, 28, 28, 64, 4, 2, 1, rng), 784, 64 * 14 * 14},
		{"Conv2D/MVAE2", nn.NewConv2D("c", 64, 14, 14, 128, 4, 2, 1, rng), 64 * 14 * 14, 128 * 7 * 7},
		{"Conv2D/odd", nn.NewConv2D("c", 3, 10, 9, 2, 3, 2, 0, rng), 270, 2 * 4 * 4},
		{"ConvTranspose2D/MVAE1", nn.NewConvTranspose2D("c", 128, 7, 7, 64, 4, 2, 1, rng), 128 * 7 * 7, 64 * 14 * 14},
		{"ConvTranspose2D/MVAE2", nn.NewConvTranspose2D("c", 64, 14, 14, 1, 4, 2, 1, rng), 64 * 14 * 14, 784},
		{"ConvTranspose2D/s3", nn.NewConvTranspose2D("c", 2, 4, 5, 3, 5, 3, 2, rng), 40, 3 * 10 * 13},
	}
	for _, tt := range tests {
		if tt.l.InSize() != tt.in || tt.l.OutSize() != tt.out {
			t.Errorf("%s: sizes %d→%d, want %d→%d", tt.name, tt.l.InSize(), tt.l.OutSize(), tt.in, tt.out)
		}
	}
}

// TestInit checks PyTorch's default bounds: U(−1/√fan_in, 1/√fan_in), with
// fan_in = outC·k·k for a transposed convolution.
func TestInit(t *testing.T) {
	rng := newRNG(4)
	tests := []struct {
		name  string
		ps    []*nn.Param
		bound float64
	}{
		{"Linear", nn.NewLinear("l", 400, 300, rng).Params(), 1 / math.Sqrt(400)},
		{"Conv2D", nn.NewConv2D("c", 8, 10, 10, 16, 3, 1, 1, rng).Params(), 1 / math.Sqrt(8*9)},
		{"ConvTranspose2D", nn.NewConvTranspose2D("c", 16, 5, 5, 8, 3, 1, 1, rng).Params(), 1 / math.Sqrt(8*9)},
	}
	for _, tt := range tests {
		for _, p := range tt.ps {
			var maxAbs, sum float64
			for _, w := range p.W {
				maxAbs = max(maxAbs, math.Abs(float64(w)))
				sum += float64(w)
			}
			if maxAbs > tt.bound || (len(p.W) > 1000 && maxAbs < 0.95*tt.bound) {
				t.Errorf("%s %s: max |w| = %g, want close to and ≤ %g", tt.name, p.Name, maxAbs, tt.bound)
			}
			if mean := sum / float64(len(p.W)); len(p.W) > 1000 && math.Abs(mean) > 0.05*tt.bound {
				t.Errorf("%s %s: mean %g, want ≈ 0", tt.name, p.Name, mean)
			}
			for _, g := range p.G {
				if g != 0 {
					t.Fatalf("%s %s: initial G not zero", tt.name, p.Name)
				}
			}
		}
	}
}

// naiveConv is a direct convolution in float64.
func naiveConv(x, w, bias []float32, b, inC, inH, inW, outC, k, stride, pad int) []float64 {
	outH := (inH+2*pad-k)/stride + 1
	outW := (inW+2*pad-k)/stride + 1
	y := make([]float64, b*outC*outH*outW)
	for s := 0; s < b; s++ {
		for o := 0; o < outC; o++ {
			for i := 0; i < outH; i++ {
				for j := 0; j < outW; j++ {
					sum := float64(bias[o])
					for c := 0; c < inC; c++ {
						for ki := 0; ki < k; ki++ {
							for kj := 0; kj < k; kj++ {
								ih, iw := i*stride-pad+ki, j*stride-pad+kj
								if ih < 0 || ih >= inH || iw < 0 || iw >= inW {
									continue
								}
								sum += float64(x[((s*inC+c)*inH+ih)*inW+iw]) * float64(w[((o*inC+c)*k+ki)*k+kj])
							}
						}
					}
					y[((s*outC+o)*outH+i)*outW+j] = sum
				}
			}
		}
	}
	return y
}

func TestConv2DMatchesNaive(t *testing.T) {
	tests := []struct{ b, inC, inH, inW, outC, k, stride, pad int }{
		{2, 1, 28, 28, 8, 4, 2, 1},
		{3, 3, 7, 9, 4, 3, 1, 1},
		{2, 2, 8, 8, 3, 3, 2, 0},
		{1, 2, 6, 5, 2, 5, 1, 2},
		{2, 4, 10, 11, 3, 3, 3, 2},
		{2, 1, 3, 3, 2, 3, 1, 3}, // padding wider than the kernel reach
		{1, 1, 1, 1, 1, 1, 1, 0},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%+v", tt)
		rng := newRNG(5)
		l := nn.NewConv2D("c", tt.inC, tt.inH, tt.inW, tt.outC, tt.k, tt.stride, tt.pad, rng)
		x := randSlice(rng, tt.b*l.InSize())
		y := make([]float32, tt.b*l.OutSize())
		l.Forward(y, x, tt.b)
		want := naiveConv(x, l.Weight.W, l.Bias.W, tt.b, tt.inC, tt.inH, tt.inW, tt.outC, tt.k, tt.stride, tt.pad)
		if len(want) != len(y) {
			t.Fatalf("%s: OutSize %d, naive gives %d", name, len(y)/tt.b, len(want)/tt.b)
		}
		for i := range want {
			if math.Abs(float64(y[i])-want[i]) > 1e-4*(1+math.Abs(want[i])) {
				t.Fatalf("%s: y[%d] = %g, want %g", name, i, y[i], want[i])
			}
		}
	}
}

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// TestConvTransposeIsAdjoint checks ⟨conv(x), y⟩ = ⟨x, convT(y)⟩ with shared
// weights and zero biases, and that convT's output has conv's input shape.
func TestConvTransposeIsAdjoint(t *testing.T) {
	tests := []struct{ b, c, h, w, oc, k, stride, pad int }{
		{2, 1, 28, 28, 64, 4, 2, 1},
		{2, 64, 14, 14, 128, 4, 2, 1},
		{3, 3, 7, 7, 4, 3, 1, 1},
		{2, 2, 9, 7, 3, 3, 2, 0},
		{2, 2, 10, 13, 3, 5, 3, 2},
		{1, 3, 5, 5, 2, 1, 1, 0},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%+v", tt)
		rng := newRNG(6)
		conv := nn.NewConv2D("c", tt.c, tt.h, tt.w, tt.oc, tt.k, tt.stride, tt.pad, rng)
		oc, oh, ow := conv.OutShape()
		ct := nn.NewConvTranspose2D("t", oc, oh, ow, tt.c, tt.k, tt.stride, tt.pad, rng)
		if c, h, w := ct.OutShape(); c != tt.c || h != tt.h || w != tt.w {
			// Non-divisible sizes lose rows in conv; the adjoint then
			// covers the image only up to the last kernel reach.
			if (tt.h+2*tt.pad-tt.k)%tt.stride == 0 && (tt.w+2*tt.pad-tt.k)%tt.stride == 0 {
				t.Fatalf("%s: convT output %d×%d×%d, want %d×%d×%d", name, c, h, w, tt.c, tt.h, tt.w)
			}
			continue
		}
		copy(ct.Weight.W, conv.Weight.W)
		clear(conv.Bias.W)
		clear(ct.Bias.W)
		x := randSlice(rng, tt.b*conv.InSize())
		y := randSlice(rng, tt.b*conv.OutSize())
		cx := make([]float32, len(y))
		ty := make([]float32, len(x))
		conv.Forward(cx, x, tt.b)
		ct.Forward(ty, y, tt.b)
		lhs, rhs := dot(cx, y), dot(x, ty)
		if math.Abs(lhs-rhs) > 1e-4*(math.Abs(lhs)+math.Abs(rhs)+1) {
			t.Errorf("%s: ⟨conv x, y⟩ = %g, ⟨x, convT y⟩ = %g", name, lhs, rhs)
		}
		// And convT's Backward dx is conv's Forward (same weights).
		dx := make([]float32, len(y))
		ct.Backward(dx, x, tt.b)
		for i := range dx {
			if math.Abs(float64(dx[i]-cx[i])) > 1e-4*(1+math.Abs(float64(cx[i]))) {
				t.Fatalf("%s: convT.Backward dx[%d] = %g, conv.Forward = %g", name, i, dx[i], cx[i])
			}
		}
	}
}

func TestForwardHasBias(t *testing.T) {
	// Zero input: the output is the bias broadcast over positions.
	rng := newRNG(7)
	for _, l := range []interface {
		nn.Layer
		OutShape() (int, int, int)
	}{
		nn.NewConv2D("c", 2, 6, 6, 3, 3, 1, 1, rng),
		nn.NewConvTranspose2D("t", 2, 3, 3, 3, 4, 2, 1, rng),
	} {
		c, h, w := l.OutShape()
		y := make([]float32, 2*l.OutSize())
		l.Forward(y, make([]float32, 2*l.InSize()), 2)
		bias := l.Params()[1].W
		for i, v := range y {
			if want := bias[i/(h*w)%c]; v != want {
				t.Fatalf("%T: y[%d] = %g, want bias %g", l, i, v, want)
			}
		}
	}
}

func TestLinearMatchesNaive(t *testing.T) {
	rng := newRNG(8)
	l := nn.NewLinear("l", 9, 4, rng)
	x := randSlice(rng, 3*9)
	y := make([]float32, 3*4)
	l.Forward(y, x, 3)
	for i := 0; i < 3; i++ {
		for o := 0; o < 4; o++ {
			want := float64(l.Bias.W[o]) + dot(x[i*9:(i+1)*9], l.Weight.W[o*9:(o+1)*9])
			if math.Abs(float64(y[i*4+o])-want) > 1e-5 {
				t.Errorf("y[%d,%d] = %g, want %g", i, o, y[i*4+o], want)
			}
		}
	}
}

func TestActivationValues(t *testing.T) {
	x := []float32{-100, -3, -0.5, 0, 0.5, 3, 100}
	y := make([]float32, len(x))
	sig := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	tests := []struct {
		l nn.Layer
		f func(float64) float64
	}{
		{nn.NewSiLU(len(x)), func(v float64) float64 { return v * sig(v) }},
		{nn.NewReLU(len(x)), func(v float64) float64 { return math.Max(v, 0) }},
		{nn.NewSigmoid(len(x)), sig},
	}
	for _, tt := range tests {
		tt.l.Forward(y, x, 1)
		for i, v := range x {
			want := tt.f(float64(v))
			if math.Abs(float64(y[i])-want) > 1e-6*(1+math.Abs(want)) {
				t.Errorf("%T(%g) = %g, want %g", tt.l, v, y[i], want)
			}
		}
	}
}

// mustPanic runs f and checks it panics with a message starting "nn: " and
// containing want.
func mustPanic(t *testing.T, name, want string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		msg, ok := r.(string)
		if !ok || !strings.HasPrefix(msg, "nn: ") || !strings.Contains(msg, want) {
			t.Errorf("%s: panic %v, want an \"nn: …%s…\" message", name, r, want)
		}
	}()
	f()
}

func TestShapePanics(t *testing.T) {
	rng := newRNG(9)
	lin := nn.NewLinear("l", 3, 2, rng)
	seq := nn.NewSequential(nn.NewLinear("a", 3, 4, rng), nn.NewReLU(4))
	tests := []struct {
		name, want string
		f          func()
	}{
		{"Linear x", "len(x)", func() { lin.Forward(make([]float32, 2*2), make([]float32, 5), 2) }},
		{"Linear y", "len(y)", func() { lin.Forward(make([]float32, 3), make([]float32, 6), 2) }},
		{"negative b", "negative batch", func() { lin.Forward(nil, nil, -1) }},
		{"Backward before Forward", "before Forward", func() { nn.NewSiLU(2).Backward(nil, make([]float32, 2), 1) }},
		{"Backward batch", "Backward batch 1", func() {
			lin.Forward(make([]float32, 4), make([]float32, 6), 2)
			lin.Backward(nil, make([]float32, 2), 1)
		}},
		{"Linear dx", "len(dx)", func() {
			lin.Forward(make([]float32, 4), make([]float32, 6), 2)
			lin.Backward(make([]float32, 5), make([]float32, 4), 2)
		}},
		{"Sequential chain", "outputs 4", func() { nn.NewSequential(nn.NewLinear("a", 3, 4, rng), nn.NewReLU(5)) }},
		{"Sequential empty", "no layers", func() { nn.NewSequential() }},
		{"Sequential x", "len(x)", func() { seq.Forward(make([]float32, 5), 2) }},
		{"Conv2D x", "len(x)", func() {
			nn.NewConv2D("c", 1, 4, 4, 2, 3, 1, 1, rng).Forward(make([]float32, 2*32), make([]float32, 15), 1)
		}},
		{"Conv2D kernel", "larger than", func() { nn.NewConv2D("c", 1, 2, 2, 1, 5, 1, 0, rng) }},
		{"ConvTranspose2D size", "not positive", func() { nn.NewConvTranspose2D("c", 1, 1, 1, 1, 2, 1, 1, rng) }},
		{"NewLinear", "must be positive", func() { nn.NewLinear("l", 0, 2, rng) }},
		{"Bernoulli", "len(x)", func() { nn.BernoulliLogLik(make([]float32, 2), nil, make([]float32, 6), make([]float32, 5), nil, 2, 3) }},
		{"Categorical id", "class id", func() {
			nn.CategoricalLogLik(make([]float32, 1), nil, make([]float32, 4), []int32{0, 2}, nil, 1, 2, 2)
		}},
		{"Gaussian w", "len(w)", func() {
			nn.GaussianLogLik(make([]float32, 2), nil, make([]float32, 4), make([]float32, 4), 0, make([]float32, 3), 2, 2)
		}},
	}
	for _, tt := range tests {
		mustPanic(t, tt.name, tt.want, tt.f)
	}
}

func TestSequentialBuffers(t *testing.T) {
	rng := newRNG(10)
	s := nn.NewSequential(nn.NewLinear("a", 5, 6, rng), nn.NewSiLU(6), nn.NewLinear("b", 6, 2, rng))
	if got := nn.NumParams(s.Params()); got != 5*6+6+6*2+2 {
		t.Errorf("NumParams = %d", got)
	}
	// A smaller batch after a larger one reuses the buffers and agrees
	// with running the rows alone.
	x := randSlice(rng, 4*5)
	big := append([]float32(nil), s.Forward(x, 4)...)
	small := s.Forward(x[:2*5], 2)
	if len(small) != 2*2 {
		t.Fatalf("len(output) = %d, want 4", len(small))
	}
	for i := range small {
		if small[i] != big[i] {
			t.Fatalf("row-wise results differ: %v vs %v", small, big[:4])
		}
	}
	if dx := s.Backward(make([]float32, 4), 2, false); dx != nil {
		t.Errorf("Backward(needDX=false) returned %d values", len(dx))
	}
	if dx := s.Backward(make([]float32, 4), 2, true); len(dx) != 2*5 {
		t.Errorf("Backward(needDX=true) returned %d values, want 10", len(dx))
	}
	nn.ZeroGrad(s.Params())
	for _, p := range s.Params() {
		for _, g := range p.G {
			if g != 0 {
				t.Fatal("ZeroGrad left a nonzero gradient")
			}
		}
	}
}

func TestBackend(t *testing.T) {
	if b := nn.Backend(); b != "gonum" && b != "openblas" {
		t.Errorf("Backend() = %q", b)
	}
	t.Logf("backend %s", nn.Backend())
}
