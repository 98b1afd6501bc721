// Package audio is the spoken-word modality: log-mel features of an
// utterance (Frames×Mels, normalised per feature with the training set's mean
// and standard deviation), an MVAE-style MLP encoder and decoder, and a
// Gaussian likelihood with a fixed variance on the normalised features.
//
// It reads only its own shard (audio.shard: each item's utterance features,
// never the label), parses WAV files a person gives (any sample rate, PCM or
// float, mono or stereo; resampled), and renders a latent as speech: a WAV
// whose log-mel features are the decoded ones (Griffin-Lim).
package audio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset/speech"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/mvae"
)

// Config configures the modality.
type Config struct {
	Name   string // module name; default "audio"
	Net    mvae.Config
	Source *mvae.Source // its shard (required: it also holds the feature normalisation)
	// LogVar is the fixed log-variance of the likelihood on normalised
	// features; default 0 (unit variance).
	LogVar float32
}

// Audio is the spoken-word modality: the networks' part is
// mvae.Modality's.
type Audio struct {
	*mvae.Modality[*Features]
	src       *mvae.Source
	ext       *speech.Extractor
	frames    int
	mels      int
	features  []float32 // the shard's utterance table, U×(Frames×Mels), normalised
	mean, std []float32
	spare     mvae.Spare[Features] // the last step's batch, for LoadBatch to refill
}

var (
	_ module.Learner  = (*Audio)(nil)
	_ module.Loader   = (*Audio)(nil)
	_ module.Recycler = (*Audio)(nil)
	_ module.Parser   = (*Audio)(nil)
	_ module.Renderer = (*Audio)(nil)
	_ module.Saver    = (*Audio)(nil)
	_ module.Scorer   = (*Audio)(nil)
	_ module.Featurer = (*Audio)(nil)
	_ module.Picker   = (*Features)(nil)
)

// New returns the modality with fresh parameters.
func New(cfg Config) (*Audio, error) {
	if cfg.Source == nil {
		return nil, fmt.Errorf("audio: no dataset: the module needs audio.shard for its feature settings and normalisation (run `serket data prepare`, then start it with --data DIR)")
	}
	sh := cfg.Source.Shard
	sc, err := speechConfig(sh.Meta)
	if err != nil {
		return nil, fmt.Errorf("audio: %s: %w", cfg.Source.Modality, err)
	}
	f := sc.Frames * sc.Mels
	feats, mean, std := sh.Tables["features"], sh.Tables["mean"], sh.Tables["std"]
	if len(feats)%f != 0 || len(mean) != f || len(std) != f {
		return nil, fmt.Errorf("audio: the shard's tables do not fit %d×%d features; prepare the dataset again", sc.Frames, sc.Mels)
	}
	a := &Audio{src: cfg.Source, ext: speech.NewExtractor(sc), frames: sc.Frames, mels: sc.Mels, mean: mean, std: std}
	a.features = make([]float32, len(feats))
	for i, v := range feats {
		a.features[i] = (v - mean[i%f]) / std[i%f]
	}
	cfg.Net.In, cfg.Net.Out = f, f
	a.Modality, err = mvae.NewModality[*Features](mvae.Parts{Kind: "audio", Name: cfg.Name, Net: cfg.Net, Likelihood: mvae.Gaussian{LogVar: cfg.LogVar}})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// speechConfig reads the feature settings the dataset was prepared with.
func speechConfig(meta map[string]string) (speech.Config, error) {
	c := speech.DefaultConfig()
	fields := map[string]*int{"sample_rate": &c.SampleRate, "nfft": &c.NFFT, "win": &c.Win, "hop": &c.Hop, "mels": &c.Mels, "frames": &c.Frames}
	for k, p := range fields {
		v, ok := meta[k]
		if !ok {
			return c, fmt.Errorf("the shard lacks the feature setting %q; prepare the dataset again", k)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return c, fmt.Errorf("feature setting %s=%q is not a positive integer", k, v)
		}
		*p = n
	}
	if v, ok := meta["floor"]; ok {
		f, err := strconv.ParseFloat(v, 32)
		if err != nil {
			return c, fmt.Errorf("feature setting floor=%q is not a number", v)
		}
		c.Floor = float32(f)
	}
	return c, nil
}

// Features is a batch of normalised log-mel features, N×(Frames×Mels):
// what the encoder reads and the Gaussian likelihood scores.
type Features = mvae.Rows

// LoadBatch implements module.Loader from audio.shard (one uint32 per item:
// its row of the utterance table).
func (a *Audio) LoadBatch(ids []uint64) (module.Batch, []bool, error) {
	f := a.frames * a.mels
	rows := len(a.features) / f
	out := a.spare.Take()
	if out == nil {
		out = &Features{}
	}
	out.N, out.X = len(ids), mvae.Resize(out.X, len(ids)*f)
	present, err := a.src.Lookup(ids, func(i int, rec []byte) error {
		row := int(binary.LittleEndian.Uint32(rec))
		if row >= rows {
			return fmt.Errorf("item %d: utterance %d of %d", ids[i], row, rows)
		}
		copy(out.X[i*f:(i+1)*f], a.features[row*f:(row+1)*f])
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("audio: %w", err)
	}
	mvae.ClearAbsent(out.X, present, f)
	return out, present, nil
}

// Recycle implements module.Recycler.
func (a *Audio) Recycle(x module.Batch) {
	if r, ok := x.(*Features); ok {
		a.spare.Keep(r)
	}
}

// Parse implements module.Parser: WAV files.
func (a *Audio) Parse(raw []bus.Payload) (module.Batch, error) {
	f := a.frames * a.mels
	out := &Features{N: len(raw), X: make([]float32, len(raw)*f)}
	for i, p := range raw {
		switch strings.TrimSpace(strings.Split(p.Type, ";")[0]) {
		case "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "application/octet-stream":
		default:
			return nil, fmt.Errorf("observation %d: content type %q, want a WAV file (audio/wav)", i, p.Type)
		}
		row := out.X[i*f : (i+1)*f]
		if err := a.ext.FromWAV(row, bytes.NewReader(p.Data)); err != nil {
			return nil, fmt.Errorf("observation %d: %w", i, err)
		}
		for j := range row {
			row[j] = (row[j] - a.mean[j]) / a.std[j]
		}
	}
	return out, nil
}

// RenderIters is the number of Griffin-Lim iterations Render runs per
// sample (fast Griffin-Lim converges in a few dozen).
const RenderIters = 32

// Render implements module.Renderer: speech, as a 16-bit WAV, whose
// log-mel features are the decoded ones (denormalised, then inverted by
// Griffin-Lim; see speech.Invert). The samples are rendered in parallel.
func (a *Audio) Render(z []float32, n int) ([]bus.Payload, error) {
	f := a.frames * a.mels
	mean, err := a.Output(z, n)
	if err != nil {
		return nil, err
	}
	feats := make([]float32, 0, n*f)
	for i := range n {
		feats = a.Denormalise(feats, mean[i*f:(i+1)*f])
	}
	out := make([]bus.Payload, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				wav, err := a.SpeechWAV(feats[i*f : (i+1)*f])
				out[i], errs[i] = bus.Payload{Type: "audio/wav", Data: wav}, err
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("audio: rendering latent %d: %w", i, err)
		}
	}
	return out, nil
}

// SpeechWAV turns log-mel features (Frames×Mels, as Denormalise gives
// them) into speech: a 16-bit WAV by Griffin-Lim (RenderIters iterations).
// It is safe to call from several goroutines.
func (a *Audio) SpeechWAV(logmel []float32) ([]byte, error) {
	cfg := a.ext.Config()
	wave, err := speech.Invert(cfg, logmel, RenderIters)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := speech.WriteWAV(&buf, wave, cfg.SampleRate); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Denormalise appends the log-mel features of normalised features x to dst.
func (a *Audio) Denormalise(dst, x []float32) []float32 {
	for j, v := range x {
		dst = append(dst, v*a.std[j]+a.mean[j])
	}
	return dst
}

// FrameSize is Frames×Mels, the features per utterance.
func (a *Audio) FrameSize() (frames, mels int) { return a.frames, a.mels }
