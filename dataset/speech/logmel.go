package speech

import (
	"fmt"
	"io"
	"math"
	"slices"

	"gonum.org/v1/gonum/dsp/fourier"
	"gonum.org/v1/gonum/dsp/window"
)

// Trimming thresholds, in dB of frame energy (the sum of a frame's mel
// powers). A frame is speech when it is within trimRangeDB of the loudest
// frame and, when the signal has a noise floor at least trimMinSNRDB below
// the loudest frame, more than trimAboveFloorDB above that floor (the 10th
// percentile of the frames lying wholly inside the signal).
const (
	trimRangeDB      = 40
	trimAboveFloorDB = 6
	trimMinSNRDB     = 10
	trimPercentile   = 0.10
)

// Extractor computes log-mel features. It owns its FFT plan, window and
// filterbank and reuses its buffers: it is not safe for concurrent use; make
// one per goroutine.
type Extractor struct {
	cfg    Config
	fft    *fourier.FFT
	window []float64   // Win samples, periodic Hann
	fb     [][]float32 // Mels×(NFFT/2+1)
	lo, hi []int       // non-zero bins of each filter

	frame  []float64    // NFFT
	spec   []complex128 // NFFT/2+1
	power  []float64    // NFFT/2+1
	mel    []float64    // grid frames × Mels, grown as needed
	energy []float64    // per grid frame, dB
	inside []float64    // scratch: energies of whole frames, for the percentile
}

// NewExtractor returns an extractor for cfg. It panics if cfg does not
// validate (see [Config.Validate]).
func NewExtractor(cfg Config) *Extractor {
	if err := cfg.Validate(); err != nil {
		panic(err.Error())
	}
	bins := cfg.NFFT/2 + 1
	e := &Extractor{
		cfg:   cfg,
		fft:   fourier.NewFFT(cfg.NFFT),
		frame: make([]float64, cfg.NFFT),
		spec:  make([]complex128, bins),
		power: make([]float64, bins),
	}
	// Periodic Hann: the first Win points of a symmetric window of Win+1,
	// so that shifted copies at hops dividing Win sum to a constant.
	w := make([]float64, cfg.Win+1)
	for i := range w {
		w[i] = 1
	}
	e.window = window.Hann(w)[:cfg.Win]
	e.fb, e.lo, e.hi = melFilterBank(cfg)
	return e
}

// Config returns the extractor's settings.
func (e *Extractor) Config() Config { return e.cfg }

// FilterBank returns a copy of the mel filterbank, Mels×(NFFT/2+1): row m
// weighs the power-spectrum bins (bin k at k·SampleRate/NFFT Hz) summed into
// band m.
func (e *Extractor) FilterBank() [][]float32 {
	fb := make([][]float32, len(e.fb))
	for i, r := range e.fb {
		fb[i] = slices.Clone(r)
	}
	return fb
}

// Window returns a copy of the analysis window: Win samples of a periodic
// Hann window, which sits at offset (NFFT-Win)/2 of each FFT frame.
func (e *Extractor) Window() []float32 {
	w := make([]float32, len(e.window))
	for i, v := range e.window {
		w[i] = float32(v)
	}
	return w
}

// LogMel writes the features of one utterance into dst, which must hold
// Frames×Mels values (row-major, frame-major); it panics otherwise. samples
// are at the configured sample rate, nominally in [-1, 1]; non-finite
// samples count as 0. The result depends only on cfg and samples.
//
// The utterance is first located: the signal is framed on a grid of Hop
// samples (frames starting at multiples of Hop, partial frames at the ends
// zero-padded), and leading and trailing frames whose energy is more than
// 40 dB below the loudest frame, or (in a noisy signal) within 6 dB of the
// noise floor, are trimmed. Then Frames grid frames centred on what is left
// are taken: a short utterance is padded with its own surroundings (and
// with silence beyond the ends of the signal), a long one is cut at both
// ends.
//
// Each value is ln(mel power / the largest mel power of the Frames×Mels
// window), no lower than Floor: the loudest band is 0, so features do not
// depend on the input gain. All-silent input gives Floor everywhere.
func (e *Extractor) LogMel(dst []float32, samples []float32) {
	c := e.cfg
	if len(dst) != c.Frames*c.Mels {
		panic(fmt.Sprintf("speech: LogMel: dst has %d values, want Frames×Mels = %d×%d", len(dst), c.Frames, c.Mels))
	}
	gMin, nf, first, last, ok := e.locate(samples)
	if !ok {
		fill(dst, c.Floor)
		return
	}
	// Centre the output window on the kept frames, snapped to the grid.
	a, b := (first+gMin)*c.Hop, (last+gMin)*c.Hop+c.Win
	span := (c.Frames-1)*c.Hop + c.Win
	s0 := (a + b - span) / 2
	t0 := floorDiv(s0+c.Hop/2, c.Hop)

	var top float64
	for t := range c.Frames {
		g := t0 + t - gMin
		if g < 0 || g >= nf {
			continue
		}
		for _, v := range e.mel[g*c.Mels : (g+1)*c.Mels] {
			top = max(top, v)
		}
	}
	if top <= 0 {
		fill(dst, c.Floor)
		return
	}
	ltop := math.Log(top)
	for t := range c.Frames {
		row := dst[t*c.Mels : (t+1)*c.Mels]
		g := t0 + t - gMin
		if g < 0 || g >= nf {
			fill(row, c.Floor)
			continue
		}
		for j, v := range e.mel[g*c.Mels : (g+1)*c.Mels] {
			l := float32(c.Floor)
			if v > 0 {
				l = max(float32(math.Log(v)-ltop), c.Floor)
			}
			row[j] = l
		}
	}
}

// locate computes the mel powers of the grid frames gMin.. (nf of them)
// into e.mel and finds the first and last speech frames (indices into
// e.mel); ok is false for silent input.
func (e *Extractor) locate(samples []float32) (gMin, nf, first, last int, ok bool) {
	c := e.cfg
	n := len(samples)
	if n == 0 {
		return 0, 0, 0, 0, false
	}
	// Grid frame i starts at sample i·Hop; frames from gMin to gMax are
	// the ones that overlap the signal.
	gMin = -((c.Win - 1) / c.Hop)
	gMax := (n - 1) / c.Hop
	nf = gMax - gMin + 1
	e.mel = grow(e.mel, nf*c.Mels)
	e.energy = grow(e.energy, nf)
	e.inside = e.inside[:0]
	peak := math.Inf(-1)
	for g := gMin; g <= gMax; g++ {
		m := e.mel[(g-gMin)*c.Mels : (g-gMin+1)*c.Mels]
		e.melFrame(m, samples, g*c.Hop)
		var s float64
		for _, v := range m {
			s += v
		}
		db := math.Inf(-1)
		if s > 0 {
			db = 10 * math.Log10(s)
		}
		e.energy[g-gMin] = db
		peak = max(peak, db)
		if start := g * c.Hop; start >= 0 && start+c.Win <= n {
			e.inside = append(e.inside, db)
		}
	}
	if math.IsInf(peak, -1) {
		return 0, 0, 0, 0, false
	}
	thr := peak - trimRangeDB
	if len(e.inside) > 0 {
		slices.Sort(e.inside)
		noise := e.inside[int(trimPercentile*float64(len(e.inside)))]
		if peak-noise >= trimMinSNRDB {
			thr = max(thr, noise+trimAboveFloorDB)
		}
	}
	first, last = 0, nf-1
	for first < nf && e.energy[first] < thr {
		first++
	}
	for last > first && e.energy[last] < thr {
		last--
	}
	return gMin, nf, first, last, true
}

// melFrame writes the mel powers of the frame of samples starting at start
// (samples outside the signal are 0) into m.
func (e *Extractor) melFrame(m []float64, samples []float32, start int) {
	c := e.cfg
	clear(e.frame)
	off := (c.NFFT - c.Win) / 2
	for i, w := range e.window {
		j := start + i
		if j < 0 || j >= len(samples) {
			continue
		}
		v := float64(samples[j])
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		e.frame[off+i] = v * w
	}
	e.fft.Coefficients(e.spec, e.frame)
	for k, x := range e.spec {
		e.power[k] = real(x)*real(x) + imag(x)*imag(x)
	}
	for j := range m {
		var s float64
		row := e.fb[j]
		for k := e.lo[j]; k < e.hi[j]; k++ {
			s += float64(row[k]) * e.power[k]
		}
		m[j] = s
	}
}

// FromWAV writes into dst the features of a WAV file a person gives: any
// format [ReadWAV] reads, mixed down to mono, resampled to the configured
// rate, then [Extractor.LogMel]. dst must hold Frames×Mels values.
func (e *Extractor) FromWAV(dst []float32, r io.Reader) error {
	if len(dst) != e.cfg.Frames*e.cfg.Mels {
		panic(fmt.Sprintf("speech: FromWAV: dst has %d values, want Frames×Mels = %d×%d", len(dst), e.cfg.Frames, e.cfg.Mels))
	}
	x, rate, err := ReadWAV(r)
	if err != nil {
		return err
	}
	if len(x) == 0 {
		return fmt.Errorf("%w: the WAV file holds no samples", ErrInvalidWAV)
	}
	e.LogMel(dst, Resample(x, rate, e.cfg.SampleRate))
	return nil
}

func fill(x []float32, v float32) {
	for i := range x {
		x[i] = v
	}
}

func grow(x []float64, n int) []float64 {
	if cap(x) < n {
		return make([]float64, n)
	}
	return x[:n]
}

// floorDiv is a/b rounded towards -∞, for b > 0.
func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
