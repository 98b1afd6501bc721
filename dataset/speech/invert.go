package speech

import (
	"errors"
	"fmt"
	"math"
	"math/cmplx"
	"math/rand/v2"
)

// DefaultInvertIters is the number of Griffin-Lim iterations [Invert] runs
// when asked for 0.
const DefaultInvertIters = 60

// ErrInvalidFeatures is wrapped by the errors [Invert] returns for features
// of the wrong length or with non-finite values.
var ErrInvalidFeatures = errors.New("speech: invalid features")

const (
	invertPeak = 0.5 // peak amplitude of the output: features carry no gain

	invertMomentum = 0.99 // of fast Griffin-Lim (Perraudin, Balazs & Søndergaard 2013)
	invertNNLS     = 100  // multiplicative updates of the mel-to-linear fit, per frame
	// Near the ends, where the overlap-added squared windows fall below
	// this fraction of their largest sum, the signal is tapered rather than
	// divided by a tiny sum.
	invertTaper = 0.1
)

// The PCG seed of [Invert]'s initial phases.
const invertSeed1, invertSeed2 = 0x5e4be7a11f0cd3e1, 0x9d2c5680a3b17e44

// Invert returns a waveform whose features approximate feats: float32
// samples at cfg.SampleRate with peak amplitude 0.5 (all zeros when every
// value is at the floor), ready for [WriteWAV]. feats are Frames×Mels
// values, row-major, in the units [Extractor.LogMel] writes (natural log
// of mel power), e.g. a decoder's output after denormalisation. iters is
// the number of Griffin-Lim iterations (each an inverse STFT and an STFT);
// 0 means [DefaultInvertIters]. The result depends only on the arguments:
// the initial phases come from a fixed seed.
//
// The output has (Frames-1)·Hop+Win samples: feature frame t is the
// Extractor's frame of samples [t·Hop, t·Hop+Win). Three steps:
//
//  1. Undo the log: a value v gives mel power exp(v - max(feats)) (the
//     gain does not matter), or 0 when v is at or below cfg.Floor (the
//     floor says "this quiet or quieter", and LogMel gives Floor
//     everywhere for silence).
//  2. Mel to linear frequency: per frame, the non-negative power spectrum
//     p (NFFT/2+1 bins) that best fits the mel powers m through the
//     extractor's filterbank F, minimising Σ_j ((F·p)_j - m_j)² / (m_j + ε)²
//     (relative error, ε = exp(Floor)), by multiplicative updates started
//     from the interpolation Fᵀ·m. F has rank Mels, far fewer than the
//     bins, so p is one spectrum among many with the same mel powers:
//     detail finer than a mel band (harmonics) is not recovered.
//  3. Phase: fast Griffin-Lim (momentum 0.99) from pseudo-random phases of
//     a fixed seed, alternating the inverse STFT (windowed overlap-add,
//     least squares) with the Extractor's STFT, keeping the magnitudes
//     √p. Frames whose features are all at the floor are kept silent.
//
// Re-extracting features from the output ([Extractor.LogMel]) gives back
// feats up to small errors, but LogMel re-locates the utterance: when a
// frame near its trimming threshold comes out slightly louder or quieter,
// its window can land one frame off.
func Invert(cfg Config, feats []float32, iters int) ([]float32, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(feats) != cfg.Size() {
		return nil, fmt.Errorf("%w: %d values, want Frames×Mels = %d×%d = %d", ErrInvalidFeatures, len(feats), cfg.Frames, cfg.Mels, cfg.Size())
	}
	for i, v := range feats {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%w: value %d (frame %d, band %d) is %v", ErrInvalidFeatures, i, i/cfg.Mels, i%cfg.Mels, v)
		}
	}
	if iters < 0 {
		return nil, fmt.Errorf("speech: Invert: %d iterations; want 0 (the default, %d) or more", iters, DefaultInvertIters)
	}
	if iters == 0 {
		iters = DefaultInvertIters
	}
	e := NewExtractor(cfg)
	return e.griffinLim(e.melMagnitudes(feats), iters), nil
}

// melMagnitudes returns STFT magnitudes, Frames×(NFFT/2+1), whose mel
// powers approximate exp(feats) up to a common gain (steps 1 and 2 of
// [Invert]).
func (e *Extractor) melMagnitudes(feats []float32) []float64 {
	c := e.cfg
	bins := c.NFFT/2 + 1
	top := feats[0]
	for _, v := range feats {
		top = max(top, v)
	}
	mag := make([]float64, c.Frames*bins)
	m := make([]float64, c.Mels)
	s := newMelSolver(e)
	for t := range c.Frames {
		silent := true
		for j, v := range feats[t*c.Mels : (t+1)*c.Mels] {
			m[j] = 0
			if v > c.Floor {
				m[j] = math.Exp(float64(v - top))
				silent = false
			}
		}
		if silent {
			continue
		}
		p := mag[t*bins : (t+1)*bins]
		s.solve(p, m)
		for k, v := range p {
			p[k] = math.Sqrt(v)
		}
	}
	return mag
}

// melSolver fits power spectra to mel powers; it holds scratch buffers.
type melSolver struct {
	e        *Extractor
	eps      float64
	w, fp    []float64 // Mels
	num, den []float64 // NFFT/2+1
}

func newMelSolver(e *Extractor) *melSolver {
	bins := e.cfg.NFFT/2 + 1
	return &melSolver{
		e:   e,
		eps: math.Exp(float64(e.cfg.Floor)),
		w:   make([]float64, e.cfg.Mels),
		fp:  make([]float64, e.cfg.Mels),
		num: make([]float64, bins),
		den: make([]float64, bins),
	}
}

// solve writes into p (NFFT/2+1 powers, zero on entry) the non-negative
// minimiser of Σ_j w_j((F·p)_j - m_j)², w_j = 1/(m_j+ε)², after
// invertNNLS multiplicative updates p ← p ⊙ Fᵀ(w⊙m) / Fᵀ(w⊙F·p) (Lee &
// Seung), which keep p ≥ 0 and do not increase the error.
func (s *melSolver) solve(p, m []float64) {
	fb, lo, hi := s.e.fb, s.e.lo, s.e.hi
	clear(s.num)
	for j, r := range fb {
		s.w[j] = 1 / ((m[j] + s.eps) * (m[j] + s.eps))
		for k := lo[j]; k < hi[j]; k++ {
			p[k] += float64(r[k]) * m[j]
			s.num[k] += float64(r[k]) * m[j] * s.w[j]
		}
	}
	for range invertNNLS {
		for j, r := range fb {
			var v float64
			for k := lo[j]; k < hi[j]; k++ {
				v += float64(r[k]) * p[k]
			}
			s.fp[j] = v * s.w[j]
		}
		clear(s.den)
		for j, r := range fb {
			for k := lo[j]; k < hi[j]; k++ {
				s.den[k] += float64(r[k]) * s.fp[j]
			}
		}
		for k, d := range s.den {
			if d > 0 {
				p[k] *= s.num[k] / d
			}
		}
	}
}

// griffinLim returns (Frames-1)·Hop+Win samples whose STFT magnitudes,
// framed as the Extractor frames, approximate mag (step 3 of [Invert]),
// scaled to peak invertPeak.
func (e *Extractor) griffinLim(mag []float64, iters int) []float32 {
	c := e.cfg
	bins := c.NFFT/2 + 1
	n := (c.Frames-1)*c.Hop + c.Win
	off := (c.NFFT - c.Win) / 2

	// The least-squares inverse STFT divides the overlap-added windowed
	// frames by Σw² (and by NFFT, which the inverse FFT leaves out). Near
	// the ends, where Σw² goes to 0, the divisor is held at a fraction of
	// its largest value so that the signal tapers instead of blowing up.
	norm := make([]float64, n)
	for t := range c.Frames {
		for i, w := range e.window {
			norm[t*c.Hop+i] += w * w
		}
	}
	var top float64
	for _, v := range norm {
		top = max(top, v)
	}
	for i, v := range norm {
		norm[i] = 1 / (max(v, invertTaper*top) * float64(c.NFFT))
	}
	// A frame with no energy at all is silence wherever its window is
	// non-zero: keep those samples at 0.
	for t := range c.Frames {
		silent := true
		for _, a := range mag[t*bins : (t+1)*bins] {
			if a != 0 {
				silent = false
				break
			}
		}
		if silent {
			for i, w := range e.window {
				if w != 0 {
					norm[t*c.Hop+i] = 0
				}
			}
		}
	}

	spec := make([]complex128, len(mag)) // current estimate, magnitudes mag
	rng := rand.New(rand.NewPCG(invertSeed1, invertSeed2))
	for i, a := range mag {
		spec[i] = cmplx.Rect(a, 2*math.Pi*rng.Float64())
	}
	x := make([]float64, n)
	istft := func() {
		clear(x)
		for t := range c.Frames {
			e.fft.Sequence(e.frame, spec[t*bins:(t+1)*bins])
			for i, w := range e.window {
				x[t*c.Hop+i] += e.frame[off+i] * w
			}
		}
		for i := range x {
			x[i] *= norm[i]
		}
	}
	prev := make([]complex128, len(mag)) // the previous iteration's STFT
	beta := complex(invertMomentum/(1+invertMomentum), 0)
	for range iters {
		istft()
		for t := range c.Frames {
			clear(e.frame)
			for i, w := range e.window {
				e.frame[off+i] = x[t*c.Hop+i] * w
			}
			e.fft.Coefficients(e.spec, e.frame)
			for k, r := range e.spec {
				i := t*bins + k
				a := r - beta*prev[i]
				prev[i] = r
				if ab := cmplx.Abs(a); ab > 0 {
					spec[i] = a * complex(mag[i]/ab, 0)
				} else {
					spec[i] = complex(mag[i], 0)
				}
			}
		}
	}
	istft()

	var peak float64
	for _, v := range x {
		peak = max(peak, math.Abs(v))
	}
	out := make([]float32, n)
	if peak == 0 {
		return out
	}
	for i, v := range x {
		out[i] = float32(v * invertPeak / peak)
	}
	return out
}
