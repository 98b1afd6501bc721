package eval

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/audio"
	"github.com/serket-go/serket/modules/language"
	"github.com/serket-go/serket/modules/vision"
	"github.com/serket-go/serket/poe"
)

// Settings sets the size of a Quality run.
type Settings struct {
	Items     int    // test items for the coherence figures; default 2000 (0 < Items ≤ the split)
	ELBOItems int    // the first ELBOItems test items for the ELBO; default 1000
	Seed      uint64 // latent noise; default 1
	Chunk     int    // items per forward pass; default 500
}

func (s *Settings) defaults() {
	if s.Items == 0 {
		s.Items = 2000
	}
	if s.ELBOItems == 0 {
		s.ELBOItems = 1000
	}
	if s.Seed == 0 {
		s.Seed = 1
	}
	if s.Chunk == 0 {
		s.Chunk = 500
	}
}

// Quality is what Measure reports. Accuracies are fractions in [0, 1]
// (chance is 0.1); log-likelihoods and the ELBO are nats per item.
type Quality struct {
	// TestELBO is the plain ELBO (λ = β = 1) of the joint posterior, one
	// latent sample per item: Σ_m log p(x_m|z) − KL(q(z|x_all) ‖ N(0, I)).
	TestELBO   float64            `json:"test_elbo"`
	TestKL     float64            `json:"test_kl"`
	TestLogLik map[string]float64 `json:"test_loglik"`
	ELBOItems  int                `json:"elbo_items"`

	// ImageToLabel and AudioToLabel: the class whose captions the language
	// decoder finds most likely (the mean of their probabilities) at the
	// posterior mean of the image (audio) alone.
	ImageToLabel float64 `json:"image_to_label"`
	AudioToLabel float64 `json:"audio_to_label"`
	// JointToLabel does the same from the image and the audio together.
	JointToLabel float64 `json:"image_audio_to_label"`
	// LanguageToImage: the image decoded from a posterior sample of each
	// test item's caption alone, classified by the Classifier.
	LanguageToImage float64 `json:"language_to_image"`
	// AudioToImage: the same from each test item's utterance alone.
	AudioToImage float64 `json:"audio_to_image"`
	// LabelToImage: one image per caption of each class (every synonym in
	// every template), classes weighed equally.
	LabelToImage float64 `json:"label_to_image"`
	// ClassifierAccuracy is the judge's own accuracy on the real test
	// images: the ceiling of the image coherences.
	ClassifierAccuracy float64 `json:"classifier_accuracy"`
	Items              int     `json:"items"`
}

// Measure evaluates the model on the test split. It changes no parameter.
func (m *Model) Measure(clf *Classifier, s Settings) (*Quality, error) {
	s.defaults()
	ids, classes, err := m.split(dataset.Test, max(s.Items, s.ELBOItems))
	if err != nil {
		return nil, err
	}
	q := &Quality{TestLogLik: map[string]float64{}, ClassifierAccuracy: clf.Accuracy}
	scorer, err := m.newCaptionScorer()
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(s.Seed, 0xe7a1))
	var right [5]int
	for lo := 0; lo < len(ids); lo += s.Chunk {
		hi := min(lo+s.Chunk, len(ids))
		cids, cclass := ids[lo:hi], classes[lo:hi]
		n := len(cids)
		batches := map[string]module.Batch{}
		for _, name := range m.Names() {
			b, _, err := m.Modality(name).(module.Loader).LoadBatch(cids)
			if err != nil {
				return nil, fmt.Errorf("eval: %w", err)
			}
			batches[name] = b
		}
		if lo < s.ELBOItems {
			k := min(n, s.ELBOItems-lo)
			if err := m.elbo(q, batches, k, rng); err != nil {
				return nil, err
			}
		}
		if lo >= s.Items {
			continue
		}
		n = min(n, s.Items-lo)
		cclass = cclass[:n]
		for i, subset := range [][]string{{dataset.Vision}, {dataset.Audio}, {dataset.Vision, dataset.Audio}} {
			f, err := m.posterior(subset, batches, n)
			if err != nil {
				return nil, err
			}
			right[i] += count(scorer.classes(f.Mu, n), cclass)
		}
		for i, from := range []string{dataset.Language, dataset.Audio} {
			f, err := m.posterior([]string{from}, batches, n)
			if err != nil {
				return nil, err
			}
			right[3+i] += count(clf.Classify(m.images01(sample(f, rng), n), n), cclass)
		}
		q.Items += n
	}
	if q.Items > 0 {
		q.ImageToLabel = float64(right[0]) / float64(q.Items)
		q.AudioToLabel = float64(right[1]) / float64(q.Items)
		q.JointToLabel = float64(right[2]) / float64(q.Items)
		q.LanguageToImage = float64(right[3]) / float64(q.Items)
		q.AudioToImage = float64(right[4]) / float64(q.Items)
	}
	if q.ELBOItems > 0 {
		q.TestELBO /= float64(q.ELBOItems)
		q.TestKL /= float64(q.ELBOItems)
		for k := range q.TestLogLik {
			q.TestLogLik[k] /= float64(q.ELBOItems)
		}
	}
	q.LabelToImage, err = m.labelToImage(clf, scorer, rng)
	return q, err
}

// elbo adds the first k items' ELBO terms (sums) to q.
func (m *Model) elbo(q *Quality, batches map[string]module.Batch, k int, rng *rand.Rand) error {
	n := batches[dataset.Vision].Len()
	f, err := m.posterior(m.Names(), batches, n)
	if err != nil {
		return err
	}
	z := sample(f, rng)
	kl := make([]float32, n)
	f.KL(kl)
	ll, dz, w := make([]float32, n), make([]float32, n*m.Latent), make([]float32, n)
	for i := range w {
		w[i] = 1
	}
	for _, name := range m.Names() {
		mod := m.Modality(name)
		err := mod.Decode(z, batches[name], w, ll, dz)
		mod.(module.Learner).Discard()
		if err != nil {
			return fmt.Errorf("eval: %s: %w", name, err)
		}
		for i := range k {
			q.TestLogLik[name] += float64(ll[i])
			q.TestELBO += float64(ll[i])
		}
	}
	for i := range k {
		q.TestKL += float64(kl[i])
		q.TestELBO -= float64(kl[i])
	}
	q.ELBOItems += k
	if math.IsNaN(q.TestELBO) || math.IsInf(q.TestELBO, 0) {
		return fmt.Errorf("eval: the test ELBO is %v: the model's outputs are not finite", q.TestELBO)
	}
	return nil
}

// posterior fuses the first n rows' experts of subset with the prior.
func (m *Model) posterior(subset []string, batches map[string]module.Batch, n int) (*poe.Fused, error) {
	d := m.Latent
	var experts []poe.Expert
	for _, name := range subset {
		mu, lv := make([]float32, n*d), make([]float32, n*d)
		if err := m.Modality(name).Encode(head(batches[name], n), mu, lv); err != nil {
			return nil, fmt.Errorf("eval: %s: %w", name, err)
		}
		experts = append(experts, poe.Expert{Mu: mu, LogVar: lv})
	}
	f := new(poe.Fused)
	f.Fuse(experts, n, d)
	return f, nil
}

// head returns the first n items of a batch of a built-in modality.
func head(b module.Batch, n int) module.Batch {
	if b.Len() == n {
		return b
	}
	switch x := b.(type) {
	case *vision.Images:
		return &vision.Images{N: n, Pix: x.Pix[:n*vision.Pixels]}
	case *language.Captions:
		t := len(x.IDs) / x.N
		v := len(x.OneHot) / x.N
		return &language.Captions{N: n, IDs: x.IDs[:n*t], OneHot: x.OneHot[:n*v]}
	case *audio.Features:
		f := len(x.X) / x.N
		return &audio.Features{N: n, X: x.X[:n*f]}
	}
	panic(fmt.Sprintf("eval: a batch of type %T", b))
}

func sample(f *poe.Fused, rng *rand.Rand) []float32 {
	eps := make([]float32, f.B*f.D)
	for i := range eps {
		eps[i] = float32(rng.NormFloat64())
	}
	f.Sample(eps, eps)
	return eps
}

// images01 decodes n latents into images of Bernoulli means.
func (m *Model) images01(z []float32, n int) []float32 {
	logits := m.Vision.Net().Forward(z, n)
	out := make([]float32, len(logits))
	for i, l := range logits {
		out[i] = float32(1 / (1 + math.Exp(-float64(l))))
	}
	return out
}

// labelToImage decodes one image per caption of each class from a
// posterior sample of the caption alone.
func (m *Model) labelToImage(clf *Classifier, sc *captionScorer, rng *rand.Rand) (float64, error) {
	var acc float64
	for c := range dataset.NumClasses {
		b := sc.byClass[c]
		f, err := m.posterior([]string{dataset.Language}, map[string]module.Batch{dataset.Language: b}, b.N)
		if err != nil {
			return 0, err
		}
		pred := clf.Classify(m.images01(sample(f, rng), b.N), b.N)
		right := 0
		for _, p := range pred {
			if p == c {
				right++
			}
		}
		acc += float64(right) / float64(b.N)
	}
	return acc / dataset.NumClasses, nil
}

// captionScorer tells a latent's class by the language decoder: the class c
// that makes the decoder's captions most likely, p(c | z) ∝ (1/N_c) Σ_k
// p(caption_k | z) over the class's N_c captions (every synonym in every
// template, so the templates weigh the same for every class).
type captionScorer struct {
	lang    *language.Language
	byClass []*language.Captions
	ls, lls []float64
}

func (m *Model) newCaptionScorer() (*captionScorer, error) {
	sc := &captionScorer{lang: m.Language}
	for c := range dataset.NumClasses {
		var texts []bus.Payload
		for _, s := range dataset.ClassCaptions(c) {
			texts = append(texts, bus.Payload{Type: "text/plain", Data: []byte(s)})
		}
		b, err := m.Language.Parse(texts)
		if err != nil {
			return nil, fmt.Errorf("eval: the captions of class %d: %w", c, err)
		}
		sc.byClass = append(sc.byClass, b.(*language.Captions))
	}
	return sc, nil
}

// classes returns the class of each of n latents (n×D).
func (sc *captionScorer) classes(z []float32, n int) []int {
	t, v := dataset.MaxTokens, sc.lang.Vocab().Len()
	logits := sc.lang.Net().Forward(z, n)
	if cap(sc.ls) < t*v {
		sc.ls = make([]float64, t*v)
	}
	ls := sc.ls[:t*v]
	out := make([]int, n)
	for i := range n {
		row := logits[i*t*v : (i+1)*t*v]
		for p := range t {
			language.LogSoftmax(ls[p*v:(p+1)*v], row[p*v:(p+1)*v])
		}
		best, bestScore := -1, math.Inf(-1)
		for c, caps := range sc.byClass {
			// log (1/N_c) Σ_k p(caption_k | z), by log-sum-exp.
			lls := sc.lls[:0]
			mx := math.Inf(-1)
			for k := range caps.N {
				var s float64
				for p, id := range caps.IDs[k*t : (k+1)*t] {
					s += ls[p*v+int(id)]
				}
				lls = append(lls, s)
				mx = math.Max(mx, s)
			}
			sc.lls = lls
			var sum float64
			for _, s := range lls {
				sum += math.Exp(s - mx)
			}
			if s := mx + math.Log(sum/float64(caps.N)); s > bestScore {
				best, bestScore = c, s
			}
		}
		out[i] = best
	}
	return out
}

func count(pred, truth []int) int {
	right := 0
	for i := range truth {
		if pred[i] == truth[i] {
			right++
		}
	}
	return right
}
