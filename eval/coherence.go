package eval

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
)

// CoherenceConfig sets a coherence measurement.
type CoherenceConfig struct {
	Items  int    // test items; default 1000
	Prior  int    // latents drawn from the prior for the unconditional coherence; default 1000
	Seed   uint64 // default 1
	Chunk  int    // items per forward pass; default 500
	Subset [][]string
	// Progress, if set, is told how many of the test items and prior
	// samples are done (phase PhaseCoherence).
	Progress func(Progress)
}

// Coherence is how often what the model generates from some modalities has
// the class of the item they came from.
type Coherence struct {
	// Subsets are the conditioning subsets (every non-empty subset of the
	// modalities by default), Targets the generated modalities;
	// Acc[i][j] is the fraction of test items whose Targets[j] generated
	// from one posterior sample given Subsets[i] has the item's class.
	Subsets [][]string  `json:"subsets"`
	Targets []string    `json:"targets"`
	Acc     [][]float64 `json:"accuracy"`
	Items   int         `json:"items"`
	// Unconditional is the fraction of latents drawn from the prior whose
	// generated modalities all have the same class; chance is 1/100 for
	// three modalities and ten classes.
	Unconditional float64 `json:"unconditional"`
	PriorSamples  int     `json:"prior_samples"`
	// UnconditionalPlain is, for a pipeline with a prior module (whose
	// prior Unconditional draws from), the same from N(0, I).
	UnconditionalPlain *float64 `json:"unconditional_plain,omitempty"`
}

// SubsetName is a subset as the report labels it: "vision+audio".
func SubsetName(s []string) string { return strings.Join(s, "+") }

// Subsets returns every non-empty subset of names, smallest first.
func Subsets(names []string) [][]string {
	var out [][]string
	for size := 1; size <= len(names); size++ {
		for mask := 1; mask < 1<<len(names); mask++ {
			var s []string
			for i, n := range names {
				if mask&(1<<i) != 0 {
					s = append(s, n)
				}
			}
			if len(s) == size {
				out = append(out, s)
			}
		}
	}
	return out
}

// Coherence generates every module a judge tells the class of from every
// non-empty subset of the modules with items (one posterior sample per test
// item) and from the prior, and judges the classes.
func (p *Pipeline) Coherence(ctx context.Context, judges map[string]Judge, cfg CoherenceConfig) (*Coherence, error) {
	if cfg.Items == 0 {
		cfg.Items = 1000
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	c := &Coherence{Subsets: cfg.Subset, Targets: slices.Sorted(mapKeys(judges))}
	if c.Subsets == nil {
		c.Subsets = Subsets(p.withItems())
	}
	ids, classes, err := p.Labels.Split("test", cfg.Items)
	if err != nil {
		return nil, err
	}
	c.Items = len(ids)
	t := &tracker{fn: cfg.Progress}
	t.start(PhaseCoherence, fmt.Sprintf("%d subsets × %d modules, %d items, %d prior samples", len(c.Subsets), len(c.Targets), len(ids), cfg.Prior),
		"generations", (len(c.Subsets)*len(ids)+cfg.Prior)*len(c.Targets))
	post, err := p.encodeAll(ctx, p.withItems(), ids)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xc0e4))
	c.Acc = make([][]float64, len(c.Subsets))
	done := 0
	for si, s := range c.Subsets {
		f, err := p.fuse(ctx, post, s, len(ids))
		if err != nil {
			return nil, err
		}
		z := sampleOne(f, len(ids), p.Latent, rng)
		c.Acc[si] = make([]float64, len(c.Targets))
		for ti, target := range c.Targets {
			pred, err := judges[target].Classes(ctx, z, len(ids))
			if err != nil {
				return nil, err
			}
			c.Acc[si][ti] = accuracy(pred, classes)
			done += len(ids)
			t.set(done)
		}
	}
	if err := p.unconditional(ctx, c, judges, cfg.Prior, rng); err != nil {
		return nil, err
	}
	t.finish()
	return c, nil
}

// unconditional draws latents from the prior, generates every judged
// module and counts how often all their classes agree.
func (p *Pipeline) unconditional(ctx context.Context, c *Coherence, judges map[string]Judge, n int, rng *rand.Rand) error {
	c.PriorSamples = n
	if n == 0 || len(c.Targets) < 2 {
		return nil
	}
	z := make([]float32, n*p.Latent)
	for i := range z {
		z[i] = float32(rng.NormFloat64())
	}
	if p.Prior != "" {
		plain, err := p.agreement(ctx, c, judges, z, n)
		if err != nil {
			return err
		}
		c.UnconditionalPlain = &plain
		f, err := p.fuse(ctx, nil, nil, n) // nothing seen: the prior module's prior
		if err != nil {
			return err
		}
		z = sampleOne(f, n, p.Latent, rng)
	}
	agree, err := p.agreement(ctx, c, judges, z, n)
	c.Unconditional = agree
	return err
}

// agreement generates every judged module from the n latents z and
// returns how often all their classes agree.
func (p *Pipeline) agreement(ctx context.Context, c *Coherence, judges map[string]Judge, z []float32, n int) (float64, error) {
	var preds [][]int
	for _, target := range c.Targets {
		pred, err := judges[target].Classes(ctx, z, n)
		if err != nil {
			return 0, err
		}
		preds = append(preds, pred)
	}
	agree := 0
	for i := range n {
		same := true
		for _, pr := range preds[1:] {
			same = same && pr[i] == preds[0][i]
		}
		if same {
			agree++
		}
	}
	return float64(agree) / float64(n), nil
}
