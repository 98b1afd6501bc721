package speech_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/serket-go/serket/dataset/speech"
)

func TestBuildPool(t *testing.T) {
	words := []string{"bag", "ankle boot"}
	pc := speech.PoolConfig{Words: words, PerWordTrain: 3, PerWordTest: 2, SNRMin: 10, SNRMax: 30, Seed: 7, Workers: 1}
	var calls, last int
	pc.Progress = func(done, total int) {
		calls++
		if done != calls || total != 10 {
			t.Errorf("progress (%d, %d) at call %d, want (%d, 10)", done, total, calls, calls)
		}
		last = done
	}
	one, err := speech.BuildPool(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	if last != 10 {
		t.Errorf("progress ended at %d, want 10", last)
	}
	cfg := speech.DefaultConfig()
	if one.Config != cfg {
		t.Errorf("config %+v, want the default", one.Config)
	}
	size := cfg.Size()
	if len(one.Train) != 6*size || len(one.Test) != 4*size {
		t.Fatalf("%d and %d train and test values, want %d and %d", len(one.Train), len(one.Test), 6*size, 4*size)
	}
	if !slices.Equal(one.TrainWord, []int{0, 0, 0, 1, 1, 1}) || !slices.Equal(one.TestWord, []int{0, 0, 1, 1}) {
		t.Errorf("words %v and %v", one.TrainWord, one.TestWord)
	}
	train, test := speech.Voices()
	for _, v := range one.TrainVoice {
		if !slices.Contains(train, v) {
			t.Errorf("train utterance spoken by %v, not a train voice", v)
		}
	}
	for _, v := range one.TestVoice {
		if !slices.Contains(test, v) {
			t.Errorf("test utterance spoken by %v, not a test voice", v)
		}
	}
	for i := range 6 {
		u := one.Train[i*size : (i+1)*size]
		if !finite(u) || slices.Max(u) != 0 || slices.Min(u) < cfg.Floor {
			t.Errorf("train utterance %d: finite %v, range [%v, %v]", i, finite(u), slices.Min(u), slices.Max(u))
		}
	}

	pc.Workers, pc.Progress = 2, nil
	two, err := speech.BuildPool(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(one.Train, two.Train) || !slices.Equal(one.Test, two.Test) || !slices.Equal(one.TrainVoice, two.TrainVoice) {
		t.Error("Workers 1 and 2 give different pools")
	}

	pc.Seed = 8
	other, err := speech.BuildPool(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		a, b := one.Train[i*size:(i+1)*size], other.Train[i*size:(i+1)*size]
		if slices.Equal(a, b) {
			t.Errorf("seeds 7 and 8 give the same train utterance %d", i)
		}
	}
}

// TestBuildPoolNoise checks that the SNR range is what the features show:
// noise 10 dB down fills the frames around the word, none leaves them at
// the floor.
func TestBuildPoolNoise(t *testing.T) {
	level := func(snr float64) float64 {
		pc := speech.PoolConfig{Words: []string{"bag"}, PerWordTrain: 2, SNRMin: snr, SNRMax: snr, Seed: 1}
		p, err := speech.BuildPool(context.Background(), pc)
		if err != nil {
			t.Fatal(err)
		}
		// The first frame is well away from the short word.
		var s float64
		for _, v := range p.Train[:p.Config.Mels] {
			s += float64(v)
		}
		return s / float64(p.Config.Mels)
	}
	floor := float64(speech.DefaultConfig().Floor)
	if l := level(math.Inf(1)); l != floor {
		t.Errorf("no noise: first frame at %.2f, want the floor %.2f", l, floor)
	}
	l10, l30 := level(10), level(30)
	if !(l10 > l30+2 && l30 > floor+1) {
		t.Errorf("first frame at %.2f with 10 dB SNR and %.2f with 30 dB; want clearly above the floor %.2f and ordered", l10, l30, floor)
	}
}

func TestBuildPoolErrors(t *testing.T) {
	ok := speech.PoolConfig{Words: []string{"bag"}, PerWordTrain: 1}
	tests := []struct {
		name   string
		change func(*speech.PoolConfig)
	}{
		{"no words", func(pc *speech.PoolConfig) { pc.Words = nil }},
		{"empty word", func(pc *speech.PoolConfig) { pc.Words = []string{"bag", ""} }},
		{"negative count", func(pc *speech.PoolConfig) { pc.PerWordTest = -1 }},
		{"reversed SNR", func(pc *speech.PoolConfig) { pc.SNRMin, pc.SNRMax = 30, 10 }},
		{"half infinite SNR", func(pc *speech.PoolConfig) { pc.SNRMin, pc.SNRMax = 10, math.Inf(1) }},
		{"bad config", func(pc *speech.PoolConfig) { pc.Config = speech.DefaultConfig(); pc.Config.Hop = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc := ok
			tt.change(&pc)
			if _, err := speech.BuildPool(context.Background(), pc); !errors.Is(err, speech.ErrInvalidConfig) {
				t.Errorf("error %v, want ErrInvalidConfig", err)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := speech.BuildPool(ctx, ok); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: error %v, want context.Canceled", err)
	}
}
