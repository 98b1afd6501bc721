package nn_test

import (
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/serket-go/serket/nn"
)

// BenchmarkGemm times the three products of a 784→512 Linear layer at
// b=100 through blas32: forward y = x Wᵀ, weight gradient dyᵀ x, and input
// gradient dy W.
func BenchmarkGemm(b *testing.B) {
	const m, k, n = 100, 784, 512
	rng := newRNG(40)
	x := randSlice(rng, m*k)
	w := randSlice(rng, n*k)
	y := randSlice(rng, m*n)
	gw := make([]float32, n*k)
	dx := make([]float32, m*k)
	X := blas32.General{Rows: m, Cols: k, Stride: k, Data: x}
	W := blas32.General{Rows: n, Cols: k, Stride: k, Data: w}
	Y := blas32.General{Rows: m, Cols: n, Stride: n, Data: y}
	GW := blas32.General{Rows: n, Cols: k, Stride: k, Data: gw}
	DX := blas32.General{Rows: m, Cols: k, Stride: k, Data: dx}
	cases := []struct {
		name string
		f    func()
	}{
		{"forward", func() { blas32.Gemm(blas.NoTrans, blas.Trans, 1, X, W, 0, Y) }},
		{"dW", func() { blas32.Gemm(blas.Trans, blas.NoTrans, 1, Y, X, 1, GW) }},
		{"dx", func() { blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, Y, W, 0, DX) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.f()
			}
			b.ReportMetric(2*m*k*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkMLPStep times one ELBO step of the MVAE image encoder and
// decoder (forward, backward, Adam) at b=100.
func BenchmarkMLPStep(b *testing.B) {
	const batch = 100
	m := newMVAEImage(batch, newRNG(41))
	m.step()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m.step()
	}
	s := b.Elapsed().Seconds()
	b.ReportMetric(batch*float64(b.N)/s, "samples/s")
	b.ReportMetric(m.flopsPerSample()*batch*float64(b.N)/s/1e9, "GFLOP/s")
	b.ReportMetric(0, "ns/op") // samples/s says it; keep the table narrow
}

// BenchmarkAdam times one Adam step over the MVAE image model's parameters.
func BenchmarkAdam(b *testing.B) {
	m := newMVAEImage(1, newRNG(42))
	ps := append(m.enc.Params(), m.dec.Params()...)
	for _, p := range ps {
		copy(p.G, randSlice(newRNG(43), len(p.G)))
	}
	opt := nn.NewAdam(ps, 1e-3)
	n := nn.NumParams(ps)
	b.ReportAllocs()
	for b.Loop() {
		opt.Step()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mparams/s")
}

// BenchmarkConvStep times forward and backward of the MVAE conv encoder
// and transposed-conv decoder stacks at b=100.
func BenchmarkConvStep(b *testing.B) {
	const batch = 100
	rng := newRNG(44)
	s := nn.NewSequential(
		nn.NewConv2D("e.0", 1, 28, 28, 64, 4, 2, 1, rng), nn.NewSiLU(64*14*14),
		nn.NewConv2D("e.2", 64, 14, 14, 128, 4, 2, 1, rng), nn.NewSiLU(128*7*7),
		nn.NewConvTranspose2D("d.0", 128, 7, 7, 64, 4, 2, 1, rng), nn.NewSiLU(64*14*14),
		nn.NewConvTranspose2D("d.2", 64, 14, 14, 1, 4, 2, 1, rng))
	x := randSlice(rng, batch*784)
	dy := randSlice(rng, batch*784)
	s.Forward(x, batch)
	s.Backward(dy, batch, false)
	b.ReportAllocs()
	for b.Loop() {
		s.Forward(x, batch)
		s.Backward(dy, batch, false)
	}
	b.ReportMetric(batch*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkBernoulliLogLik times the vision likelihood and its gradient at
// b=100.
func BenchmarkBernoulliLogLik(b *testing.B) {
	const batch, n = 100, 784
	rng := newRNG(45)
	logits := randSlice(rng, batch*n)
	x := make([]float32, batch*n)
	for i := range x {
		x[i] = rng.Float32()
	}
	ll := make([]float32, batch)
	dl := make([]float32, batch*n)
	b.ReportAllocs()
	for b.Loop() {
		nn.BernoulliLogLik(ll, dl, logits, x, nil, batch, n)
	}
	b.ReportMetric(batch*n*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
}

// BenchmarkSiLU times forward and backward of a 512-wide SiLU at b=100.
func BenchmarkSiLU(b *testing.B) {
	const batch, n = 100, 512
	a := nn.NewSiLU(n)
	x := randSlice(newRNG(46), batch*n)
	y := make([]float32, batch*n)
	dx := make([]float32, batch*n)
	b.ReportAllocs()
	for b.Loop() {
		a.Forward(y, x, batch)
		a.Backward(dx, y, batch)
	}
	b.ReportMetric(batch*n*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
}
