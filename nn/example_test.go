package nn_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/serket-go/serket/nn"
)

// A decoder trained to maximise the Bernoulli log-likelihood of a batch of
// images: the shape of every serket modality's training step.
func Example() {
	const b, latent, pixels = 8, 4, 16
	rng := rand.New(rand.NewPCG(1, 2))
	dec := nn.NewSequential(
		nn.NewLinear("dec.0", latent, 32, rng), nn.NewSiLU(32),
		nn.NewLinear("dec.2", 32, pixels, rng))
	opt := nn.NewAdam(dec.Params(), 1e-2)
	opt.Maximize = true // log-likelihoods are maximised

	z := make([]float32, b*latent)
	x := make([]float32, b*pixels)
	for i := range z {
		z[i] = float32(rng.NormFloat64())
	}
	for i := range x {
		x[i] = float32(i % 2)
	}
	ll := make([]float32, b)
	dlogits := make([]float32, b*pixels)
	mean := func() float32 {
		var s float32
		for _, v := range ll {
			s += v
		}
		return s / b
	}

	var first float32
	for step := range 200 {
		logits := dec.Forward(z, b)
		nn.BernoulliLogLik(ll, dlogits, logits, x, nil, b, pixels)
		if step == 0 {
			first = mean()
		}
		nn.ZeroGrad(dec.Params())
		dec.Backward(dlogits, b, false)
		opt.Step()
	}
	fmt.Println("params:", nn.NumParams(dec.Params()))
	fmt.Println("log-likelihood rose:", mean() > first)
	fmt.Println("near perfect:", mean() > -0.5)
	// Output:
	// params: 688
	// log-likelihood rose: true
	// near perfect: true
}
