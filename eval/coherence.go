package eval

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/module"
)

// Judges tell the class of what each modality's decoder generates: the
// language decoder by its captions (no classifier needed), vision and audio
// by a Classifier trained on real data.
type Judges struct {
	Vision, Audio *Classifier
}

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

// Coherence generates every modality from every subset of the others (one
// posterior sample per test item) and from the prior, and judges the
// classes.
func (m *Model) Coherence(j Judges, cfg CoherenceConfig) (*Coherence, error) {
	if cfg.Items == 0 {
		cfg.Items = 1000
	}
	if cfg.Prior == 0 {
		cfg.Prior = 1000
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.Chunk == 0 {
		cfg.Chunk = 500
	}
	if j.Vision == nil || j.Audio == nil {
		return nil, fmt.Errorf("eval: coherence needs the vision and audio classifiers")
	}
	subsets := cfg.Subset
	if subsets == nil {
		subsets = Subsets(m.Names())
	}
	c := &Coherence{Subsets: subsets, Targets: m.Names(), Acc: make([][]float64, len(subsets))}
	for i := range c.Acc {
		c.Acc[i] = make([]float64, len(c.Targets))
	}
	ids, classes, err := m.split(dataset.Test, cfg.Items)
	if err != nil {
		return nil, err
	}
	t := &tracker{fn: cfg.Progress}
	t.start(PhaseCoherence, fmt.Sprintf("%d subsets × %d modalities, %d items, %d prior samples", len(subsets), len(c.Targets), len(ids), cfg.Prior),
		"samples", len(ids)+cfg.Prior)
	scorer, err := m.newCaptionScorer()
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xc0e4))
	for lo := 0; lo < len(ids); lo += cfg.Chunk {
		hi := min(lo+cfg.Chunk, len(ids))
		n := hi - lo
		batches := map[string]module.Batch{}
		for _, name := range m.Names() {
			b, _, err := m.Modality(name).(module.Loader).LoadBatch(ids[lo:hi])
			if err != nil {
				return nil, fmt.Errorf("eval: %w", err)
			}
			batches[name] = b
		}
		for si, s := range subsets {
			f, err := m.posterior(s, batches, n)
			if err != nil {
				return nil, err
			}
			z := sample(f, rng)
			for ti, target := range c.Targets {
				pred := m.judge(j, scorer, target, z, n)
				c.Acc[si][ti] += float64(count(pred, classes[lo:hi]))
			}
		}
		c.Items += n
		t.set(c.Items)
	}
	for i := range c.Acc {
		for k := range c.Acc[i] {
			c.Acc[i][k] /= float64(max(c.Items, 1))
		}
	}
	// Unconditional: z ~ N(0, I), every modality generated and judged.
	d := m.Latent
	agree := 0
	for lo := 0; lo < cfg.Prior; lo += cfg.Chunk {
		n := min(cfg.Chunk, cfg.Prior-lo)
		z := make([]float32, n*d)
		for i := range z {
			z[i] = float32(rng.NormFloat64())
		}
		var preds [][]int
		for _, target := range c.Targets {
			preds = append(preds, m.judge(j, scorer, target, z, n))
		}
		for i := range n {
			same := true
			for _, p := range preds[1:] {
				same = same && p[i] == preds[0][i]
			}
			if same {
				agree++
			}
		}
		t.set(c.Items + lo + n)
	}
	t.finish()
	c.PriorSamples = cfg.Prior
	c.Unconditional = float64(agree) / float64(cfg.Prior)
	return c, nil
}

// judge returns the class of what target's decoder generates at each of n
// latents.
func (m *Model) judge(j Judges, sc *captionScorer, target string, z []float32, n int) []int {
	switch target {
	case dataset.Vision:
		return j.Vision.Classify(m.images01(z, n), n)
	case dataset.Audio:
		return j.Audio.Classify(m.Audio.Net().Forward(z, n), n)
	}
	return sc.classes(z, n)
}
