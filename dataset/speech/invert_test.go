package speech_test

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/serket-go/serket/dataset/speech"
)

// logMelDiff returns the mean absolute difference between features a and
// b, in nats (the extractor's units), over all values and over the values
// where either is above the floor; b is shifted by the number of frames in
// [-1, 1] that matches best (LogMel re-centres the utterance it finds and
// may land a frame off), which it also returns. Only frames present in
// both are compared.
func logMelDiff(cfg speech.Config, a, b []float32) (all, active float64, shift int) {
	all = math.Inf(1)
	for s := -1; s <= 1; s++ {
		var sum, sumAct float64
		var n, nAct int
		for t := max(0, -s); t < min(cfg.Frames, cfg.Frames-s); t++ {
			for j := range cfg.Mels {
				x, y := a[t*cfg.Mels+j], b[(t+s)*cfg.Mels+j]
				d := math.Abs(float64(x - y))
				sum += d
				n++
				if x > cfg.Floor || y > cfg.Floor {
					sumAct += d
					nAct++
				}
			}
		}
		if m := sum / float64(n); m < all {
			all, active, shift = m, sumAct/float64(max(nAct, 1)), s
		}
	}
	return all, active, shift
}

func reverseFrames(cfg speech.Config, f []float32) []float32 {
	r := make([]float32, len(f))
	for t := range cfg.Frames {
		copy(r[t*cfg.Mels:(t+1)*cfg.Mels], f[(cfg.Frames-1-t)*cfg.Mels:])
	}
	return r
}

func invert(t *testing.T, cfg speech.Config, f []float32, iters int) []float32 {
	t.Helper()
	y, err := speech.Invert(cfg, f, iters)
	if err != nil {
		t.Fatal(err)
	}
	if want := (cfg.Frames-1)*cfg.Hop + cfg.Win; len(y) != want {
		t.Fatalf("%d samples, want (Frames-1)·Hop+Win = %d", len(y), want)
	}
	if !finite(y) {
		t.Fatal("non-finite samples")
	}
	return y
}

// TestInvertRoundTrip inverts the features of spoken words, clean and in
// noise as the pool renders them, and re-extracts: the features must come
// back close, much closer than from white noise or from the inversion of
// the frames in reverse order, and closer after Griffin-Lim's iterations
// than after one.
func TestInvertRoundTrip(t *testing.T) {
	cfg := speech.DefaultConfig()
	e := speech.NewExtractor(cfg)
	v := trainVoice(t)
	for _, word := range []string{"sneaker", "ankle boot"} {
		x := say(t, word, v, cfg.SampleRate)
		noisy := make([]float32, len(x)+cfg.SampleRate) // 0.5 s either side
		copy(noisy[cfg.SampleRate/2:], x)
		speech.AddNoise(noisy, 20, rand.New(rand.NewPCG(1, 2)))
		for _, c := range []struct {
			name string
			x    []float32
		}{{"clean", x}, {"noisy", noisy}} {
			t.Run(word+"/"+c.name, func(t *testing.T) {
				f := make([]float32, cfg.Size())
				e.LogMel(f, c.x)
				g := make([]float32, cfg.Size())

				start := time.Now()
				y := invert(t, cfg, f, 0)
				took := time.Since(start)
				e.LogMel(g, y)
				all, act, shift := logMelDiff(cfg, f, g)

				e.LogMel(g, invert(t, cfg, f, 1))
				all1, act1, shift1 := logMelDiff(cfg, f, g)

				e.LogMel(g, invert(t, cfg, reverseFrames(cfg, f), 0))
				allRev, actRev, _ := logMelDiff(cfg, f, g)

				// White noise of the same length and energy as y.
				noise := make([]float32, len(y))
				var energy float64
				for _, s := range y {
					energy += float64(s) * float64(s)
				}
				sigma := math.Sqrt(energy / float64(len(y)))
				r := rand.New(rand.NewPCG(3, 4))
				for i := range noise {
					noise[i] = float32(sigma * r.NormFloat64())
				}
				e.LogMel(g, noise)
				allNoise, actNoise, _ := logMelDiff(cfg, f, g)

				t.Logf("mean |Δ log-mel| (nats), all values / above the floor:")
				t.Logf("  Invert, %d iterations: %.3f / %.3f (shift %d; %v)", speech.DefaultInvertIters, all, act, shift, took.Round(time.Millisecond))
				t.Logf("  Invert, 1 iteration:   %.3f / %.3f (shift %d)", all1, act1, shift1)
				t.Logf("  frames reversed:       %.3f / %.3f", allRev, actRev)
				t.Logf("  white noise:           %.3f / %.3f", allNoise, actNoise)

				if all > 0.15 || act > 0.25 {
					t.Errorf("round-trip error %.3f (%.3f above the floor), want ≤ 0.15 (0.25)", all, act)
				}
				if allRev < 5*all || allRev < 1 {
					t.Errorf("reversed frames score %.3f against %.3f: the measure does not tell a wrong inversion apart", allRev, all)
				}
				if allNoise < 10*all || allNoise < 2 {
					t.Errorf("white noise scores %.3f against %.3f: the measure does not tell noise apart", allNoise, all)
				}
				if all >= 0.7*all1 {
					t.Errorf("error %.3f after %d iterations, %.3f after 1: Griffin-Lim does not help", all, speech.DefaultInvertIters, all1)
				}

				// The output goes through a 16-bit WAV file unharmed.
				var buf bytes.Buffer
				if err := speech.WriteWAV(&buf, y, cfg.SampleRate); err != nil {
					t.Fatal(err)
				}
				if err := e.FromWAV(g, &buf); err != nil {
					t.Fatal(err)
				}
				if a, _, _ := logMelDiff(cfg, f, g); a > all+0.05 {
					t.Errorf("error %.3f through a WAV file, %.3f without", a, all)
				}
			})
		}
	}
}

func TestInvertDeterministic(t *testing.T) {
	cfg := speech.DefaultConfig()
	e := speech.NewExtractor(cfg)
	f := make([]float32, cfg.Size())
	x := sine(cfg.SampleRate/2, 440, 0.3, cfg.SampleRate)
	for i := range x {
		x[i] *= float32(math.Sin(math.Pi * float64(i) / float64(len(x)))) // fade in and out
	}
	e.LogMel(f, x)
	in := slices.Clone(f)
	a := invert(t, cfg, f, 20)
	b := invert(t, cfg, f, 20)
	if !slices.Equal(a, b) {
		t.Error("two calls gave different samples")
	}
	if !slices.Equal(f, in) {
		t.Error("Invert changed its input")
	}
	var peak float64
	for _, v := range a {
		peak = max(peak, math.Abs(float64(v)))
	}
	if math.Abs(peak-0.5) > 1e-6 {
		t.Errorf("peak %v, want 0.5", peak)
	}
	// All at the floor is silence.
	for i := range f {
		f[i] = cfg.Floor
	}
	if y := invert(t, cfg, f, 5); slices.ContainsFunc(y, func(v float32) bool { return v != 0 }) {
		t.Error("features all at the floor gave sound")
	}
}

func TestInvertErrors(t *testing.T) {
	cfg := speech.DefaultConfig()
	ok := make([]float32, cfg.Size())
	withValue := func(i int, v float32) []float32 {
		f := slices.Clone(ok)
		f[i] = v
		return f
	}
	bad := cfg
	bad.Hop = 0
	tests := []struct {
		name    string
		cfg     speech.Config
		feats   []float32
		iters   int
		is      error
		wantErr string
	}{
		{"nil", cfg, nil, 0, speech.ErrInvalidFeatures, "0 values, want Frames×Mels = 80×32 = 2560"},
		{"short", cfg, ok[:cfg.Size()-1], 0, speech.ErrInvalidFeatures, "2559 values"},
		{"long", cfg, append(slices.Clone(ok), 0), 0, speech.ErrInvalidFeatures, "2561 values"},
		{"NaN", cfg, withValue(33, float32(math.NaN())), 0, speech.ErrInvalidFeatures, "value 33 (frame 1, band 1) is NaN"},
		{"+Inf", cfg, withValue(cfg.Size()-1, float32(math.Inf(1))), 0, speech.ErrInvalidFeatures, "(frame 79, band 31) is +Inf"},
		{"-Inf", cfg, withValue(0, float32(math.Inf(-1))), 0, speech.ErrInvalidFeatures, "is -Inf"},
		{"negative iterations", cfg, ok, -1, nil, "-1 iterations"},
		{"bad config", bad, ok, 0, speech.ErrInvalidConfig, "hop of 0 samples"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y, err := speech.Invert(tt.cfg, tt.feats, tt.iters)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
			if y != nil {
				t.Errorf("%d samples along with the error", len(y))
			}
		})
	}
}
