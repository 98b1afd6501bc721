package eval

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/nn"
)

// A Judge tells the class of what one module's decoder generates: coherence
// is how often that class is the class of the item the generation came
// from. Judges learn from real, labelled items (the modules never see a
// label) and are independent of the model being measured.
type Judge interface {
	// Classes returns the class of the generation at each of the n
	// latents z (n×D).
	Classes(ctx context.Context, z []float32, n int) ([]int, error)
	// Kind says what the judge is, for the report ("a classifier of its
	// features", …); Accuracy is how often it tells the class of real
	// test items, or −1 where that is no measure of it.
	Kind() string
	Accuracy() float64
}

// JudgeConfig sets how judges are made.
type JudgeConfig struct {
	// Cache, if set, is a directory where a trained classifier is kept
	// (judge-<module>.ckpt) and found again, for the same features of the
	// same items.
	Cache string
	// Classifier trains a classifier judge.
	Classifier ClassifierConfig
	// Exemplars is how many training items of each class a ranking judge
	// draws its class's distinct items from; default 200.
	Exemplars int
	Progress  func(Progress)
}

// Judges makes a judge for every module that can have one: a module whose
// likelihood is categorical and that shows features is judged by ranking
// (the class whose items its decoder finds likeliest: how captions are
// judged); another that shows features by a classifier of them trained on
// the training items (images, speech, a sensor's readings). A module that
// shows no features has no judge; no names the reason for each.
func (p *Pipeline) Judges(ctx context.Context, cfg JudgeConfig) (judges map[string]Judge, no map[string]string, err error) {
	judges, no = map[string]Judge{}, map[string]string{}
	for _, m := range p.Modules {
		switch {
		case !m.Features || !m.Items:
			no[m.Name] = "it shows no features of its items (module.Featurer and module.Loader): nothing to judge its generations by"
		case m.Likelihood == "categorical":
			judges[m.Name], err = newRankJudge(ctx, m, cfg.Exemplars)
		default:
			judges[m.Name], err = m.classifierJudge(ctx, cfg)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	return judges, no, nil
}

// rankJudge tells the class of a generation by which class's distinct
// training items the decoder makes likeliest there: the class c with the
// largest log (1/N_c) Σ_k p(x_k | z) over its N_c distinct items, each
// scored from its features (one-hot for a categorical likelihood) and the
// decoder's mean m: log p(x | z) = Σ_f x_f log m_f. Distinct, so that a
// common item (a frequent caption) weighs no more than a rare one.
type rankJudge struct {
	m       *Module
	f       int
	byClass [][]float32 // each class's distinct items' features, N_c×F
}

func newRankJudge(ctx context.Context, m *Module, per int) (*rankJudge, error) {
	if per <= 0 {
		per = 200
	}
	c := len(m.p.Labels.Classes)
	ids, classes, err := m.p.Labels.Split(dataset.Train, 0)
	if err != nil {
		return nil, err
	}
	pick := make([]uint64, 0, c*per)
	taken := make([]int, c)
	for cls := range c { // class by class, so that rows are grouped
		for i, id := range ids {
			if classes[i] == cls && taken[cls] < per {
				pick, taken[cls] = append(pick, id), taken[cls]+1
			}
		}
		if taken[cls] == 0 {
			return nil, fmt.Errorf("eval: judging %s: no training item of class %q", m.Name, m.p.Labels.Classes[cls])
		}
	}
	x, f, err := m.Feats(ctx, pick, nil, 0)
	if err != nil {
		return nil, err
	}
	j := &rankJudge{m: m, f: f, byClass: make([][]float32, c)}
	row := 0
	for cls := range c {
		seen := map[string]bool{}
		for range taken[cls] {
			item := x[row*f : (row+1)*f]
			if key := fmt.Sprint(item); !seen[key] {
				seen[key] = true
				j.byClass[cls] = append(j.byClass[cls], item...)
			}
			row++
		}
	}
	return j, nil
}

func (j *rankJudge) Kind() string {
	n := 0
	for _, b := range j.byClass {
		n += len(b) / j.f
	}
	return fmt.Sprintf("ranking classes by the decoder's likelihood of their distinct training items (%d)", n)
}

func (j *rankJudge) Accuracy() float64 { return -1 }

func (j *rankJudge) Classes(ctx context.Context, z []float32, n int) ([]int, error) {
	means, f, err := j.m.Feats(ctx, nil, z, n)
	if err != nil {
		return nil, err
	}
	if f != j.f {
		return nil, fmt.Errorf("eval: %s's means have %d values, its features %d", j.m.Name, f, j.f)
	}
	logm, lls := make([]float64, f), []float64(nil)
	out := make([]int, n)
	for i := range n {
		for k, v := range means[i*f : (i+1)*f] {
			logm[k] = math.Log(max(float64(v), 1e-30))
		}
		best, bestScore := 0, math.Inf(-1)
		for cls, items := range j.byClass {
			lls = lls[:0]
			for e := 0; e+f <= len(items); e += f {
				var s float64
				for k, v := range items[e : e+f] {
					if v != 0 {
						s += float64(v) * logm[k]
					}
				}
				lls = append(lls, s)
			}
			if s := logMeanExp(lls); s > bestScore {
				best, bestScore = cls, s
			}
		}
		out[i] = best
	}
	return out, nil
}

// classifierJudge is a classifier of a module's features, trained on its
// training items, asked the class of its decoder's means.
type classifierJudge struct {
	m   *Module
	clf *mlp
}

func (j *classifierJudge) Kind() string      { return "a classifier of its features" }
func (j *classifierJudge) Accuracy() float64 { return j.clf.accuracy }

func (j *classifierJudge) Classes(ctx context.Context, z []float32, n int) ([]int, error) {
	means, f, err := j.m.Feats(ctx, nil, z, n)
	if err != nil {
		return nil, err
	}
	if f != j.clf.in {
		return nil, fmt.Errorf("eval: %s's means have %d values, its features %d", j.m.Name, f, j.clf.in)
	}
	return j.clf.classify(means, n), nil
}

// classifierJudge trains (or finds in the cache) the module's classifier.
func (m *Module) classifierJudge(ctx context.Context, cfg JudgeConfig) (*classifierJudge, error) {
	ids, classes, err := m.p.Labels.Split(dataset.Train, cfg.Classifier.Limit)
	if err != nil {
		return nil, err
	}
	x, f, err := m.Feats(ctx, ids, nil, 0)
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("%s %d features of %d items, %08x", m.Name, f, len(ids), featureHash(x, f))
	path := ""
	if cfg.Cache != "" {
		path = filepath.Join(cfg.Cache, "judge-"+m.Name+".ckpt")
		if clf, err := loadMLP(path, f, len(m.p.Labels.Classes), key); err == nil {
			return &classifierJudge{m: m, clf: clf}, nil
		}
	}
	c := cfg.Classifier
	if c.Progress == nil {
		c.Progress = cfg.Progress
	}
	clf := trainMLP(x, classes, f, len(m.p.Labels.Classes), PhaseJudge+" "+m.Name, c)
	tids, tclasses, err := m.p.Labels.Split(dataset.Test, 0)
	if err != nil {
		return nil, err
	}
	tx, _, err := m.Feats(ctx, tids, nil, 0)
	if err != nil {
		return nil, err
	}
	clf.accuracy = accuracy(clf.classify(tx, len(tids)), tclasses)
	if path != "" {
		if err := os.MkdirAll(cfg.Cache, 0o755); err == nil {
			clf.save(path, key) // a cache: failing to keep it costs only the next run's time
		}
	}
	return &classifierJudge{m: m, clf: clf}, nil
}

// featureHash fingerprints the features of the first items, so that a
// cached classifier of other data is not taken for this one's.
func featureHash(x []float32, f int) uint32 {
	h := uint32(2166136261)
	for _, v := range x[:min(len(x), 64*f)] {
		h = (h ^ math.Float32bits(v)) * 16777619
	}
	return h
}

// mlp is a classifier: in → 512 → 512 → classes, ReLU.
type mlp struct {
	in, classes int
	net         *nn.Sequential
	accuracy    float64
}

func newMLP(in, classes int, seed uint64) *mlp {
	rng := rand.New(rand.NewPCG(seed, 0xc1a55))
	const h = 512
	return &mlp{in: in, classes: classes, net: nn.NewSequential(
		nn.NewLinear("c.0", in, h, rng), nn.NewReLU(h),
		nn.NewLinear("c.1", h, h, rng), nn.NewReLU(h),
		nn.NewLinear("c.2", h, classes, rng))}
}

// trainMLP trains a classifier of x (n×in) with classes y, telling
// progress as phase.
func trainMLP(x []float32, y []int, in, classes int, phase string, cfg ClassifierConfig) *mlp {
	if cfg.Epochs == 0 {
		cfg.Epochs = 3
	}
	if cfg.Batch == 0 {
		cfg.Batch = 100
	}
	if cfg.LR == 0 {
		cfg.LR = 1e-3
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	c, b := newMLP(in, classes, cfg.Seed), min(cfg.Batch, len(y))
	opt := nn.NewAdam(c.net.Params(), cfg.LR)
	opt.Maximize = true
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x0bde7))
	order := rng.Perm(len(y))
	xb, yb, w := make([]float32, b*in), make([]int32, b), make([]float32, b)
	for i := range w {
		w[i] = 1 / float32(b)
	}
	ll, dlogits := make([]float32, b), make([]float32, b*classes)
	steps := len(y) / b
	t := &tracker{fn: cfg.Progress}
	t.start(phase, fmt.Sprintf("a classifier of %d items' %d features, %d epochs", len(y), in, cfg.Epochs), "batches", cfg.Epochs*steps)
	for epoch := range cfg.Epochs {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for s := 0; s+b <= len(order); s += b {
			for r := range b {
				k := order[s+r]
				copy(xb[r*in:(r+1)*in], x[k*in:(k+1)*in])
				yb[r] = int32(y[k])
			}
			logits := c.net.Forward(xb, b)
			nn.CategoricalLogLik(ll, dlogits, logits, yb, w, b, 1, classes)
			c.net.Backward(dlogits, b, false)
			opt.Step()
			nn.ZeroGrad(c.net.Params())
			t.set(epoch*steps + s/b + 1)
		}
	}
	t.finish()
	return c
}

// classify returns the class of each of n rows of x (n×in).
func (c *mlp) classify(x []float32, n int) []int {
	out := make([]int, n)
	for s := 0; s < n; s += chunk {
		b := min(chunk, n-s)
		logits := c.net.Forward(x[s*c.in:(s+b)*c.in], b)
		for r := range b {
			out[s+r] = argmax(logits[r*c.classes : (r+1)*c.classes])
		}
	}
	return out
}

func (c *mlp) save(path, key string) error {
	return nn.SaveFile(path, "judge", c.net.Params(), nil, map[string]string{"accuracy": fmt.Sprint(c.accuracy), "key": key})
}

// loadMLP reads a classifier save wrote for the same key (the module, its
// features and items).
func loadMLP(path string, in, classes int, key string) (*mlp, error) {
	c := newMLP(in, classes, 1)
	meta, err := nn.LoadFile(path, "judge", c.net.Params(), nil)
	if err != nil {
		return nil, err
	}
	if meta["key"] != key {
		return nil, fmt.Errorf("eval: %s is a judge of other data", path)
	}
	if _, err := fmt.Sscan(meta["accuracy"], &c.accuracy); err != nil {
		return nil, fmt.Errorf("eval: %s: no accuracy in the judge's metadata", path)
	}
	return c, nil
}
