package eval

import (
	"context"
	"math/rand/v2"

	"github.com/serket-go/serket/poe"
)

// The measures of a Pipeline: coherence between every subset of its modules
// and every module a judge can tell the class of; importance-sampled
// likelihoods; and the latent's linear probes and clusters. Each fuses the
// modules' posteriors itself (package poe), as the integrator does.

// posteriors are the modules' posteriors of a set of items, by module.
type posteriors map[string]poe.Expert

// encodeAll asks each of the modules for its posterior of the items.
func (p *Pipeline) encodeAll(ctx context.Context, names []string, ids []uint64) (posteriors, error) {
	out := posteriors{}
	for _, name := range names {
		mu, lv, present, err := p.Module(name).Encode(ctx, ids)
		if err != nil {
			return nil, err
		}
		out[name] = poe.Expert{Mu: mu, LogVar: lv, Present: present}
	}
	return out, nil
}

// fuse is the product of the subset's experts and the prior, for n items.
func (ps posteriors) fuse(subset []string, n, d int) *poe.Fused {
	experts := make([]poe.Expert, len(subset))
	for i, name := range subset {
		experts[i] = ps[name]
	}
	f := new(poe.Fused)
	f.Fuse(experts, n, d)
	return f
}

// sampleOne draws one latent from each row of f.
func sampleOne(f *poe.Fused, rng *rand.Rand) []float32 {
	z, eps := make([]float32, len(f.Mu)), make([]float32, len(f.Mu))
	for i := range eps {
		eps[i] = float32(rng.NormFloat64())
	}
	f.Sample(z, eps)
	return z
}

// withItems are the modules that have items of their own (they can be
// given a test item), sorted.
func (p *Pipeline) withItems() []string {
	var out []string
	for _, m := range p.Modules {
		if m.Items {
			out = append(out, m.Name)
		}
	}
	return out
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
