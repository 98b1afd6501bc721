package eval

import (
	"fmt"
	"math/rand/v2"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/modules/audio"
	"github.com/serket-go/serket/modules/vision"
	"github.com/serket-go/serket/nn"
)

// Classifier tells the class of one modality's observation in the form
// its decoder produces: a 28×28 image of intensities in [0, 1] for vision,
// normalised log-mel features for audio. It is an MLP (in → 512 → 512 → 10,
// ReLU) trained on the real training data, and it judges generated data: an
// image "is" the class it is classified as.
type Classifier struct {
	Modality string
	In       int
	Net      *nn.Sequential
	Accuracy float64 // on the real test data, measured by TrainClassifier
}

// ClassifierConfig sets how the classifier is trained.
type ClassifierConfig struct {
	Epochs int     // passes over the training images; default 3
	Batch  int     // default 100
	LR     float32 // Adam; default 1e-3
	Seed   uint64  // initialisation and order; default 1
	Limit  int     // train on the first Limit images (0: all)
	// Progress, if set, is told how many batches are done (phase
	// "judge <modality>"), the last step being the accuracy on the test
	// split.
	Progress func(Progress)
}

func newClassifierNet(in int, seed uint64) *nn.Sequential {
	rng := rand.New(rand.NewPCG(seed, 0xc1a55))
	const h = 512
	return nn.NewSequential(
		nn.NewLinear("c.0", in, h, rng), nn.NewReLU(h),
		nn.NewLinear("c.1", h, h, rng), nn.NewReLU(h),
		nn.NewLinear("c.2", h, dataset.NumClasses, rng))
}

// TrainClassifier trains a Classifier of the modality's observations
// (vision or audio) on the training split and measures its accuracy on
// every test item.
func (m *Model) TrainClassifier(modality string, cfg ClassifierConfig) (*Classifier, error) {
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
	ids, classes, err := m.split(dataset.Train, cfg.Limit)
	if err != nil {
		return nil, err
	}
	b := cfg.Batch
	steps := len(ids) / b
	t := &tracker{fn: cfg.Progress}
	t.start(PhaseJudge+" "+modality, fmt.Sprintf("a classifier of %d %s observations, %d epochs", len(ids), modality, cfg.Epochs),
		"batches", cfg.Epochs*steps+1)
	x, in, err := m.features(modality, ids)
	if err != nil {
		return nil, err
	}
	net := newClassifierNet(in, cfg.Seed)
	opt := nn.NewAdam(net.Params(), cfg.LR)
	opt.Maximize = true
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x0bde7))
	order := make([]int, len(ids))
	for i := range order {
		order[i] = i
	}
	xb := make([]float32, b*in)
	yb := make([]int32, b)
	w := make([]float32, b)
	for i := range w {
		w[i] = 1 / float32(b)
	}
	ll := make([]float32, b)
	dlogits := make([]float32, b*dataset.NumClasses)
	for epoch := range cfg.Epochs {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for s := 0; s+b <= len(order); s += b {
			for r := 0; r < b; r++ {
				k := order[s+r]
				copy(xb[r*in:(r+1)*in], x[k*in:(k+1)*in])
				yb[r] = int32(classes[k])
			}
			logits := net.Forward(xb, b)
			nn.CategoricalLogLik(ll, dlogits, logits, yb, w, b, 1, dataset.NumClasses)
			net.Backward(dlogits, b, false)
			opt.Step()
			nn.ZeroGrad(net.Params())
			t.set(epoch*steps + s/b + 1)
		}
	}
	c := &Classifier{Modality: modality, In: in, Net: net}
	tids, tclasses, err := m.split(dataset.Test, 0)
	if err != nil {
		return nil, err
	}
	tx, _, err := m.features(modality, tids)
	if err != nil {
		return nil, err
	}
	c.Accuracy = accuracy(c.Classify(tx, len(tids)), tclasses)
	t.finish()
	return c, nil
}

// Classify returns the class of each of n observations (n×In).
func (c *Classifier) Classify(x []float32, n int) []int {
	out := make([]int, n)
	const chunk = 500
	for s := 0; s < n; s += chunk {
		b := min(chunk, n-s)
		logits := c.Net.Forward(x[s*c.In:(s+b)*c.In], b)
		for r := 0; r < b; r++ {
			out[s+r] = argmax(logits[r*dataset.NumClasses : (r+1)*dataset.NumClasses])
		}
	}
	return out
}

// Save writes the classifier atomically to path, with its accuracy and
// the dataset it was trained on (a manifest's Config hash).
func (c *Classifier) Save(path, dataset string) error {
	return nn.SaveFile(path, "classifier-"+c.Modality, c.Net.Params(), nil, map[string]string{"accuracy": fmt.Sprint(c.Accuracy), "dataset": dataset})
}

// LoadClassifier reads what Save wrote for the modality (whose
// observations have in values), refusing a classifier trained on another
// dataset than the one whose Config hash is given.
func LoadClassifier(path, modality string, in int, dataset string) (*Classifier, error) {
	c := &Classifier{Modality: modality, In: in, Net: newClassifierNet(in, 1)}
	meta, err := nn.LoadFile(path, "classifier-"+modality, c.Net.Params(), nil)
	if err != nil {
		return nil, err
	}
	if meta["dataset"] != dataset {
		return nil, fmt.Errorf("eval: %s was trained on another dataset (%.12s, not %.12s)", path, meta["dataset"], dataset)
	}
	if _, err := fmt.Sscan(meta["accuracy"], &c.Accuracy); err != nil {
		return nil, fmt.Errorf("eval: %s: no accuracy in the classifier's metadata", path)
	}
	return c, nil
}

// features loads the observations of ids in the form the modality's
// decoder produces (len(ids)×in): images for vision, normalised log-mel
// for audio.
func (m *Model) features(modality string, ids []uint64) (x []float32, in int, err error) {
	switch modality {
	case dataset.Vision:
		b, _, err := m.Vision.LoadBatch(ids)
		if err != nil {
			return nil, 0, err
		}
		return b.(*vision.Images).Pix, vision.Pixels, nil
	case dataset.Audio:
		b, _, err := m.Audio.LoadBatch(ids)
		if err != nil {
			return nil, 0, err
		}
		f := b.(*audio.Features)
		return f.X, len(f.X) / f.N, nil
	}
	return nil, 0, fmt.Errorf("eval: no classifier for %q observations (vision or audio)", modality)
}

// FeatureSize is the size of a modality's observations as Classify takes
// them.
func (m *Model) FeatureSize(modality string) int {
	switch modality {
	case dataset.Vision:
		return vision.Pixels
	case dataset.Audio:
		f, mel := m.Audio.FrameSize()
		return f * mel
	}
	return 0
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
	return float64(count(pred, truth)) / float64(len(truth))
}
