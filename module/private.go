package module

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// A modality may keep a private latent beside the shared one
// (Spec.Private = P > 0), as MMVAE+ and DMVAE do: what only it can see
// (a handwriting's slant, a voice) need not crowd the latent every module
// must explain. Its encoder then writes rows of D + P (the shared D
// first) and its decoder reads rows of D + P. The SDK keeps the private
// part to itself, so the integrator and every other module see D only:
//
//   - it publishes the shared posterior;
//   - it decodes a term's latent with the private part drawn from its own
//     posterior when the latent was drawn from the module's posterior
//     among others (the term's subset has it, or for a mixture's stratum
//     bus.Term.From does: it reconstructs what it observed) and from the
//     prior N(0, I) when not (it generates from the others, as it does in
//     every inference; MMVAE+ draws it from an auxiliary prior of learned
//     scale instead);
//   - a term that drew it from the posterior adds −β KL(q(w|x) ‖ N(0, I))
//     to the module's objective, β being the step's (StepBegin.Beta), its
//     rows weighed as the term weighs them (presence, a mixture's row
//     weights), not by λ, as the integrator weighs the shared KL;
//   - Learn gets the gradient of the whole posterior: the shared columns
//     from the integrator, the private ones from the module's own terms.
//
// The integrator's logged ELBO leaves the private KL out.

// private is the SDK's side of a modality's private latent.
type private struct {
	d, p int
	seed uint64

	// A training step's: the whole posterior (B×(D+P)) and the gradient
	// Learn gets (its private columns summed over the step's terms); and
	// per term, its whole latent and gradient and its private noise (B×P),
	// kept from step to step.
	mu, lv, dmu, dlv []float32
	z, dz, eps       [][]float32

	pcg rand.PCG // the step's noise, reseeded each step: a step redone draws the same
	rng *rand.Rand
	gen rand.PCG // the prior's draws in inference
}

func newPrivate(d, p int, seed uint64) *private {
	pr := &private{d: d, p: p, seed: seed}
	pr.rng = rand.New(&pr.pcg)
	pr.gen.Seed(seed, 0x9e3779b97f4a7c15)
	return pr
}

// width is a whole row, shared and private.
func (pr *private) width() int { return pr.d + pr.p }

// begin readies the private latent for a step of b rows: the whole
// posterior's buffers and a zero private gradient.
func (pr *private) begin(b int, step uint64) {
	n := b * pr.width()
	pr.mu, pr.lv, pr.dmu, pr.dlv = grow(pr.mu, n), grow(pr.lv, n), grow(pr.dmu, n), grow(pr.dlv, n)
	clear(pr.dmu)
	clear(pr.dlv)
	pr.pcg.Seed(pr.seed, step)
}

// shared copies the shared columns of whole (n rows of D + P) into dst
// (n rows of D).
func (pr *private) shared(dst, whole []float32, n int) {
	w := pr.width()
	for r := range n {
		copy(dst[r*pr.d:(r+1)*pr.d], whole[r*w:r*w+pr.d])
	}
}

// padPrior is z (n rows of D) with a private part drawn from the prior,
// for the decoder: what the module generates from the others.
func (pr *private) padPrior(z []float32, n int) ([]float32, error) {
	if len(z) != n*pr.d {
		return nil, fmt.Errorf("%d latent values for %d rows of %d", len(z), n, pr.d)
	}
	w := pr.width()
	out := make([]float32, n*w)
	rng := rand.New(&pr.gen)
	for r := range n {
		copy(out[r*w:], z[r*pr.d:(r+1)*pr.d])
		for j := pr.d; j < w; j++ {
			out[r*w+j] = float32(rng.NormFloat64())
		}
	}
	return out, nil
}

// termLatent readies the k-th term of the step's decode (b rows): its
// whole latent, z with the private part from the posterior if own, else
// from the prior, and a zero gradient for the decoder to fill. They are
// pr's storage, kept until the step's next call for term k. Terms draw
// their noise in the order they are readied.
func (pr *private) termLatent(k int, z []float32, b int, own bool) (whole, dwhole []float32) {
	w := pr.width()
	for len(pr.z) <= k {
		pr.z, pr.dz, pr.eps = append(pr.z, nil), append(pr.dz, nil), append(pr.eps, nil)
	}
	pr.z[k], pr.dz[k], pr.eps[k] = grow(pr.z[k], b*w), grow(pr.dz[k], b*w), grow(pr.eps[k], b*pr.p)
	zk, eps := pr.z[k], pr.eps[k]
	clear(pr.dz[k])
	for r := range b {
		copy(zk[r*w:], z[r*pr.d:(r+1)*pr.d])
		for j := range pr.p {
			e := float32(pr.rng.NormFloat64())
			eps[r*pr.p+j] = e
			i := r*w + pr.d + j
			if own {
				e = pr.mu[i] + float32(math.Exp(0.5*float64(pr.lv[i])))*e
			}
			zk[i] = e
		}
	}
	return zk, pr.dz[k]
}

// termBackward takes the k-th term's decoder gradient (whole rows, as the
// decoder left it in termLatent's dwhole) back: its shared columns into dz
// (b rows of D), and, for an own term, its private ones through the draw
// into the posterior's gradient, with the term's KL weighed per row by
// kl[r] (β/B times the row's weight).
func (pr *private) termBackward(k int, dz []float32, b int, own bool, kl []float32) {
	pr.shared(dz, pr.dz[k], b)
	if !own {
		return
	}
	w := pr.width()
	dzk, eps := pr.dz[k], pr.eps[k]
	for r := range b {
		for j := range pr.p {
			i := r*w + pr.d + j
			sigma := float32(math.Exp(0.5 * float64(pr.lv[i])))
			g := dzk[i]
			pr.dmu[i] += g - kl[r]*pr.mu[i]
			pr.dlv[i] += 0.5*g*eps[r*pr.p+j]*sigma - kl[r]*0.5*(sigma*sigma-1)
		}
	}
}

// learnGrads are the whole posterior's gradient for Learn (pr's storage):
// the integrator's for the shared columns, the step's own for the private.
func (pr *private) learnGrads(dmu, dlv []float32, b int) ([]float32, []float32) {
	w := pr.width()
	for r := range b {
		copy(pr.dmu[r*w:r*w+pr.d], dmu[r*pr.d:(r+1)*pr.d])
		copy(pr.dlv[r*w:r*w+pr.d], dlv[r*pr.d:(r+1)*pr.d])
	}
	return pr.dmu, pr.dlv
}

// encodeShared writes x's shared posterior into mu and logvar (x.Len()
// rows of D): Encode's, whose private part, if any, stays here.
func (r *runner) encodeShared(x Batch, mu, logvar []float32) error {
	if r.priv == nil {
		return r.m.Encode(x, mu, logvar)
	}
	n, w := x.Len(), r.priv.width()
	wmu, wlv := make([]float32, n*w), make([]float32, n*w)
	if err := r.m.Encode(x, wmu, wlv); err != nil {
		return err
	}
	r.priv.shared(mu, wmu, n)
	r.priv.shared(logvar, wlv, n)
	return nil
}

// whole is z (n rows of D) as the modality's decoder takes it: itself, or
// with a private part drawn from the prior.
func (r *runner) whole(z []float32, n int) ([]float32, error) {
	if r.priv == nil {
		return z, nil
	}
	return r.priv.padPrior(z, n)
}
