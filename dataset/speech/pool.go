package speech

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
)

// The noise range [BuildPool] uses when PoolConfig leaves both bounds 0.
const (
	DefaultSNRMin = 10.0 // dB
	DefaultSNRMax = 30.0 // dB
)

// PoolConfig says what [BuildPool] renders.
type PoolConfig struct {
	Words        []string // the texts to speak, e.g. the class names; word i has index i
	PerWordTrain int      // utterances per word with train voices
	PerWordTest  int      // utterances per word with test voices
	// SNRMin and SNRMax bound the signal-to-noise ratio in dB, drawn
	// uniformly per utterance, of the white Gaussian noise added to it
	// (relative to the RMS of the speech, silences excluded). Both 0 means
	// DefaultSNRMin..DefaultSNRMax; both +Inf means no noise.
	SNRMin, SNRMax float64
	Seed           uint64                // fixes voice choice and noise
	Workers        int                   // espeak-ng processes at a time; ≤ 0 means runtime.NumCPU()
	Progress       func(done, total int) // optional; called after each utterance, from one goroutine at a time
	Config         Config                // feature settings; the zero Config means DefaultConfig()
}

// Pool holds the features of rendered utterances. Train and Test are each
// U×(Frames×Mels), row-major, utterance i at [i·Frames·Mels, (i+1)·Frames·Mels);
// TrainWord[i] is the index in PoolConfig.Words of utterance i and
// TrainVoice[i] the voice that spoke it (likewise for Test). Utterances are
// grouped by word: word 0's PerWordTrain first, then word 1's, and so on.
type Pool struct {
	Config                Config
	Train, Test           []float32
	TrainWord, TestWord   []int
	TrainVoice, TestVoice []Voice
}

// BuildPool renders every word PerWordTrain times with voices drawn from the
// train set of [Voices] and PerWordTest times from the test set, adds noise,
// and computes the features. Each utterance draws its voice, SNR and noise
// from its own generator, seeded by Seed, split, word and index, so the
// result is the same whatever Workers is. Synthesis runs Workers espeak-ng
// processes in parallel. Cancelling ctx stops it.
//
// Before the noise, each utterance is padded with silence so that the
// noise covers the whole Frames window around the speech, as it would in a
// recording.
func BuildPool(ctx context.Context, pc PoolConfig) (*Pool, error) {
	if pc.Config == (Config{}) {
		pc.Config = DefaultConfig()
	}
	if pc.SNRMin == 0 && pc.SNRMax == 0 {
		pc.SNRMin, pc.SNRMax = DefaultSNRMin, DefaultSNRMax
	}
	if pc.Workers <= 0 {
		pc.Workers = runtime.NumCPU()
	}
	if err := pc.validate(); err != nil {
		return nil, err
	}
	cfg := pc.Config
	size := cfg.Size()
	nw := len(pc.Words)
	p := &Pool{
		Config:     cfg,
		Train:      make([]float32, nw*pc.PerWordTrain*size),
		Test:       make([]float32, nw*pc.PerWordTest*size),
		TrainWord:  make([]int, nw*pc.PerWordTrain),
		TestWord:   make([]int, nw*pc.PerWordTest),
		TrainVoice: make([]Voice, nw*pc.PerWordTrain),
		TestVoice:  make([]Voice, nw*pc.PerWordTest),
	}
	train, test := Voices()
	type job struct {
		split    int // 0 train, 1 test
		word     int
		index    int // within the word
		voices   []Voice
		dst      []float32
		wordOut  *int
		voiceOut *Voice
	}
	var jobs []job
	for split, per := range []int{pc.PerWordTrain, pc.PerWordTest} {
		feats, words, vs, set := p.Train, p.TrainWord, p.TrainVoice, train
		if split == 1 {
			feats, words, vs, set = p.Test, p.TestWord, p.TestVoice, test
		}
		for w := range nw {
			for r := range per {
				u := w*per + r
				jobs = append(jobs, job{split, w, r, set, feats[u*size : (u+1)*size], &words[u], &vs[u]})
			}
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan *job)
	go func() {
		defer close(next)
		for i := range jobs {
			select {
			case next <- &jobs[i]:
			case <-ctx.Done():
				return
			}
		}
	}()
	done := make(chan struct{}, pc.Workers)
	var wg sync.WaitGroup
	for range pc.Workers {
		wg.Go(func() {
			e := NewExtractor(cfg)
			for j := range next {
				if ctx.Err() != nil {
					continue
				}
				rng := rand.New(rand.NewPCG(pc.Seed, mix(uint64(j.split), uint64(j.word), uint64(j.index))))
				v := j.voices[rng.IntN(len(j.voices))]
				snr := math.Inf(1)
				if !math.IsInf(pc.SNRMin, 1) {
					snr = pc.SNRMin + rng.Float64()*(pc.SNRMax-pc.SNRMin)
				}
				if err := render(ctx, e, j.dst, pc.Words[j.word], v, snr, rng); err != nil {
					cancel(err)
					continue
				}
				*j.wordOut, *j.voiceOut = j.word, v
				done <- struct{}{}
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	n := 0
	for range done {
		n++
		if pc.Progress != nil {
			pc.Progress(n, len(jobs))
		}
	}
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("speech: building the pool: %w", err)
	}
	return p, nil
}

func (pc PoolConfig) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: pool: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	if err := pc.Config.Validate(); err != nil {
		return err
	}
	switch {
	case len(pc.Words) == 0:
		return bad("no words")
	case pc.PerWordTrain < 0 || pc.PerWordTest < 0:
		return bad("negative utterance counts %d, %d", pc.PerWordTrain, pc.PerWordTest)
	case math.IsNaN(pc.SNRMin) || math.IsNaN(pc.SNRMax) || pc.SNRMin > pc.SNRMax || math.IsInf(pc.SNRMin, -1) ||
		math.IsInf(pc.SNRMax, 1) != math.IsInf(pc.SNRMin, 1):
		return bad("SNR range [%v, %v] dB; want finite SNRMin ≤ SNRMax, or both +Inf for no noise", pc.SNRMin, pc.SNRMax)
	}
	for i, w := range pc.Words {
		if w == "" {
			return bad("word %d is empty", i)
		}
	}
	return nil
}

// render speaks word in voice v and writes its features into dst, with
// noise snr dB below the speech.
func render(ctx context.Context, e *Extractor, dst []float32, word string, v Voice, snr float64, rng *rand.Rand) error {
	c := e.cfg
	x, err := Synthesize(ctx, word, v, c.SampleRate)
	if err != nil {
		return err
	}
	gMin, _, first, last, ok := e.locate(x)
	if !ok {
		return fmt.Errorf("speech: espeak-ng %s gave silence for %q", v, word)
	}
	a := max((first+gMin)*c.Hop, 0)
	b := min((last+gMin)*c.Hop+c.Win, len(x))
	sigma := rms(x[a:b]) * math.Pow(10, -snr/20)
	// Pad so that LogMel's window lies inside the noisy signal wherever in
	// the speech it puts its centre (the noise may hide weak edges of the
	// word), plus a hop for its snapping to the grid.
	half := ((c.Frames-1)*c.Hop+c.Win)/2 + c.Hop
	left := max(0, half-a)
	right := max(0, b+half-len(x))
	y := make([]float32, left+len(x)+right)
	copy(y[left:], x)
	addNoise(y, sigma, rng)
	e.LogMel(dst, y)
	return nil
}

// mix hashes a split, word and index into a PCG stream (splitmix64 steps).
func mix(vs ...uint64) uint64 {
	h := uint64(0x9E3779B97F4A7C15)
	for _, v := range vs {
		h ^= v + 0x9E3779B97F4A7C15 + h<<6 + h>>2
		h ^= h >> 30
		h *= 0xBF58476D1CE4E5B9
		h ^= h >> 27
		h *= 0x94D049BB133111EB
		h ^= h >> 31
	}
	return h
}
