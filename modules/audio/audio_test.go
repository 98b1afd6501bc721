package audio_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/dataset/speech"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/module/moduletest"
	"github.com/serket-go/serket/modules/audio"
	"github.com/serket-go/serket/modules/mvae"
)

// spoken synthesises a word with espeak-ng and returns it as a WAV file at
// the given rate.
func spoken(t *testing.T, word string, rate int) []byte {
	t.Helper()
	train, _ := speech.Voices()
	x, err := speech.Synthesize(context.Background(), word, train[0], rate)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := speech.WriteWAV(&b, x, rate); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func source(t *testing.T, p mvae.Pairing) *mvae.Source {
	t.Helper()
	src, err := mvae.OpenSource(datasettest.Dir(t), dataset.Audio, p)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestConformance(t *testing.T) {
	src := source(t, mvae.Pairing{Fraction: 0.5, Seed: 3})
	wav := spoken(t, "sneaker", 22050)
	moduletest.Run(t, moduletest.Config{
		New: func() (module.Modality, error) {
			return audio.New(audio.Config{Net: mvae.Config{Latent: 16, Hidden: 128, Seed: 1}, Source: src})
		},
		IDs:    []uint64{0, 1, 2, 3, 4, 5, 6, 7, 60000, 60001},
		BadIDs: []uint64{59999},
		Inputs: []bus.Payload{
			{Type: "audio/wav", Data: wav},
			{Type: "audio/x-wav", Data: spoken(t, "ankle boot", 8000)},
		},
		BadInputs: []bus.Payload{
			{Type: "audio/wav", Data: []byte("RIFF....WAVEjunk")},
			{Type: "audio/wav", Data: wav[:30]},
			{Type: "text/plain", Data: []byte("sneaker")},
		},
	})
}

// TestParseResamples: the same utterance given as WAV files at two sample
// rates comes out as nearly the same features.
func TestParseResamples(t *testing.T) {
	a, err := audio.New(audio.Config{Net: mvae.Config{Latent: 4, Hidden: 8}, Source: source(t, mvae.Pairing{})})
	if err != nil {
		t.Fatal(err)
	}
	x, err := a.Parse([]bus.Payload{{Type: "audio/wav", Data: spoken(t, "coat", 16000)}, {Type: "audio/wav", Data: spoken(t, "coat", 44100)}})
	if err != nil {
		t.Fatal(err)
	}
	f := x.(*audio.Features)
	frames, mels := a.FrameSize()
	n := frames * mels
	var diff, norm float64
	for j := 0; j < n; j++ {
		d := float64(f.X[j] - f.X[n+j])
		diff += d * d
		norm += float64(f.X[j]) * float64(f.X[j])
	}
	if diff > 0.05*norm {
		t.Fatalf("the same utterance at 16 kHz and 44.1 kHz gives features %.1f%% apart; want resampling to make them agree", 100*diff/norm)
	}
}

func TestNewNeedsTheShard(t *testing.T) {
	if _, err := audio.New(audio.Config{}); err == nil {
		t.Fatal("audio.New without a shard succeeded")
	}
}
