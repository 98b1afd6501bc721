package speech

import (
	"errors"
	"fmt"
	"math"
)

// ErrInvalidConfig is wrapped by every error [Config.Validate] and
// [BuildPool] return for settings that cannot work.
var ErrInvalidConfig = errors.New("speech: invalid config")

// Config fixes the features: every utterance becomes exactly Frames×Mels
// float32 values, row-major (frame-major: the Mels values of frame 0, then
// those of frame 1, …). The STFT settings live here so that an inverse
// (Griffin-Lim) can use the very same ones.
//
// The STFT frames a signal with a periodic Hann window of Win samples,
// centred in an NFFT-point real FFT (zero-padded (NFFT-Win)/2 samples on
// each side), every Hop samples. Power spectra (|X|², NFFT/2+1 bins) go
// through a filterbank of Mels triangles on the Slaney mel scale (linear
// below 1 kHz, logarithmic above; librosa's htk=False) spanning 0 Hz to
// SampleRate/2, each with peak 1 (no area normalisation). See
// [Extractor.LogMel] for trimming, centring and the log.
type Config struct {
	SampleRate int     // Hz; 16000
	NFFT       int     // FFT length in samples, ≥ Win; 512
	Win        int     // Hann window length in samples; 512 (32 ms)
	Hop        int     // frame step in samples; 256 (16 ms)
	Mels       int     // mel bands; 32
	Frames     int     // frames per utterance (T); 80, i.e. 1.3 s of signal
	Floor      float32 // lowest log value, natural log relative to the utterance's loudest band; ln(1e-6)
}

// DefaultConfig returns the settings the dataset is built with: 16 kHz,
// 512-point FFT, 32 ms Hann window, 16 ms hop, 32 mel bands, 80 frames
// (79 hops + a window = 1.3 s: the longest class name, "ankle boot", at
// the slowest rate of [Voices], 120 words/min, lasts 0.74–1.32 s once
// trimmed, median 1.0 s, measured over all voices), and a floor of
// ln(1e-6) (60 dB below the loudest band).
//
// 80×32 = 2560 values per utterance: the audio networks' first and last
// layers are the largest in the model, so the features are kept as small
// as tells the ten class names apart. The 16 ms hop keeps 50% window
// overlap, which the later Griffin-Lim inverse needs (a 20% overlap, as a
// 25 ms window with a 20 ms hop would give, renders badly).
func DefaultConfig() Config {
	return Config{
		SampleRate: 16000,
		NFFT:       512,
		Win:        512,
		Hop:        256,
		Mels:       32,
		Frames:     80,
		Floor:      float32(math.Log(1e-6)),
	}
}

// Validate reports settings that cannot work, wrapped around
// [ErrInvalidConfig].
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	switch {
	case c.SampleRate < minRate || c.SampleRate > maxRate:
		return bad("sample rate %d Hz outside [%d, %d]", c.SampleRate, minRate, maxRate)
	case c.Win < 2:
		return bad("window of %d samples; need at least 2", c.Win)
	case c.NFFT < c.Win || c.NFFT > 1<<16:
		return bad("NFFT %d must be at least the window (%d) and at most 65536", c.NFFT, c.Win)
	case c.Hop < 1:
		return bad("hop of %d samples; need at least 1", c.Hop)
	case c.Mels < 1 || c.Mels > c.NFFT/2+1:
		return bad("%d mel bands for %d FFT bins", c.Mels, c.NFFT/2+1)
	case c.Frames < 1 || c.Frames > 1<<16:
		return bad("%d frames; need 1 to 65536", c.Frames)
	case math.IsNaN(float64(c.Floor)) || math.IsInf(float64(c.Floor), 0) || c.Floor >= 0:
		return bad("floor %v must be finite and negative (it is a log relative to the loudest band)", c.Floor)
	}
	return nil
}

// Size returns Frames×Mels, the length of one utterance's features.
func (c Config) Size() int { return c.Frames * c.Mels }
