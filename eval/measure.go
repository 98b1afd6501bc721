package eval

import (
	"context"
	"math/rand/v2"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/poe"
)

// The measures of a Pipeline: coherence between every subset of its modules
// and every module a judge can tell the class of; importance-sampled
// likelihoods; and the latent's linear probes and clusters. Each fuses the
// modules' posteriors itself (package aggregate), as the integrator does.

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

// sampleOne draws one latent for each of post's n rows.
func sampleOne(post aggregate.Posterior, n, d int, rng *rand.Rand) []float32 {
	z := make([]float32, n*d)
	for r := range n {
		post.Draw(z[r*d:(r+1)*d], r, rng)
	}
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
