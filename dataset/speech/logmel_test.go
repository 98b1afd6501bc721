package speech_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/serket-go/serket/dataset/speech"
)

func TestLogMelUtterance(t *testing.T) {
	cfg := speech.DefaultConfig()
	x := say(t, "ankle boot", trainVoice(t), cfg.SampleRate)
	e := speech.NewExtractor(cfg)
	got := make([]float32, cfg.Frames*cfg.Mels)
	e.LogMel(got, x)
	if !finite(got) {
		t.Fatal("non-finite features")
	}
	if m := slices.Max(got); m != 0 {
		t.Errorf("max %v, want 0 (the loudest band)", m)
	}
	if m := slices.Min(got); m < cfg.Floor {
		t.Errorf("min %v below the floor %v", m, cfg.Floor)
	}
	above := 0
	for _, v := range got {
		if v > cfg.Floor+1 {
			above++
		}
	}
	if above < len(got)/4 {
		t.Errorf("only %d of %d values above the floor: the utterance is missing", above, len(got))
	}
	again := make([]float32, len(got))
	e.LogMel(again, x)
	if !slices.Equal(got, again) {
		t.Error("a second call differs")
	}
	speech.NewExtractor(cfg).LogMel(again, slices.Clone(x))
	if !slices.Equal(got, again) {
		t.Error("a fresh extractor differs")
	}
	// The input gain does not matter.
	quiet := slices.Clone(x)
	for i := range quiet {
		quiet[i] *= 0.01
	}
	e.LogMel(again, quiet)
	if d := maxAbsDiff(got, again); d > 1e-3 {
		t.Errorf("features of the signal at -40 dB differ by up to %v", d)
	}
}

// frameEnergy returns the summed exp(feature) per frame.
func frameEnergy(f []float32, mels int) []float64 {
	e := make([]float64, len(f)/mels)
	for i, v := range f {
		e[i/mels] += math.Exp(float64(v))
	}
	return e
}

// centroid returns the energy-weighted mean frame.
func centroid(f []float32, mels int) float64 {
	var s, w float64
	for t, e := range frameEnergy(f, mels) {
		s += float64(t) * e
		w += e
	}
	return s / w
}

// TestLogMelCentres checks that the utterance lands in the middle of the
// window wherever it lies in the signal, with or without noise around it.
func TestLogMelCentres(t *testing.T) {
	cfg := speech.DefaultConfig()
	e := speech.NewExtractor(cfg)
	x := say(t, "coat", trainVoice(t), cfg.SampleRate)
	ref := make([]float32, cfg.Size())
	e.LogMel(ref, x)
	mid := float64(cfg.Frames-1) / 2
	if c := centroid(ref, cfg.Mels); math.Abs(c-mid) > 8 {
		t.Errorf("energy centroid at frame %.1f, want near %.1f", c, mid)
	}
	got := make([]float32, cfg.Size())
	for _, lead := range []int{0, 37, 160 * 40, 16000 * 2} {
		y := make([]float32, lead+len(x)+8000)
		copy(y[lead:], x)
		e.LogMel(got, y)
		if lead%cfg.Hop == 0 {
			if !slices.Equal(got, ref) {
				t.Errorf("%d samples of silence in front changed the features", lead)
			}
		} else if c, c0 := centroid(got, cfg.Mels), centroid(ref, cfg.Mels); math.Abs(c-c0) > 1 {
			t.Errorf("%d samples in front moved the centroid from %.1f to %.1f", lead, c0, c)
		}
	}
	// Noise 20 dB below the speech all around it: the loudest frame stays
	// where it was, wherever the speech starts.
	rng := rand.New(rand.NewPCG(1, 2))
	var sum float64
	for _, v := range x {
		sum += float64(v) * float64(v)
	}
	sigma := math.Sqrt(sum/float64(len(x))) / 10
	want := argmax(frameEnergy(ref, cfg.Mels))
	for _, lead := range []int{8000, 8000 + 160*30 + 7, 40000} {
		y := make([]float32, lead+len(x)+32000)
		copy(y[lead:], x)
		for i := range y {
			y[i] += float32(sigma * rng.NormFloat64())
		}
		e.LogMel(got, y)
		if peak := argmax(frameEnergy(got, cfg.Mels)); peak < want-2 || peak > want+2 {
			t.Errorf("noisy, %d samples in front: loudest frame %d, want %d±2", lead, peak, want)
		}
	}
}

func TestLogMelTone(t *testing.T) {
	cfg := speech.DefaultConfig()
	e := speech.NewExtractor(cfg)
	fb := e.FilterBank()
	got := make([]float32, cfg.Size())
	for _, f := range []float64{250, 1000, 3000, 6000} {
		e.LogMel(got, sine(cfg.SampleRate/2, f, 0.5, cfg.SampleRate))
		band := make([]float64, cfg.Mels)
		for i, v := range got {
			band[i%cfg.Mels] += float64(v)
		}
		peak := argmax(band)
		bin := int(f * float64(cfg.NFFT) / float64(cfg.SampleRate))
		var col []float64
		for _, row := range fb {
			col = append(col, float64(row[bin]))
		}
		if want := argmax(col); peak != want {
			t.Errorf("%.0f Hz: energy peaks in band %d, want %d (the band containing %.0f Hz)", f, peak, want, f)
		}
	}
}

func argmax(x []float64) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

func TestLogMelSilence(t *testing.T) {
	cfg := speech.DefaultConfig()
	e := speech.NewExtractor(cfg)
	got := make([]float32, cfg.Size())
	for name, x := range map[string][]float32{
		"nil":      nil,
		"1 sample": {0},
		"1 s":      make([]float32, cfg.SampleRate),
		"NaN":      {float32(math.NaN()), 0, float32(math.Inf(1))},
	} {
		for i := range got {
			got[i] = 1
		}
		e.LogMel(got, x)
		for i, v := range got {
			if v != cfg.Floor {
				t.Errorf("%s: value %d is %v, want the floor %v", name, i, v, cfg.Floor)
				break
			}
		}
	}
}

func TestLogMelAllocs(t *testing.T) {
	cfg := speech.DefaultConfig()
	e := speech.NewExtractor(cfg)
	x := sine(cfg.SampleRate, 440, 0.5, cfg.SampleRate)
	dst := make([]float32, cfg.Size())
	e.LogMel(dst, x)
	if n := testing.AllocsPerRun(10, func() { e.LogMel(dst, x) }); n != 0 {
		t.Errorf("LogMel allocates %v times per call", n)
	}
}

func TestLogMelPanicsOnBadDst(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for a dst of the wrong length")
		}
	}()
	speech.NewExtractor(speech.DefaultConfig()).LogMel(make([]float32, 3), nil)
}

func TestFilterBank(t *testing.T) {
	cfg := speech.DefaultConfig()
	fb := speech.NewExtractor(cfg).FilterBank()
	bins := cfg.NFFT/2 + 1
	if len(fb) != cfg.Mels {
		t.Fatalf("%d filters, want %d", len(fb), cfg.Mels)
	}
	hz := func(k int) float64 { return float64(k) * float64(cfg.SampleRate) / float64(cfg.NFFT) }
	prev := -1
	for m, row := range fb {
		if len(row) != bins {
			t.Fatalf("filter %d has %d bins, want %d", m, len(row), bins)
		}
		peak := 0
		for k, w := range row {
			if w < 0 || w > 1 {
				t.Errorf("filter %d bin %d weight %v outside [0, 1]", m, k, w)
			}
			if w > row[peak] {
				peak = k
			}
		}
		if peak <= prev {
			t.Errorf("filter %d peaks at %.0f Hz, not above filter %d's %.0f Hz", m, hz(peak), m-1, hz(prev))
		}
		prev = peak
	}
	if first := slices.Index(fb[0], slices.Max(fb[0])); hz(first) > 100 {
		t.Errorf("the first filter peaks at %.0f Hz; want the range to start near 0", hz(first))
	}
	if hz(prev) < 0.85*float64(cfg.SampleRate)/2 {
		t.Errorf("the last filter peaks at %.0f Hz; want the range to reach near %d Hz", hz(prev), cfg.SampleRate/2)
	}
	for k := 1; k < bins-1; k++ {
		var s float32
		for _, row := range fb {
			s += row[k]
		}
		if s <= 0 {
			t.Errorf("no filter covers bin %d (%.0f Hz)", k, hz(k))
		}
	}
	// The copy is the caller's.
	fb[0][1] = 42
	if speech.NewExtractor(cfg).FilterBank()[0][1] == 42 {
		t.Error("FilterBank returns the extractor's own slices")
	}
}

func TestConfigValidate(t *testing.T) {
	ok := speech.DefaultConfig()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(*speech.Config)
	}{
		{"zero rate", func(c *speech.Config) { c.SampleRate = 0 }},
		{"NFFT below window", func(c *speech.Config) { c.NFFT = 256 }},
		{"zero hop", func(c *speech.Config) { c.Hop = 0 }},
		{"no mels", func(c *speech.Config) { c.Mels = 0 }},
		{"too many mels", func(c *speech.Config) { c.Mels = 1000 }},
		{"no frames", func(c *speech.Config) { c.Frames = 0 }},
		{"positive floor", func(c *speech.Config) { c.Floor = 1 }},
		{"NaN floor", func(c *speech.Config) { c.Floor = float32(math.NaN()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.change(&c)
			if err := c.Validate(); err == nil {
				t.Error("no error")
			}
		})
	}
}
