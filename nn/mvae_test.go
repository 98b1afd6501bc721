package nn_test

import (
	"math"
	"math/rand/v2"

	"github.com/serket-go/serket/nn"
)

// mvaeImage is the MVAE paper's Fashion-MNIST encoder and decoder with one
// ELBO training step (Bernoulli pixels, Gaussian posterior, standard normal
// prior), written the way a vision module uses nn.
type mvaeImage struct {
	enc, dec *nn.Sequential
	opt      *nn.Adam
	b        int
	x        []float32 // b×784 pixels in [0,1]
	eps      []float32 // b×64 reparameterisation noise
	z, dh    []float32 // b×64 latent, b×128 gradient of (mu, logvar)
	ll, dlog []float32
}

const (
	mvaeIn     = 784
	mvaeHidden = 512
	mvaeLatent = 64
)

func newMVAEImage(b int, rng *rand.Rand) *mvaeImage {
	enc := nn.NewSequential(
		nn.NewLinear("enc.0", mvaeIn, mvaeHidden, rng), nn.NewSiLU(mvaeHidden),
		nn.NewLinear("enc.2", mvaeHidden, mvaeHidden, rng), nn.NewSiLU(mvaeHidden),
		nn.NewLinear("enc.4", mvaeHidden, 2*mvaeLatent, rng))
	dec := nn.NewSequential(
		nn.NewLinear("dec.0", mvaeLatent, mvaeHidden, rng), nn.NewSiLU(mvaeHidden),
		nn.NewLinear("dec.2", mvaeHidden, mvaeHidden, rng), nn.NewSiLU(mvaeHidden),
		nn.NewLinear("dec.4", mvaeHidden, mvaeHidden, rng), nn.NewSiLU(mvaeHidden),
		nn.NewLinear("dec.6", mvaeHidden, mvaeIn, rng))
	m := &mvaeImage{enc: enc, dec: dec, b: b,
		x: make([]float32, b*mvaeIn), eps: make([]float32, b*mvaeLatent),
		z: make([]float32, b*mvaeLatent), dh: make([]float32, b*2*mvaeLatent),
		ll: make([]float32, b), dlog: make([]float32, b*mvaeIn)}
	m.opt = nn.NewAdam(append(enc.Params(), dec.Params()...), 1e-3)
	m.opt.Maximize = true
	for i := range m.x {
		m.x[i] = rng.Float32()
	}
	for i := range m.eps {
		m.eps[i] = float32(rng.NormFloat64())
	}
	return m
}

// flopsPerSample counts the multiply-adds ×2 of one forward and backward
// pass (the first layer needs no input gradient).
func (m *mvaeImage) flopsPerSample() float64 {
	var f float64
	for i, s := range []*nn.Sequential{m.enc, m.dec} {
		for j, l := range s.Layers() {
			if lin, ok := l.(*nn.Linear); ok {
				mac := float64(lin.InSize() * lin.OutSize())
				f += 2 * 3 * mac
				if i == 0 && j == 0 {
					f -= 2 * mac
				}
			}
		}
	}
	return f
}

// step runs one ELBO ascent step and returns the batch ELBO.
func (m *mvaeImage) step() float64 {
	b, L := m.b, mvaeLatent
	h := m.enc.Forward(m.x, b)
	for i := 0; i < b; i++ {
		for j := 0; j < L; j++ {
			mu, lv := h[i*2*L+j], h[i*2*L+L+j]
			m.z[i*L+j] = mu + float32(math.Exp(0.5*float64(lv)))*m.eps[i*L+j]
		}
	}
	logits := m.dec.Forward(m.z, b)
	nn.BernoulliLogLik(m.ll, m.dlog, logits, m.x, nil, b, mvaeIn)
	dz := m.dec.Backward(m.dlog, b, true)
	var elbo float64
	for i := 0; i < b; i++ {
		elbo += float64(m.ll[i])
		for j := 0; j < L; j++ {
			mu, lv := h[i*2*L+j], h[i*2*L+L+j]
			ev := float32(math.Exp(float64(lv)))
			elbo -= 0.5 * float64(ev+mu*mu-1-lv) // KL to N(0, I)
			g := dz[i*L+j]
			m.dh[i*2*L+j] = g - mu
			m.dh[i*2*L+L+j] = g*m.eps[i*L+j]*0.5*float32(math.Sqrt(float64(ev))) - 0.5*(ev-1)
		}
	}
	m.enc.Backward(m.dh, b, false)
	m.opt.Step()
	nn.ZeroGrad(m.enc.Params())
	nn.ZeroGrad(m.dec.Params())
	return elbo / float64(b)
}
