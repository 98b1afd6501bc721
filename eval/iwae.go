package eval

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
)

// IWAEConfig sets an importance-sampled likelihood estimate.
type IWAEConfig struct {
	K    int    // latent samples per item; default 1000
	Seed uint64 // default 1
}

// IWAE estimates, for every item of the batches, log p(x_T) for the
// modalities T of targets by importance sampling (Burda et al. 2016) with
// K latents from the proposal q(z | x_P), the product of the experts of the
// proposal modalities P and the N(0, I) prior:
//
//	log p̂(x_T) = log (1/K) Σ_k exp(Σ_{m∈T} log p(x_m|z_k) + log N(z_k; 0, I) − log q(z_k|x_P)).
//
// Its expectation is a lower bound on log p(x_T) that tightens as K grows,
// and it is exact for any K when q is the true posterior p(z | x_T).
// Log-likelihoods come from the modality's Scorer when it has one, else from
// Decode (whose gradients are discarded). Every target's batch must be a
// module.Picker.
func IWAE(mods map[string]module.Modality, proposal, targets []string, batches map[string]module.Batch, d int, cfg IWAEConfig) ([]float64, error) {
	if cfg.K == 0 {
		cfg.K = 1000
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if len(proposal) == 0 || len(targets) == 0 {
		return nil, errors.New("eval: IWAE needs proposal and target modalities")
	}
	n := -1
	for _, name := range append(append([]string(nil), proposal...), targets...) {
		if mods[name] == nil || batches[name] == nil {
			return nil, fmt.Errorf("eval: IWAE: no modality or batch %q", name)
		}
		if l := batches[name].Len(); n >= 0 && l != n {
			return nil, fmt.Errorf("eval: IWAE: %s has %d items, another modality %d", name, l, n)
		} else {
			n = l
		}
	}
	for _, name := range targets {
		if _, ok := batches[name].(module.Picker); !ok {
			return nil, fmt.Errorf("eval: IWAE: %s's batches (%T) cannot be picked from (module.Picker)", name, batches[name])
		}
	}
	var experts []integrator.Expert
	for _, name := range proposal {
		mu, lv := make([]float32, n*d), make([]float32, n*d)
		if err := mods[name].Encode(batches[name], mu, lv); err != nil {
			return nil, fmt.Errorf("eval: %s: %w", name, err)
		}
		experts = append(experts, integrator.Expert{Mu: mu, LogVar: lv})
	}
	var q integrator.Fused
	q.Fuse(experts, n, d)

	k := cfg.K
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x1a4e))
	z := make([]float32, k*d)
	logw, ll := make([]float64, k), make([]float32, k)
	var w, dz []float32
	rows := make([]int, k)
	out := make([]float64, n)
	half := 0.5 * math.Log(2*math.Pi)
	for i := range n {
		for r := range rows {
			rows[r] = i
		}
		for s := range k {
			var lw float64
			for j := range d {
				e := rng.NormFloat64()
				mu, lv := float64(q.Mu[i*d+j]), float64(q.LogVar[i*d+j])
				v := mu + math.Exp(0.5*lv)*e
				z[s*d+j] = float32(v)
				// log N(z; 0, 1) − log q(z) for this coordinate.
				lw += -0.5*v*v - half - (-0.5*e*e - half - 0.5*lv)
			}
			logw[s] = lw
		}
		for _, name := range targets {
			m := mods[name]
			x := batches[name].(module.Picker).Pick(rows)
			var err error
			if sc, ok := m.(module.Scorer); ok {
				err = sc.LogLik(z, x, ll)
			} else {
				if w == nil {
					w, dz = make([]float32, k), make([]float32, k*d)
					for r := range w {
						w[r] = 1
					}
				}
				err = m.Decode(z, x, w, ll, dz)
				if l, ok := m.(module.Learner); ok {
					l.Discard()
				}
			}
			if err != nil {
				return nil, fmt.Errorf("eval: %s: %w", name, err)
			}
			for s, v := range ll {
				logw[s] += float64(v)
			}
		}
		out[i] = logMeanExp(logw)
		if math.IsNaN(out[i]) || math.IsInf(out[i], 0) {
			return nil, fmt.Errorf("eval: IWAE of item %d is %v: the model's outputs are not finite", i, out[i])
		}
	}
	return out, nil
}

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
