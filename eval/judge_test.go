package eval_test

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/eval"
	"github.com/serket-go/serket/modules/fmnist3"
	"github.com/serket-go/serket/modules/language"
	"github.com/serket-go/serket/nn"
)

// builtin opens the three built-in modules on the test dataset (latent 8,
// 32 hidden units) with its labels; change, if given, sets their weights
// before they are served.
func builtin(t *testing.T, change func(*fmnist3.Model)) (*eval.Pipeline, *fmnist3.Model, *eval.Labels) {
	t.Helper()
	dir := datasettest.Dir(t)
	m, err := fmnist3.Open(dir, 8, 32)
	if err != nil {
		t.Fatal(err)
	}
	labels, err := eval.ReadLabels(dir)
	if err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(m)
	}
	return serve(t, "fm", labels, m.Vision, m.Language, m.Audio), m, labels
}

// lastLayer returns the weight and bias of a net's last linear layer.
func lastLayer(s *nn.Sequential) (w, b *nn.Param) {
	ps := s.Params()
	return ps[len(ps)-2], ps[len(ps)-1]
}

func randomLatents(n, d int) []float32 {
	z := make([]float32, n*d)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range z {
		z[i] = float32(rng.NormFloat64())
	}
	return z
}

// The classifier that judges images learns real images (240 of them) well
// above chance, and comes back from its cache telling the same classes
// without training again; a cache of other items is not taken for it.
func TestClassifierJudgeLearnsRealImages(t *testing.T) {
	p, m, _ := builtin(t, nil)
	ctx, cache := context.Background(), t.TempDir()
	judge := func(cfg eval.ClassifierConfig) (eval.Judge, []string) {
		t.Helper()
		var phases []string
		judges, _, err := p.Judges(ctx, eval.JudgeConfig{Cache: cache, Classifier: cfg, Progress: func(pr eval.Progress) { phases = appendNew(phases, pr.Phase) }})
		if err != nil {
			t.Fatal(err)
		}
		return judges[dataset.Vision], phases
	}
	trained, phases := judge(eval.ClassifierConfig{Epochs: 20})
	t.Logf("test accuracy %.3f after 20 epochs on %d images", trained.Accuracy(), datasettest.Items)
	if trained.Accuracy() < 0.5 || !slices.Contains(phases, "judge vision") {
		t.Fatalf("test accuracy %.3f (phases %v): want a trained judge of at least 0.5 (chance 0.1)", trained.Accuracy(), phases)
	}
	cached, phases := judge(eval.ClassifierConfig{Epochs: 20})
	z := randomLatents(50, m.Latent)
	a, err := trained.Classes(ctx, z, 50)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cached.Classes(ctx, z, 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(phases) != 0 || !slices.Equal(a, b) || cached.Accuracy() != trained.Accuracy() {
		t.Fatalf("the cached judge (phases %v) tells %v (accuracy %v), the trained one %v (%v)", phases, b, cached.Accuracy(), a, trained.Accuracy())
	}
	if _, phases := judge(eval.ClassifierConfig{Epochs: 1, Limit: 100}); !slices.Contains(phases, "judge vision") {
		t.Fatalf("a judge of 100 items came from the cache of one of every item (phases %v)", phases)
	}
}

// A language decoder that always says one caption (a bias-only last layer)
// makes the ranking judge call every latent that caption's class.
func TestRankJudgeKnownAnswer(t *testing.T) {
	dir := datasettest.Dir(t)
	labels, err := eval.ReadLabels(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids, classes, err := labels.Split(dataset.Train, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []int{0, 4, 9} {
		i := slices.Index(classes, c)
		p, m, _ := builtin(t, func(m *fmnist3.Model) {
			b, _, err := m.Language.LoadBatch(ids[i : i+1])
			if err != nil {
				t.Fatal(err)
			}
			w, bias := lastLayer(m.Language.Net().Dec)
			clear(w.W)
			v := m.Language.Vocab().Len()
			for k := range bias.W {
				bias.W[k] = -5
			}
			for pos, tok := range b.(*language.Captions).IDs {
				bias.W[pos*v+int(tok)] = 5
			}
		})
		judges, _, err := p.Judges(context.Background(), eval.JudgeConfig{Classifier: eval.ClassifierConfig{Epochs: 1}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := judges[dataset.Language].Classes(context.Background(), randomLatents(5, m.Latent), 5)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []int{c, c, c, c, c}) {
			t.Fatalf("a decoder that always says item %d's caption (class %d): classes %v", ids[i], c, got)
		}
	}
}

// With decoders that ignore z, every generation is the same, so each
// coherence is the share of test items of the one class it is judged to
// be, and the unconditional coherence is 1 exactly when the judged classes
// agree.
func TestCoherenceKnownAnswers(t *testing.T) {
	p, m, labels := builtin(t, func(m *fmnist3.Model) {
		for _, name := range m.Names() {
			w, _ := lastLayer(m.Net(name).Dec)
			clear(w.W)
		}
	})
	ctx := context.Background()
	judges, _, err := p.Judges(ctx, eval.JudgeConfig{Classifier: eval.ClassifierConfig{Epochs: 2}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Coherence(ctx, judges, eval.CoherenceConfig{Items: 30, Prior: 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Subsets) != 7 || len(c.Targets) != 3 || c.Items != 30 || c.PriorSamples != 20 {
		t.Fatalf("%d subsets, %d targets, %d items, %d prior samples: want 7, 3, 30 and 20", len(c.Subsets), len(c.Targets), c.Items, c.PriorSamples)
	}
	_, classes, err := labels.Split(dataset.Test, 30)
	if err != nil {
		t.Fatal(err)
	}
	var judged []int
	for ti, target := range c.Targets {
		k, err := judges[target].Classes(ctx, make([]float32, m.Latent), 1)
		if err != nil {
			t.Fatal(err)
		}
		judged = append(judged, k[0])
		share := float64(count(classes, k[0])) / float64(len(classes))
		for si := range c.Subsets {
			if math.Abs(c.Acc[si][ti]-share) > 1e-12 {
				t.Fatalf("%s → %s: %.4f, want %.4f (the share of class %d)", eval.SubsetName(c.Subsets[si]), target, c.Acc[si][ti], share, k[0])
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

func count(s []int, v int) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}
