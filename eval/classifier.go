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

// ClassifierConfig sets how the classifier is trained.
type ClassifierConfig struct {
	Epochs int     // passes over the training items; default 3
	Batch  int     // default 100
	LR     float32 // Adam; default 1e-3
	Seed   uint64  // initialisation and order; default 1
	Limit  int     // train on the first Limit items (0: all)
	// Progress, if set, is told how many batches are done (phase
	// "judge <modality>"), the last step being the accuracy on the test
	// split.
	Progress func(Progress)
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

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

func accuracy(pred, truth []int) float64 {
	if len(truth) == 0 {
		return 0
	}
	right := 0
	for i, p := range pred {
		if p == truth[i] {
			right++
		}
	}
	return float64(right) / float64(len(truth))
}
