package eval

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/modules/language"
	"github.com/serket-go/serket/modules/vision"
	"github.com/serket-go/serket/nn"
)

func openSmall(t *testing.T) *Model {
	t.Helper()
	m, err := Open(datasettest.Dir(t), 8, 32)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The classifier must learn real images (240 of them) well above chance,
// and come back from its cache telling the same classes.
func TestClassifierLearnsRealImages(t *testing.T) {
	m := openSmall(t)
	clf, err := m.TrainClassifier(dataset.Vision, ClassifierConfig{Epochs: 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("test accuracy %.3f after 20 epochs on %d images", clf.Accuracy, datasettest.Items)
	if clf.Accuracy < 0.5 {
		t.Fatalf("test accuracy %.3f: want at least 0.5 (chance 0.1)", clf.Accuracy)
	}
	path := filepath.Join(t.TempDir(), "clf.ckpt")
	if err := clf.Save(path, m.Manifest.Config); err != nil {
		t.Fatal(err)
	}
	back, err := LoadClassifier(path, dataset.Vision, vision.Pixels, m.Manifest.Config)
	if err != nil {
		t.Fatal(err)
	}
	ids, _, _ := m.split(dataset.Test, 0)
	x, _, err := m.features(dataset.Vision, ids)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := clf.Classify(x, len(ids)), back.Classify(x, len(ids)); !slices.Equal(a, b) || back.Accuracy != clf.Accuracy {
		t.Fatalf("the cached classifier tells %v (accuracy %v), the trained one %v (%v)", b, back.Accuracy, a, clf.Accuracy)
	}
	if _, err := LoadClassifier(path, dataset.Vision, vision.Pixels, "another dataset"); err == nil || !strings.Contains(err.Error(), "another dataset") {
		t.Fatalf("loading a classifier of another dataset: %v, want a refusal", err)
	}
}

// lastLayer returns the weight and bias of a net's last linear layer.
func lastLayer(s *nn.Sequential) (w, b *nn.Param) {
	ps := s.Params()
	return ps[len(ps)-2], ps[len(ps)-1]
}

// A language decoder that always says one caption (a bias-only last layer)
// makes every latent that caption's class.
func TestCaptionScorerKnownAnswer(t *testing.T) {
	m := openSmall(t)
	sc, err := m.newCaptionScorer()
	if err != nil {
		t.Fatal(err)
	}
	w, b := lastLayer(m.Language.Net().Dec)
	clear(w.W)
	z := make([]float32, 5*m.Latent)
	for i := range z {
		z[i] = float32(rand.NormFloat64())
	}
	v := m.Language.Vocab().Len()
	for c := range dataset.NumClasses {
		caps := sc.byClass[c]
		k := len(caps.IDs) / dataset.MaxTokens / 2 // some caption of the class
		for i := range b.W {
			b.W[i] = -5
		}
		for p, id := range caps.IDs[k*dataset.MaxTokens : (k+1)*dataset.MaxTokens] {
			b.W[p*v+int(id)] = 5
		}
		for i, got := range sc.classes(z, 5) {
			if got != c {
				t.Fatalf("a decoder that says %q: latent %d is class %d, want %d", captionText(m.Language, caps.IDs[k*dataset.MaxTokens:(k+1)*dataset.MaxTokens]), i, got, c)
			}
		}
	}
}

func captionText(l *language.Language, ids []int32) string { return l.Vocab().Decode(ids) }

// With encoders that always say N(0, I), the joint posterior fuses three
// such experts and the prior: precision 4, so KL = D/2·(1/4 − 1 + ln 4).
// With decoders that ignore z and output zeros, the vision log-likelihood is
// 784·ln ½ and the language one 8·ln(1/V), whatever the data.
func TestMeasureKnownAnswers(t *testing.T) {
	m := openSmall(t)
	for _, name := range m.Names() {
		net := m.Net(name)
		for _, s := range []*nn.Sequential{net.Enc, net.Dec} {
			w, b := lastLayer(s)
			clear(w.W)
			clear(b.W)
		}
	}
	clf, err := m.TrainClassifier(dataset.Vision, ClassifierConfig{Epochs: 1})
	if err != nil {
		t.Fatal(err)
	}
	q, err := m.Measure(clf, Settings{Items: 30, ELBOItems: 20, Chunk: 7})
	if err != nil {
		t.Fatal(err)
	}
	d := float64(m.Latent)
	wantKL := d / 2 * (0.25 - 1 + math.Log(4))
	v := float64(m.Language.Vocab().Len())
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"KL", q.TestKL, wantKL},
		{"vision log-likelihood", q.TestLogLik[dataset.Vision], 784 * math.Log(0.5)},
		{"language log-likelihood", q.TestLogLik[dataset.Language], dataset.MaxTokens * math.Log(1/v)},
		{"ELBO", q.TestELBO, q.TestLogLik[dataset.Vision] + q.TestLogLik[dataset.Language] + q.TestLogLik[dataset.Audio] - q.TestKL},
	} {
		if math.Abs(c.got-c.want) > 1e-3*math.Max(1, math.Abs(c.want)) {
			t.Errorf("%s %.5f, want %.5f", c.what, c.got, c.want)
		}
	}
	if q.ELBOItems != 20 || q.Items != 30 {
		t.Errorf("measured the ELBO on %d items and coherence on %d, want 20 and 30", q.ELBOItems, q.Items)
	}
	// Every image is the same (z is ignored), so every image coherence is
	// the share of the one class the classifier sees in it.
	if q.LanguageToImage != q.AudioToImage {
		t.Errorf("language → image %.3f and audio → image %.3f from a decoder that ignores z: want equal", q.LanguageToImage, q.AudioToImage)
	}
	if math.Abs(q.LabelToImage-0.1) > 1e-9 {
		t.Errorf("label → image %.3f from a decoder that ignores z: want exactly 1 class in 10", q.LabelToImage)
	}
}

// Measure changes no parameter and gives the same figures twice.
func TestMeasureIsRepeatableAndReadOnly(t *testing.T) {
	m := openSmall(t)
	clf, err := m.TrainClassifier(dataset.Vision, ClassifierConfig{Epochs: 1})
	if err != nil {
		t.Fatal(err)
	}
	var before [][]float32
	for _, name := range m.Names() {
		for _, p := range m.Net(name).Params() {
			before = append(before, slices.Clone(p.W))
		}
	}
	a, err := m.Measure(clf, Settings{Items: 40, ELBOItems: 40})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Measure(clf, Settings{Items: 40, ELBOItems: 40})
	if err != nil {
		t.Fatal(err)
	}
	if a.TestELBO != b.TestELBO || a.ImageToLabel != b.ImageToLabel || a.LabelToImage != b.LabelToImage {
		t.Fatalf("two runs: %+v and %+v", a, b)
	}
	k := 0
	for _, name := range m.Names() {
		for _, p := range m.Net(name).Params() {
			if !slices.Equal(p.W, before[k]) {
				t.Fatalf("Measure changed %s's %s", name, p.Name)
			}
			k++
		}
	}
	for _, acc := range []float64{a.ImageToLabel, a.AudioToLabel, a.JointToLabel, a.LanguageToImage, a.AudioToImage, a.LabelToImage} {
		if acc < 0 || acc > 1 {
			t.Fatalf("an accuracy of %v in %+v", acc, a)
		}
	}
}

// A model restored from the checkpoints Save wrote is the same model.
func TestSaveRestore(t *testing.T) {
	m := openSmall(t)
	dir := t.TempDir()
	w, _ := lastLayer(m.Vision.Net().Dec)
	w.W[3] = 0.125
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	m2 := openSmall(t)
	if err := m2.Restore(dir); err != nil {
		t.Fatal(err)
	}
	if w2, _ := lastLayer(m2.Vision.Net().Dec); w2.W[3] != 0.125 {
		t.Fatalf("restored %v, want 0.125", w2.W[3])
	}
	if err := m2.Restore(t.TempDir()); err == nil || !strings.Contains(err.Error(), "vision") {
		t.Fatalf("restoring from an empty directory: %v, want an error naming the vision checkpoint", err)
	}
}

// With decoders that ignore z, every generated observation is the same, so
// each coherence is the share of test items of the one class it is judged
// to be, and the unconditional coherence is 1 exactly when the three
// judged classes agree.
func TestCoherenceKnownAnswers(t *testing.T) {
	m := openSmall(t)
	for _, name := range m.Names() {
		w, _ := lastLayer(m.Net(name).Dec)
		clear(w.W)
	}
	var j Judges
	var err error
	if j.Vision, err = m.TrainClassifier(dataset.Vision, ClassifierConfig{Epochs: 2}); err != nil {
		t.Fatal(err)
	}
	if j.Audio, err = m.TrainClassifier(dataset.Audio, ClassifierConfig{Epochs: 2}); err != nil {
		t.Fatal(err)
	}
	c, err := m.Coherence(j, CoherenceConfig{Items: 30, Prior: 20, Chunk: 8})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Subsets) != 7 || len(c.Targets) != 3 || c.Items != 30 {
		t.Fatalf("%d subsets, %d targets, %d items: want 7, 3 and 30", len(c.Subsets), len(c.Targets), c.Items)
	}
	_, classes, _ := m.split(dataset.Test, 30)
	sc, _ := m.newCaptionScorer()
	z := make([]float32, m.Latent)
	var judged []int
	for ti, target := range c.Targets {
		k := m.judge(j, sc, target, z, 1)[0]
		judged = append(judged, k)
		share := 0.0
		for _, cl := range classes {
			if cl == k {
				share++
			}
		}
		share /= float64(len(classes))
		for si := range c.Subsets {
			if math.Abs(c.Acc[si][ti]-share) > 1e-12 {
				t.Fatalf("%s → %s: %.4f, want %.4f (the share of class %d)", SubsetName(c.Subsets[si]), target, c.Acc[si][ti], share, k)
			}
		}
	}
	want := 0.0
	if judged[0] == judged[1] && judged[1] == judged[2] {
		want = 1
	}
	if c.Unconditional != want {
		t.Fatalf("unconditional coherence %v with judged classes %v: want %v", c.Unconditional, judged, want)
	}
}
