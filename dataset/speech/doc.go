// Package speech is the audio side of Fashion-MNIST-3: it speaks words with
// espeak-ng, reads and writes WAV files, resamples, adds noise, and turns
// utterances into fixed-size log-mel features. All audio of serket lives
// here; the audio modality (modules/audio) and `serket data prepare` use it.
//
// # Units
//
// Samples are float32, nominally in [-1, 1], mono. Sample rates and
// frequencies are in Hz; SNRs in dB; espeak-ng rates in words per minute.
//
// # Features
//
// [Config] fixes the features; [DefaultConfig] is 16 kHz, a 512-point FFT
// of a 512-sample (32 ms) periodic Hann window every 256 samples (16 ms),
// 32 mel bands, 80 frames. [Extractor.LogMel] trims the silence around the
// utterance, centres Frames frames on it, and writes Frames×Mels float32
// values, row-major and frame-major: value [t·Mels + m] is band m of frame
// t. Each value is the natural log of the band's power (|STFT|² weighed by
// a triangular filter) relative to the loudest band of the utterance, so
// the maximum is 0 and the input gain does not matter, clamped below at
// Config.Floor (ln 1e-6 ≈ -13.8 by default, i.e. 60 dB down).
//
// The mel scale is Slaney's (linear below 1 kHz at 200/3 Hz per mel,
// logarithmic above; librosa's htk=False); Mels triangles with peak 1 span
// 0 Hz to SampleRate/2. [Extractor.FilterBank] and [Extractor.Window] give
// what an inverse (Griffin-Lim) needs together with the Config.
//
// The path of a WAV file a person gives is [Extractor.FromWAV]: [ReadWAV]
// (any common PCM or float format, any channel count, any rate) →
// [Resample] to Config.SampleRate → LogMel, the same as for synthesised
// utterances.
//
// The way back, to hear features (a decoder's, once denormalised), is
// [Invert]: exp of the log, a non-negative least-squares fit of a power
// spectrum to the mel bands, and Griffin-Lim phase reconstruction with the
// Extractor's own window and framing, deterministically; [WriteWAV] saves
// the result. Detail finer than a mel band (the harmonics of the voice,
// above all at high frequencies) is not in the features and does not come
// back.
//
// # Voices and the pool
//
// [Voices] splits espeak-ng's English voices and variants into a train and
// a test set that share no voice, each at several rates and pitches.
// [BuildPool] renders words with them, adds white noise, and computes the
// features, in parallel and deterministically for a seed. [Synthesize]
// runs the espeak-ng program (Debian package espeak-ng); without it, errors
// wrap [ErrNoEspeak].
//
// An [Extractor] is not safe for concurrent use; the functions are.
package speech
