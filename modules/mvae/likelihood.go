package mvae

import (
	"math"

	"github.com/serket-go/serket/nn"
)

// Likelihood is a decoder's distribution p(x|z): what its output means.
type Likelihood interface {
	// Name is the likelihood as module.Spec gives it ("gaussian", …).
	Name() string
	// LogLik writes ll[i] = log p(x_i | out_i) for the decoder's output
	// out (b×Out, b = x.Len()) and, unless dout is nil, the gradient of
	// Σ_i w[i]·ll[i] with respect to out into dout (b×Out). A nil w
	// weighs every row 1; a row with w[i] = 0 gets ll[i] = 0 and a zero
	// dout row (package nn's log-likelihoods, which these are, say so).
	LogLik(ll, dout, out []float32, x Batch, w []float32)
	// Mean writes the distribution's mean at the decoder's output out
	// into dst (both of the output's size): what a generation looks like,
	// in the space of the batch's input values (module.Featurer).
	Mean(dst, out []float32)
}

// Bernoulli is independent Bernoulli distributions on the batch's input
// values, intensities in [0, 1]; the decoder's outputs are their logits.
type Bernoulli struct{}

// Name implements Likelihood.
func (Bernoulli) Name() string { return "bernoulli" }

// LogLik implements Likelihood.
func (Bernoulli) LogLik(ll, dout, out []float32, x Batch, w []float32) {
	b := x.Len()
	nn.BernoulliLogLik(ll, dout, out, x.Input(), w, b, width(out, b))
}

// Mean implements Likelihood: the intensities, sigmoid(out).
func (Bernoulli) Mean(dst, out []float32) {
	for i, v := range out {
		dst[i] = float32(1 / (1 + math.Exp(-float64(v))))
	}
}

// Gaussian is independent Gaussians around the decoder's outputs, of one
// fixed log-variance, on the batch's input values (normalised ones, so that
// a unit variance fits every feature alike).
type Gaussian struct{ LogVar float32 }

// Name implements Likelihood.
func (Gaussian) Name() string { return "gaussian" }

// LogLik implements Likelihood.
func (g Gaussian) LogLik(ll, dout, out []float32, x Batch, w []float32) {
	b := x.Len()
	nn.GaussianLogLik(ll, dout, out, x.Input(), g.LogVar, w, b, width(out, b))
}

// Mean implements Likelihood: the outputs themselves.
func (Gaussian) Mean(dst, out []float32) { copy(dst, out) }

// width is the values per row of a b-row output (none of none).
func width(out []float32, b int) int {
	if b == 0 {
		return 0
	}
	return len(out) / b
}
