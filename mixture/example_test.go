package mixture_test

import (
	"fmt"

	"github.com/serket-go/serket/mixture"
	"github.com/serket-go/serket/poe"
)

// One MMVAE training step for two modules, a batch of two rows and a 2-d
// latent, where the second module did not observe row 1: row 0 mixes both
// posteriors, row 1 has only the first.
func Example() {
	const b, d, beta = 2, 2, 1
	comps := []poe.Expert{
		{Mu: []float32{0.5, -1, 0, 0.2}, LogVar: []float32{-1, -1, 0, -2}},
		{Mu: []float32{0.4, -0.8, 3, 3}, LogVar: []float32{-0.5, -1.5, 0, 0}, Present: []bool{true, false}},
	}
	grads := make([]poe.ExpertGrad, len(comps))
	for k := range grads {
		grads[k] = poe.ExpertGrad{DMu: make([]float32, b*d), DLogVar: make([]float32, b*d)}
	}
	// Standard normal noise, fresh for each stratum (fixed here for the output).
	eps := [][]float32{{0.3, -1.1, 0.7, 0.2}, {-0.4, 0.9, 1.3, -0.6}}

	m := mixture.Mixture{B: b, D: d}
	z, g := make([]float32, b*d), make([]float32, b*d)
	w, pen := make([]float32, b), make([]float32, b)
	var elbo float64
	for r := range comps {
		m.Sample(z, eps[r], comps, r)
		m.Weights(w, comps, r)
		// The decoders would score z here, each row weighed by w; this
		// stand-in loglik is -|z|²/2 per row, so g = w·dloglik/dz = -w·z.
		for i, v := range z {
			g[i] = -w[i/d] * v
			elbo += float64(w[i/d]) * -0.5 * float64(v*v)
		}
		elbo -= beta * m.Penalty(pen, z, comps, r)
		m.Backward(grads, comps, z, g, eps[r], beta, r)
		fmt.Printf("stratum %d: weights %.2f, penalty %.3f\n", r, w, pen)
	}
	fmt.Printf("ELBO summed over rows: %.3f\n", elbo)
	fmt.Printf("module 1 dMu: %.3f (row 1 absent)\n", grads[1].DMu)
	// Output:
	// stratum 0: weights [0.50 1.00], penalty [1.566 1.017]
	// stratum 1: weights [0.50 0.00], penalty [0.461 0.000]
	// ELBO summed over rows: -3.161
	// module 1 dMu: [-0.388 1.226 0.000 0.000] (row 1 absent)
}
