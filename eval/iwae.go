package eval

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/poe"
)

// IWAEConfig sets an importance-sampled likelihood estimate.
type IWAEConfig struct {
	K    int    // latent samples per item; default 1000
	Seed uint64 // default 1
	// Progress, if set, is told how many items are done, every few items.
	Progress func(items int)
}

// iwaeRows is how many latents IWAE decodes per forward pass: one item's
// when K is large, several items' when it is small, since a pass of 100
// rows runs the decoders' GEMMs at a fraction of their speed at 1000. A
// variable so that a test can show that it changes no estimate.
var iwaeRows = 1000

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
	if cfg.K < 0 {
		return nil, fmt.Errorf("eval: IWAE with K = %d samples, want at least 1", cfg.K)
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
	var experts []poe.Expert
	for _, name := range proposal {
		mu, lv := make([]float32, n*d), make([]float32, n*d)
		if err := mods[name].Encode(batches[name], mu, lv); err != nil {
			return nil, fmt.Errorf("eval: %s: %w", name, err)
		}
		experts = append(experts, poe.Expert{Mu: mu, LogVar: lv})
	}
	var q poe.Fused
	q.Fuse(experts, n, d)
	s := newIWAEScratch(cfg.K, d, n, cfg.Seed)
	out := make([]float64, n)
	for lo := 0; lo < n; lo += s.items {
		hi := min(lo+s.items, n)
		s.logWeights(&q, lo, hi)
		for _, name := range targets {
			if err := s.addLogLik(mods[name], batches[name], hi-lo); err != nil {
				return nil, fmt.Errorf("eval: %s: %w", name, err)
			}
		}
		for i := lo; i < hi; i++ {
			out[i] = logMeanExp(s.logw[(i-lo)*s.k : (i-lo+1)*s.k])
			if math.IsNaN(out[i]) || math.IsInf(out[i], 0) {
				return nil, fmt.Errorf("eval: IWAE of item %d is %v: the model's outputs are not finite", i, out[i])
			}
		}
		if cfg.Progress != nil {
			cfg.Progress(hi)
		}
	}
	return out, nil
}

// iwaeScratch holds one forward pass of IWAE: K latents for each of a few
// items, their log importance weights, and the rows of the batch they
// score.
type iwaeScratch struct {
	k, d, items int
	rng         *rand.Rand
	z           []float32
	logw        []float64
	ll, w, dz   []float32
	rows        []int
}

func newIWAEScratch(k, d, n int, seed uint64) *iwaeScratch {
	items := max(1, min(n, iwaeRows/k))
	return &iwaeScratch{k: k, d: d, items: items, rng: rand.New(rand.NewPCG(seed, 0x1a4e)),
		z: make([]float32, items*k*d), logw: make([]float64, items*k), ll: make([]float32, items*k), rows: make([]int, items*k)}
}

// logWeights draws K latents from q for each item in [lo, hi), item after
// item (the same draws whatever the pass size), and sets their log
// prior − log proposal.
func (s *iwaeScratch) logWeights(q *poe.Fused, lo, hi int) {
	d, half := s.d, 0.5*math.Log(2*math.Pi)
	for i := lo; i < hi; i++ {
		for r := range s.k {
			row := (i-lo)*s.k + r
			s.rows[row] = i
			var lw float64
			for j := range d {
				e := s.rng.NormFloat64()
				mu, lv := float64(q.Mu[i*d+j]), float64(q.LogVar[i*d+j])
				v := mu + math.Exp(0.5*lv)*e
				s.z[row*d+j] = float32(v)
				// log N(z; 0, 1) − log q(z) for this coordinate.
				lw += -0.5*v*v - half - (-0.5*e*e - half - 0.5*lv)
			}
			s.logw[row] = lw
		}
	}
}

// addLogLik adds log p(x_m | z) of the pass's items to their weights.
// Decode stands in for a modality without a Scorer; its gradients are
// discarded.
func (s *iwaeScratch) addLogLik(m module.Modality, b module.Batch, items int) error {
	rows := items * s.k
	z, ll := s.z[:rows*s.d], s.ll[:rows]
	x := b.(module.Picker).Pick(s.rows[:rows])
	var err error
	if sc, ok := m.(module.Scorer); ok {
		err = sc.LogLik(z, x, ll)
	} else {
		if s.w == nil {
			s.w, s.dz = make([]float32, len(s.ll)), make([]float32, len(s.z))
			for r := range s.w {
				s.w[r] = 1
			}
		}
		err = m.Decode(z, x, s.w[:rows], ll, s.dz[:rows*s.d])
		if l, ok := m.(module.Learner); ok {
			l.Discard()
		}
	}
	if err != nil {
		return err
	}
	for r, v := range ll {
		s.logw[r] += float64(v)
	}
	return nil
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
