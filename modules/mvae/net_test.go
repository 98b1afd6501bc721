package mvae_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/serket-go/serket/modules/mvae"
)

// TestBackwardEncoder: BackwardEncoder leaves G holding the gradient of
// Σ dmu·mu + Σ dlogvar·logvar with respect to the encoder's parameters (by
// finite differences, so that a mean and a log-variance swapped in the
// encoder's output would show), changes no W, and is what Learn steps
// along: Adam's first step is lr·g/(|g| + ε) on each parameter.
func TestBackwardEncoder(t *testing.T) {
	const b, eps, lr = 3, 0.5, 1e-2
	cfg := mvae.Config{Latent: 2, Hidden: 5, In: 4, Out: 4, LR: lr, AdamEps: eps, Seed: 7}
	rng := rand.New(rand.NewPCG(1, 2))
	x, dmu, dlv := randn(rng, b*cfg.In), randn(rng, b*cfg.Latent), randn(rng, b*cfg.Latent)
	net, twin := newNet(t, cfg), newNet(t, cfg)
	// objective is Σ dmu·mu + Σ dlv·logvar at the encoder's current
	// weights, in float64.
	objective := func() float64 {
		mu, lv := make([]float32, b*cfg.Latent), make([]float32, b*cfg.Latent)
		net.Encode(x, b, mu, lv)
		var f float64
		for i := range mu {
			f += float64(dmu[i])*float64(mu[i]) + float64(dlv[i])*float64(lv[i])
		}
		return f
	}
	objective()
	var before [][]float32
	for _, p := range net.Params() {
		before = append(before, slices.Clone(p.W))
	}
	if err := net.BackwardEncoder(dmu, dlv); err != nil {
		t.Fatal(err)
	}
	for k, p := range net.Params() {
		if !slices.Equal(p.W, before[k]) {
			t.Fatalf("BackwardEncoder changed %s", p.Name)
		}
	}
	const h = 1e-2
	for _, p := range net.Params()[:2*(net.Config().EncLayers+1)] {
		for _, i := range []int{0, len(p.W) / 2, len(p.W) - 1} {
			w := p.W[i]
			p.W[i] = w + h
			up := objective()
			p.W[i] = w - h
			down := objective()
			p.W[i] = w
			if fd := (up - down) / (2 * h); math.Abs(fd-float64(p.G[i])) > 1e-3*(1+math.Abs(fd)) {
				t.Errorf("%s[%d]: gradient %v, finite differences %v", p.Name, i, p.G[i], fd)
			}
		}
	}
	mu, lv := make([]float32, b*cfg.Latent), make([]float32, b*cfg.Latent)
	twin.Encode(x, b, mu, lv)
	if err := twin.Learn(dmu, dlv); err != nil {
		t.Fatal(err)
	}
	for k, p := range twin.Params() {
		g := net.Params()[k].G
		for i, w := range p.W {
			want := float64(before[k][i]) + lr*float64(g[i])/(math.Abs(float64(g[i]))+eps)
			if math.Abs(float64(w)-want) > 1e-6 {
				t.Fatalf("%s[%d]: Learn moved it to %v, want %v along BackwardEncoder's gradient %v", p.Name, i, w, want, g[i])
			}
		}
	}
	if err := net.BackwardEncoder(dmu[1:], dlv); err == nil {
		t.Error("BackwardEncoder with too few gradients succeeded")
	}
}

func newNet(t *testing.T, cfg mvae.Config) *mvae.Net {
	t.Helper()
	n, err := mvae.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func randn(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}
