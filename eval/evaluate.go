package eval

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/vision"
)

// Config sets a whole evaluation (Evaluate).
type Config struct {
	Items      int    // test items for coherence and the latent figures; default 1000
	Prior      int    // prior samples for the unconditional coherence; default 1000
	IWAEItems  int    // test items for the likelihoods; default 1000 (0 < IWAEItems)
	IWAEK      int    // importance samples per item; default 1000
	ProbeTrain int    // training items the linear probe learns from; default 5000
	Seed       uint64 // default 1
	// Progress, if set, is told each phase as it starts.
	Progress func(phase string)
}

func (c *Config) defaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Items, 1000)
	def(&c.Prior, 1000)
	def(&c.IWAEItems, 1000)
	def(&c.IWAEK, 1000)
	def(&c.ProbeTrain, 5000)
	if c.Seed == 0 {
		c.Seed = 1
	}
}

// Result is what Evaluate measures. Log-likelihoods are nats per item.
type Result struct {
	Coherence *Coherence `json:"coherence"`
	// LogPX is the importance-sampled log p(x) of every modality together
	// (IWAE with K samples from the joint posterior); LogPCond[m] is
	// log p(x_m | the others) = log p(x) − log p(the others).
	LogPX     float64            `json:"log_px"`
	LogPCond  map[string]float64 `json:"log_p_cond"`
	LogPMarg  map[string]float64 `json:"log_p_others"` // log p(the others), per left-out m
	IWAEK     int                `json:"iwae_k"`
	IWAEItems int                `json:"iwae_items"`
	// Latent figures, on the posterior means given every modality (and,
	// for the probe, given each modality alone).
	Probe         map[string]float64 `json:"probe_accuracy"` // subset name → test accuracy
	KMeansAcc     float64            `json:"kmeans_accuracy"`
	KMeansARI     float64            `json:"kmeans_ari"`
	LatentMeans   []float32          `json:"-"` // Items × D, given every modality
	LatentClasses []int              `json:"-"`
	Judges        map[string]float64 `json:"classifier_accuracy"` // each judge's accuracy on real test data
	Seconds       map[string]float64 `json:"seconds"`             // per phase
}

// Evaluate measures the model on the test split: coherence, likelihoods
// and the latent figures (see Result).
func (m *Model) Evaluate(j Judges, cfg Config) (*Result, error) {
	cfg.defaults()
	say := func(s string) {
		if cfg.Progress != nil {
			cfg.Progress(s)
		}
	}
	r := &Result{LogPCond: map[string]float64{}, LogPMarg: map[string]float64{}, Probe: map[string]float64{},
		Judges: map[string]float64{dataset.Vision: j.Vision.Accuracy, dataset.Audio: j.Audio.Accuracy}, Seconds: map[string]float64{}}
	phase := func(name string, f func() error) error {
		say(name)
		start := time.Now()
		err := f()
		r.Seconds[name] = time.Since(start).Seconds()
		return err
	}
	err := phase("coherence", func() (err error) {
		r.Coherence, err = m.Coherence(j, CoherenceConfig{Items: cfg.Items, Prior: cfg.Prior, Seed: cfg.Seed})
		return err
	})
	if err == nil {
		err = phase(fmt.Sprintf("likelihoods (IWAE, K = %d, %d items)", cfg.IWAEK, cfg.IWAEItems), func() error { return m.likelihoods(r, cfg) })
	}
	if err == nil {
		err = phase("latent probe and clustering", func() error { return m.latentFigures(r, cfg) })
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (m *Model) batches(ids []uint64) (map[string]module.Batch, error) {
	out := map[string]module.Batch{}
	for _, name := range m.Names() {
		b, _, err := m.Modality(name).(module.Loader).LoadBatch(ids)
		if err != nil {
			return nil, fmt.Errorf("eval: %w", err)
		}
		out[name] = b
	}
	return out, nil
}

func (m *Model) modalities() map[string]module.Modality {
	out := map[string]module.Modality{}
	for _, name := range m.Names() {
		out[name] = m.Modality(name)
	}
	return out
}

func (m *Model) likelihoods(r *Result, cfg Config) error {
	ids, _, err := m.split(dataset.Test, cfg.IWAEItems)
	if err != nil {
		return err
	}
	b, err := m.batches(ids)
	if err != nil {
		return err
	}
	mods, all := m.modalities(), m.Names()
	iw := IWAEConfig{K: cfg.IWAEK, Seed: cfg.Seed}
	joint, err := IWAE(mods, all, all, b, m.Latent, iw)
	if err != nil {
		return err
	}
	r.LogPX, r.IWAEK, r.IWAEItems = mean64(joint), cfg.IWAEK, len(ids)
	for _, left := range all {
		var rest []string
		for _, n := range all {
			if n != left {
				rest = append(rest, n)
			}
		}
		marg, err := IWAE(mods, rest, rest, b, m.Latent, iw)
		if err != nil {
			return err
		}
		r.LogPMarg[left] = mean64(marg)
		r.LogPCond[left] = r.LogPX - r.LogPMarg[left]
	}
	return nil
}

func (m *Model) latentFigures(r *Result, cfg Config) error {
	means := func(split string, n int, subset []string) ([]float32, []int, error) {
		ids, classes, err := m.split(split, n)
		if err != nil {
			return nil, nil, err
		}
		z := make([]float32, 0, len(ids)*m.Latent)
		for lo := 0; lo < len(ids); lo += 500 {
			hi := min(lo+500, len(ids))
			b, err := m.batches(ids[lo:hi])
			if err != nil {
				return nil, nil, err
			}
			f, err := m.posterior(subset, b, hi-lo)
			if err != nil {
				return nil, nil, err
			}
			z = append(z, f.Mu...)
		}
		return z, classes, nil
	}
	subsets := append([][]string{m.Names()}, Subsets(m.Names())[:len(m.Names())]...)
	for i, s := range subsets {
		trainZ, trainY, err := means(dataset.Train, cfg.ProbeTrain, s)
		if err != nil {
			return err
		}
		testZ, testY, err := means(dataset.Test, cfg.Items, s)
		if err != nil {
			return err
		}
		acc, err := LinearProbe(trainZ, trainY, testZ, testY, m.Latent, dataset.NumClasses, ProbeConfig{})
		if err != nil {
			return err
		}
		r.Probe[SubsetName(s)] = acc
		if i == 0 {
			r.LatentMeans, r.LatentClasses = testZ, testY
			assign, _ := KMeans(testZ, len(testY), m.Latent, dataset.NumClasses, cfg.Seed, 5)
			r.KMeansAcc = ClusterAccuracy(assign, testY, dataset.NumClasses, dataset.NumClasses)
			r.KMeansARI = AdjustedRandIndex(assign, testY)
		}
	}
	return nil
}

func mean64(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// Generate decodes n latents sampled from the posterior given the batches
// (their first row each; the prior when there are none) with every
// modality: images of Bernoulli means, the language decoder's captions
// (module.Renderer), and the audio decoder's log-mel features (Frames×Mels
// each, denormalised).
func (m *Model) Generate(given map[string]module.Batch, n int, seed uint64) (images [][]float32, captions []string, logmel [][]float32, err error) {
	var subset []string
	b := map[string]module.Batch{}
	for _, name := range m.Names() {
		if x, ok := given[name]; ok {
			subset = append(subset, name)
			if x.Len() != 1 {
				x = x.(module.Picker).Pick([]int{0})
			}
			b[name] = x.(module.Picker).Pick(make([]int, n))
		}
	}
	z := make([]float32, n*m.Latent)
	rng := rand.New(rand.NewPCG(seed, 0x9e4e))
	if len(subset) == 0 {
		for i := range z {
			z[i] = float32(rng.NormFloat64())
		}
	} else {
		f, err := m.posterior(subset, b, n)
		if err != nil {
			return nil, nil, nil, err
		}
		z = sample(f, rng)
	}
	pix := m.images01(z, n)
	for i := range n {
		images = append(images, pix[i*vision.Pixels:(i+1)*vision.Pixels])
	}
	caps, err := m.Language.Render(z, n)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, c := range caps {
		captions = append(captions, string(c.Data))
	}
	frames, mels := m.Audio.FrameSize()
	f := frames * mels
	out := m.Audio.Net().Forward(z, n)
	for i := range n {
		logmel = append(logmel, m.Audio.Denormalise(nil, out[i*f:(i+1)*f]))
	}
	for _, v := range pix {
		if math.IsNaN(float64(v)) {
			return nil, nil, nil, fmt.Errorf("eval: generated images are not finite")
		}
	}
	return images, captions, logmel, nil
}
