package eval

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

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
		z := sampleOne(post.fuse(s, len(ids), p.Latent), rng)
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
	var preds [][]int
	for _, target := range c.Targets {
		pred, err := judges[target].Classes(ctx, z, n)
		if err != nil {
			return err
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
	c.Unconditional = float64(agree) / float64(n)
	return nil
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
	q := post.fuse(subset, len(ids), d)
	out := make([]float64, len(ids))
	per := max(1, 10000/k) // items per pass: about 10,000 latents
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
func proposalDraws(q *poe.Fused, lo, hi, k, d int, rng *rand.Rand) ([]float32, []float64) {
	half := 0.5 * math.Log(2*math.Pi)
	z, logw := make([]float32, (hi-lo)*k*d), make([]float64, (hi-lo)*k)
	for i := lo; i < hi; i++ {
		for r := range k {
			row := (i-lo)*k + r
			var lw float64
			for j := range d {
				e := rng.NormFloat64()
				mu, lv := float64(q.Mu[i*d+j]), float64(q.LogVar[i*d+j])
				v := mu + math.Exp(0.5*lv)*e
				z[row*d+j] = float32(v)
				lw += -0.5*v*v - half - (-0.5*e*e - half - 0.5*lv)
			}
			logw[row] = lw
		}
	}
	return z, logw
}

// Evaluate measures the pipeline on the test split: it makes the judges,
// then coherence, likelihoods and the latent figures (see Result), telling
// cfg.Progress how far each phase has got.
func (p *Pipeline) Evaluate(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(p.withItems()) == 0 {
		return nil, fmt.Errorf("eval: no module of %v has items of its own to be measured on (module.Loader)", p.Names())
	}
	r := &Result{LogPCond: map[string]float64{}, LogPMarg: map[string]float64{}, Probe: map[string]float64{},
		Judges: map[string]float64{}, JudgeKinds: map[string]string{}, Seconds: map[string]float64{}}
	t := &tracker{fn: cfg.Progress}
	var judges map[string]Judge
	phases := []struct {
		name string
		run  func() error
	}{
		{PhaseJudge, func() (err error) {
			jc := cfg.Judges
			jc.Progress = cfg.Progress
			judges, r.NoJudge, err = p.Judges(ctx, jc)
			for name, j := range judges {
				r.JudgeKinds[name] = j.Kind()
				if a := j.Accuracy(); a >= 0 {
					r.Judges[name] = a
				}
			}
			return err
		}},
		{PhaseCoherence, func() (err error) {
			r.Coherence, err = p.Coherence(ctx, judges, CoherenceConfig{Items: cfg.Items, Prior: cfg.Prior, Seed: cfg.Seed, Progress: cfg.Progress})
			return err
		}},
		{PhaseLikelihoods, func() error { return p.likelihoods(ctx, r, cfg, t) }},
		{PhaseLatent, func() error { return p.latentFigures(ctx, r, cfg, t) }},
	}
	for _, ph := range phases {
		start := time.Now()
		if err := ph.run(); err != nil {
			return nil, err
		}
		r.Seconds[ph.name] = time.Since(start).Seconds()
	}
	return r, nil
}

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

// latentFigures fits a linear probe to the posterior means given every
// module and given each alone, and clusters the joint means. The probes'
// L-BFGS is nearly all of the phase; they run at once.
func (p *Pipeline) latentFigures(ctx context.Context, r *Result, cfg Config, t *tracker) error {
	all := p.withItems()
	subsets := [][]string{all}
	if len(all) > 1 {
		subsets = append(subsets, Subsets(all)[:len(all)]...)
	}
	trainIDs, trainY, err := p.Labels.Split("train", cfg.ProbeTrain)
	if err != nil {
		return err
	}
	testIDs, testY, err := p.Labels.Split("test", cfg.Items)
	if err != nil {
		return err
	}
	classes := len(p.Labels.Classes)
	t.start(PhaseLatent, fmt.Sprintf("linear probes from %d training items, k-means", len(trainIDs)), "figures", len(subsets)+1)
	trainPost, err := p.encodeAll(ctx, all, trainIDs)
	if err != nil {
		return err
	}
	testPost, err := p.encodeAll(ctx, all, testIDs)
	if err != nil {
		return err
	}
	type probe struct {
		name string
		acc  float64
		err  error
	}
	done := make(chan probe, len(subsets))
	for i, s := range subsets {
		trainZ := trainPost.fuse(s, len(trainIDs), p.Latent).Mu
		testZ := testPost.fuse(s, len(testIDs), p.Latent).Mu
		if i == 0 {
			r.LatentMeans, r.LatentClasses, r.ProbeTrain = testZ, testY, len(trainY)
		}
		go func() {
			acc, err := LinearProbe(trainZ, trainY, testZ, testY, p.Latent, classes, ProbeConfig{})
			done <- probe{SubsetName(s), acc, err}
		}()
	}
	assign, _ := KMeans(r.LatentMeans, len(r.LatentClasses), p.Latent, classes, cfg.Seed, 5)
	r.KMeansAcc = ClusterAccuracy(assign, r.LatentClasses, classes, classes)
	r.KMeansARI = AdjustedRandIndex(assign, r.LatentClasses)
	t.set(1)
	for i := range subsets {
		pr := <-done // the channel holds every result, so returning early strands no goroutine
		if pr.err != nil {
			return pr.err
		}
		r.Probe[pr.name] = pr.acc
		t.set(2 + i)
	}
	t.finish()
	return nil
}
