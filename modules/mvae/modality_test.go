package mvae_test

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/module/moduletest"
	"github.com/serket-go/serket/modules/mvae"
)

// synth is the least a modality on mvae networks can be: rows of width
// values per item, made from the item's id, so that the suite has data.
type synth struct {
	*mvae.Modality[*mvae.Rows]
	width int
}

var _ module.Loader = (*synth)(nil)

const items = 1000 // ids 0 to items-1 exist

func (s *synth) LoadBatch(ids []uint64) (module.Batch, []bool, error) {
	x := &mvae.Rows{N: len(ids), X: make([]float32, len(ids)*s.width)}
	for i, id := range ids {
		if id >= items {
			return nil, nil, fmt.Errorf("no item %d", id)
		}
		for j := range s.width {
			// In (0, 1), so that the Bernoulli likelihood can score it too.
			x.X[i*s.width+j] = float32(0.5 + 0.45*math.Sin(float64(id)*1.7+float64(j)))
		}
	}
	present := make([]bool, len(ids))
	for i := range present {
		present[i] = ids[i]%5 != 4 // some absent rows, as a pairing mask gives
	}
	return x, present, nil
}

func newSynth(lik mvae.Likelihood, meta map[string]string, check func(map[string]string) error) (*synth, error) {
	const width = 6
	m, err := mvae.NewModality[*mvae.Rows](mvae.Parts{
		Kind: "synth", Net: mvae.Config{Latent: 4, Hidden: 16, In: width, Out: width, Seed: 1},
		Likelihood: lik, Meta: meta, Check: check,
	})
	if err != nil {
		return nil, err
	}
	return &synth{Modality: m, width: width}, nil
}

// vocabCheck refuses a checkpoint whose "vocab" is not want, as language's
// does.
func vocabCheck(want string) func(map[string]string) error {
	return func(meta map[string]string) error {
		if meta["vocab"] != want {
			return fmt.Errorf("vocabulary %q, want %q", meta["vocab"], want)
		}
		return nil
	}
}

// TestConformance runs the suite on what mvae.Modality forwards, once per
// likelihood, and through both of Restore's paths.
func TestConformance(t *testing.T) {
	for _, tt := range []struct {
		name  string
		lik   mvae.Likelihood
		meta  map[string]string
		check func(map[string]string) error
	}{
		{"gaussian", mvae.Gaussian{LogVar: -1}, nil, nil},
		{"bernoulli with checked metadata", mvae.Bernoulli{}, map[string]string{"vocab": "a b"}, vocabCheck("a b")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			moduletest.Run(t, moduletest.Config{
				New:    func() (module.Modality, error) { return newSynth(tt.lik, tt.meta, tt.check) },
				BadIDs: []uint64{items, 1 << 40},
			})
		})
	}
}

func TestSpec(t *testing.T) {
	s, err := newSynth(mvae.Bernoulli{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := module.Spec{Name: "synth", Latent: 4, Likelihood: "bernoulli"}
	if got := s.Spec(); got != want {
		t.Fatalf("Spec() = %+v, want %+v (the name defaults to the kind)", got, want)
	}
	for _, p := range []mvae.Parts{
		{Kind: "synth", Name: "Not A Name", Net: mvae.Config{In: 1, Out: 1}, Likelihood: mvae.Gaussian{}},
		{Kind: "synth", Net: mvae.Config{In: 1, Out: 1}},
		{Kind: "synth", Net: mvae.Config{In: 0, Out: 1}, Likelihood: mvae.Gaussian{}},
	} {
		if _, err := mvae.NewModality[*mvae.Rows](p); err == nil || !strings.HasPrefix(err.Error(), "synth: ") {
			t.Errorf("NewModality(%+v): %v, want an error starting with the kind", p, err)
		}
	}
}

// TestRestoreChecksMetadata: a checkpoint Check refuses changes nothing,
// and one it accepts is restored.
func TestRestoreChecksMetadata(t *testing.T) {
	x, _, _ := (&synth{width: 6}).LoadBatch([]uint64{1, 2, 3})
	encode := func(s *synth) []float32 {
		mu, lv := make([]float32, 3*4), make([]float32, 3*4)
		if err := s.Encode(x, mu, lv); err != nil {
			t.Fatal(err)
		}
		return append(mu, lv...)
	}
	var ckpt bytes.Buffer
	src, _ := newSynth(mvae.Gaussian{}, map[string]string{"vocab": "a b"}, nil)
	src.Net().Params()[0].W[0] += 1 // differ from a fresh network
	if err := src.Save(&ckpt); err != nil {
		t.Fatal(err)
	}

	other, _ := newSynth(mvae.Gaussian{}, map[string]string{"vocab": "b a"}, vocabCheck("b a"))
	before := encode(other)
	if err := other.Restore(bytes.NewReader(ckpt.Bytes())); err == nil || !strings.Contains(err.Error(), "vocabulary") {
		t.Fatalf("Restore of a checkpoint over another vocabulary: %v, want Check's error", err)
	}
	if !slices.Equal(encode(other), before) {
		t.Fatal("a refused Restore changed the modality")
	}
	same, _ := newSynth(mvae.Gaussian{}, nil, vocabCheck("a b"))
	if err := same.Restore(bytes.NewReader(ckpt.Bytes())); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(encode(same), encode(src)) {
		t.Fatal("after an accepted Restore the modality encodes differently from the one saved")
	}
}

// counter counts the bytes read from it.
type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestRestoreReadsWithinTheBound: Restore with a Check reads the checkpoint
// whole, so it stops at what a checkpoint of the network can hold.
func TestRestoreReadsWithinTheBound(t *testing.T) {
	s, _ := newSynth(mvae.Gaussian{}, nil, vocabCheck(""))
	bound := s.Net().CheckpointBound()
	var params int64
	for _, p := range s.Net().Params() {
		params += int64(len(p.W))
	}
	if want := 12*params + 1<<20; bound != want {
		t.Fatalf("CheckpointBound() = %d, want %d: parameters and Adam's two moments, 4 bytes each, and 1 MiB", bound, want)
	}
	r := &counter{r: bytes.NewReader(make([]byte, 4*bound))}
	err := s.Restore(r)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(bound)) {
		t.Fatalf("Restore of %d bytes: %v, want an error naming the bound %d", 4*bound, err, bound)
	}
	if r.n > bound+1 {
		t.Fatalf("Restore read %d bytes, past the bound %d", r.n, bound)
	}
}

// TestCallerMistakes: a batch of another type or width, or latents of
// another size, are errors naming what is wrong, not panics inside nn.
func TestCallerMistakes(t *testing.T) {
	s, _ := newSynth(mvae.Gaussian{}, nil, nil)
	mu, lv := make([]float32, 2*4), make([]float32, 2*4)
	for _, tt := range []struct {
		name string
		x    module.Batch
		want string
	}{
		{"another type", otherBatch{}, "want *mvae.Rows"},
		{"another width", &mvae.Rows{N: 2, X: make([]float32, 2*5)}, "want 6 a row"},
	} {
		if err := s.Encode(tt.x, mu, lv); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Encode of %s: %v, want an error saying %q", tt.name, err, tt.want)
		}
		if err := s.Decode(mu, tt.x, nil, make([]float32, 2), mu); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode of %s: %v, want an error saying %q", tt.name, err, tt.want)
		}
		if err := s.LogLik(mu, tt.x, make([]float32, 2)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LogLik of %s: %v, want an error saying %q", tt.name, err, tt.want)
		}
	}
	if _, err := s.Output(make([]float32, 7), 2); err == nil {
		t.Error("Output of 7 latent values for 2 rows of 4 succeeded")
	}
	if out, err := s.Output(make([]float32, 8), 2); err != nil || len(out) != 2*6 {
		t.Errorf("Output of 2 latents: %d values, %v; want 12", len(out), err)
	}
}

type otherBatch struct{}

func (otherBatch) Len() int { return 2 }

// TestFeatures: an observation's features are its input values, and a
// generation's are the likelihood's mean at the decoder's output: the
// probabilities of a Bernoulli, the outputs themselves for a Gaussian.
func TestFeatures(t *testing.T) {
	z := []float32{0.3, -1, 2, 0.5, -0.2, 0.1, 1, -2}
	for _, tt := range []struct {
		lik  mvae.Likelihood
		mean func(out float32) float32
	}{
		{mvae.Bernoulli{}, func(o float32) float32 { return float32(1 / (1 + math.Exp(-float64(o)))) }},
		{mvae.Gaussian{LogVar: 1}, func(o float32) float32 { return o }},
	} {
		s, _ := newSynth(tt.lik, nil, nil)
		x, _, _ := s.LoadBatch([]uint64{3, 9})
		if s.FeatureLen() != s.width {
			t.Fatalf("FeatureLen() = %d, want the input's %d", s.FeatureLen(), s.width)
		}
		feats := make([]float32, 2*s.width)
		if err := s.Features(x, feats); err != nil || !slices.Equal(feats, x.(*mvae.Rows).X) {
			t.Fatalf("%s: Features %v, %v; want the input values %v", tt.lik.Name(), feats, err, x.(*mvae.Rows).X)
		}
		means := make([]float32, 2*s.width)
		if err := s.Means(z, 2, means); err != nil {
			t.Fatal(err)
		}
		out, _ := s.Output(z, 2)
		for i, o := range out {
			if d := means[i] - tt.mean(o); d > 1e-6 || d < -1e-6 {
				t.Fatalf("%s: mean %d is %v at output %v, want %v", tt.lik.Name(), i, means[i], o, tt.mean(o))
			}
		}
		if err := s.Means(z, 2, means[1:]); err == nil {
			t.Errorf("%s: Means into a buffer of the wrong size succeeded", tt.lik.Name())
		}
	}
}
