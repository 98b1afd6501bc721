package eval

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/serket-go/serket/aggregate"
)

// iwaeLatents is about how many latents one request to a module scores:
// several items' K latents when K is small, since a module's GEMMs run a
// batch of 100 rows at a fraction of their speed at 1000. The draws are
// made item after item, so it changes no estimate (a variable so that a
// test can show that).
var iwaeLatents = 10000

// likelihoods estimates log p(x) of every module with items and, leaving
// out each in turn, log p(the others).
func (p *Pipeline) likelihoods(ctx context.Context, r *Result, cfg Config, t *tracker) error {
	ids, _, err := p.Labels.Split("test", cfg.IWAEItems)
	if err != nil {
		return err
	}
	all := p.withItems()
	n, k := len(ids), len(all)
	t.start(PhaseLikelihoods, fmt.Sprintf("IWAE, K = %d, %d items", cfg.IWAEK, n), "item decodings", n*k*k)
	before := 0
	pass := func(subset []string) ([]float64, error) {
		from := before
		before += n * len(subset)
		return p.IWAE(ctx, subset, ids, cfg.IWAEK, cfg.Seed, func(done int) { t.set(from + done*len(subset)) })
	}
	joint, err := pass(all)
	if err != nil {
		return err
	}
	r.LogPX, r.IWAEK, r.IWAEItems = mean64(joint), cfg.IWAEK, n
	if k > 1 {
		for _, left := range all {
			marg, err := pass(slices.DeleteFunc(slices.Clone(all), func(s string) bool { return s == left }))
			if err != nil {
				return err
			}
			r.LogPMarg[left] = mean64(marg)
			r.LogPCond[left] = r.LogPX - r.LogPMarg[left]
		}
	}
	t.finish()
	return nil
}

// IWAE estimates, for each of the items, log p(x_S) for the modules S of
// subset by importance sampling (Burda et al. 2016) with k latents from the
// proposal q(z | x_S), the product of their posteriors and the N(0, I)
// prior:
//
//	log p̂(x_S) = log (1/K) Σ_k exp(Σ_{m∈S} log p(x_m|z_k) + log N(z_k; 0, I) − log q(z_k|x_S)).
//
// Its expectation is a lower bound on log p(x_S) that tightens as K grows,
// and it is exact for any K when q is the true posterior. The modules score
// their own items (…score.<module>). progress, if set, is told how many
// items are done.
func (p *Pipeline) IWAE(ctx context.Context, subset []string, ids []uint64, k int, seed uint64, progress func(int)) ([]float64, error) {
	if len(subset) == 0 || k < 1 {
		return nil, fmt.Errorf("eval: IWAE of modules %v with K = %d", subset, k)
	}
	post, err := p.encodeAll(ctx, subset, ids)
	if err != nil {
		return nil, err
	}
	d, rng := p.Latent, rand.New(rand.NewPCG(seed, 0x1a4e))
	q := p.plain(post, subset, len(ids))
	out := make([]float64, len(ids))
	per := max(1, iwaeLatents/k)
	for lo := 0; lo < len(ids); lo += per {
		hi := min(lo+per, len(ids))
		z, logw := proposalDraws(q, lo, hi, k, d, rng)
		for _, name := range subset {
			ll, err := p.Module(name).Score(ctx, ids[lo:hi], z, k)
			if err != nil {
				return nil, err
			}
			for r, v := range ll {
				logw[r] += float64(v)
			}
		}
		for i := lo; i < hi; i++ {
			out[i] = logMeanExp(logw[(i-lo)*k : (i-lo+1)*k])
			if math.IsNaN(out[i]) || math.IsInf(out[i], 0) {
				return nil, fmt.Errorf("eval: IWAE of item %d is %v: the model's outputs are not finite", ids[i], out[i])
			}
		}
		if progress != nil {
			progress(hi)
		}
	}
	return out, nil
}

// proposalDraws draws k latents from q for each item in [lo, hi) and
// returns them ((hi−lo)·k×d) with their log prior − log proposal.
func proposalDraws(q aggregate.Posterior, lo, hi, k, d int, rng *rand.Rand) ([]float32, []float64) {
	half := 0.5 * math.Log(2*math.Pi)
	z, logw := make([]float32, (hi-lo)*k*d), make([]float64, (hi-lo)*k)
	for i := lo; i < hi; i++ {
		for r := range k {
			row := (i-lo)*k + r
			zr := z[row*d : (row+1)*d]
			lw := -q.Draw(zr, i, rng)
			for _, v := range zr {
				lw += -0.5*float64(v)*float64(v) - half
			}
			logw[row] = lw
		}
	}
	return z, logw
}

// logMeanExp is log (1/n) Σ exp(x_i), computed without overflow.
func logMeanExp(x []float64) float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = math.Max(mx, v)
	}
	var s float64
	for _, v := range x {
		s += math.Exp(v - mx)
	}
	return mx + math.Log(s/float64(len(x)))
}
