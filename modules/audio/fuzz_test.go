package audio_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/dataset/speech"
	"github.com/serket-go/serket/modules/audio"
	"github.com/serket-go/serket/modules/mvae"
)

// identitySource is an audio shard of one utterance with the dataset's
// feature settings and a normalisation that changes nothing (mean 0, std
// 1), so that Parse gives the raw log-mel features.
func identitySource() *mvae.Source {
	c := speech.DefaultConfig()
	n := c.Frames * c.Mels
	std := make([]float32, n)
	for i := range std {
		std[i] = 1
	}
	meta := map[string]string{"floor": strconv.FormatFloat(float64(c.Floor), 'g', -1, 32)}
	for k, v := range map[string]int{"sample_rate": c.SampleRate, "nfft": c.NFFT, "win": c.Win, "hop": c.Hop, "mels": c.Mels, "frames": c.Frames} {
		meta[k] = strconv.Itoa(v)
	}
	return &mvae.Source{Modality: dataset.Audio, Shard: &dataset.Shard{
		Modality: dataset.Audio, Meta: meta,
		Tables: map[string][]float32{"features": make([]float32, n), "mean": make([]float32, n), "std": std},
	}}
}

// wav builds a RIFF/WAVE file: a fmt chunk (format tag, channels, rate,
// bits per sample) and a data chunk.
func wav(tag, channels uint16, rate uint32, bits uint16, data []byte) []byte {
	le := binary.LittleEndian
	fmtc := le.AppendUint16(nil, tag)
	fmtc = le.AppendUint16(fmtc, channels)
	fmtc = le.AppendUint32(fmtc, rate)
	fmtc = le.AppendUint32(fmtc, rate*uint32(channels*bits/8))
	fmtc = le.AppendUint16(fmtc, channels*bits/8)
	fmtc = le.AppendUint16(fmtc, bits)
	body := []byte("WAVE")
	for _, c := range []struct {
		id string
		b  []byte
	}{{"fmt ", fmtc}, {"data", data}} {
		body = append(le.AppendUint32(append(body, c.id...), uint32(len(c.b))), c.b...)
		if len(c.b)%2 == 1 {
			body = append(body, 0)
		}
	}
	return append(le.AppendUint32([]byte("RIFF"), uint32(len(body))), body...)
}

// synthesized is a word espeak-ng says, as a 16-bit WAV at rate.
func synthesized(t testing.TB, word string, rate int) []byte {
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

// tone is n samples of a sine at hz, sampled at rate, as 16-bit PCM.
func tone(n int, hz, rate float64) []byte {
	var b []byte
	for i := range n {
		b = binary.LittleEndian.AppendUint16(b, uint16(int16(8000*math.Sin(2*math.Pi*hz*float64(i)/rate))))
	}
	return b
}

// FuzzParse: Parse, which every encode request and sensor message with a
// WAV goes through, never panics. It either refuses the input naming the
// observation, or gives one row of Frames×Mels features — here, with an
// identity normalisation, log-mel values in [Floor, 0] whose largest is 0
// (or all Floor, for silence) — the same as another extractor gives, that
// the encoder maps to a finite posterior.
func FuzzParse(f *testing.F) {
	f.Add(synthesized(f, "sneaker", 8000))
	f.Add(synthesized(f, "bag", 11025)[:4000]) // cut: the data chunk claims more
	f.Add(wav(1, 1, 16000, 16, tone(800, 440, 16000)))
	f.Add(wav(1, 2, 44100, 16, tone(900, 1000, 44100)))
	f.Add(wav(1, 1, 8000, 8, []byte{0, 128, 255, 64, 200, 10}))
	f.Add(wav(3, 1, 22050, 32, binary.LittleEndian.AppendUint32(nil, math.Float32bits(float32(math.Inf(1))))))
	f.Add(wav(7, 1, 8000, 8, []byte{0xFF, 0x00, 0x80, 0x7F}))
	f.Add(wav(1, 1, 1000, 16, nil))
	f.Add(wav(1, 0, 16000, 16, tone(10, 440, 16000)))
	f.Add(wav(1, 1, 768001, 16, tone(10, 440, 16000)))
	f.Add([]byte("RIFF\x04\x00\x00\x00WAVE"))
	f.Add([]byte("RIFF....WAVEjunk"))
	f.Add([]byte{})
	a, err := audio.New(audio.Config{Net: mvae.Config{Latent: 4, Hidden: 8, Seed: 1}, Source: identitySource()})
	if err != nil {
		f.Fatal(err)
	}
	ext := speech.NewExtractor(speech.DefaultConfig())
	floor := ext.Config().Floor
	f.Fuzz(func(t *testing.T, data []byte) {
		x, err := a.Parse([]bus.Payload{{Type: "audio/wav", Data: data}})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "observation 0: ") {
				t.Errorf("error %q does not name the observation", err)
			}
			return
		}
		feats := x.(*audio.Features)
		if feats.N != 1 || len(feats.X) != ext.Config().Size() {
			t.Fatalf("%d rows of %d features", feats.N, len(feats.X))
		}
		top := float32(math.Inf(-1))
		for i, v := range feats.X {
			if !(v >= floor && v <= 0) {
				t.Fatalf("feature %d is %v, want [%v, 0]", i, v, floor)
			}
			top = max(top, v)
		}
		if top != 0 && slices.ContainsFunc(feats.X, func(v float32) bool { return v != floor }) {
			t.Fatalf("the loudest band is %v, want 0", top)
		}
		want := make([]float32, len(feats.X))
		if err := ext.FromWAV(want, bytes.NewReader(data)); err != nil || !slices.Equal(feats.X, want) {
			t.Fatalf("Parse and the extractor disagree (%v)", err)
		}
		mu, lv := make([]float32, 4), make([]float32, 4)
		if err := a.Encode(x, mu, lv); err != nil {
			t.Fatal(err)
		}
		for i := range mu {
			if math.IsNaN(float64(mu[i])) || math.IsInf(float64(mu[i]), 0) || math.IsNaN(float64(lv[i])) || math.IsInf(float64(lv[i]), 0) {
				t.Fatalf("posterior mu %v, logvar %v", mu, lv)
			}
		}
	})
}

// TestParseRefusesOversizedWAV: a WAV over speech.MaxWAVBytes, one whose
// data chunk claims more, and one longer than speech.MaxWAVSeconds are
// refused with an error that says which limit they break.
func TestParseRefusesOversizedWAV(t *testing.T) {
	a, err := audio.New(audio.Config{Net: mvae.Config{Latent: 4, Hidden: 8}, Source: identitySource()})
	if err != nil {
		t.Fatal(err)
	}
	huge := wav(1, 1, 16000, 16, make([]byte, speech.MaxWAVBytes))
	claims := wav(1, 1, 16000, 16, tone(100, 440, 16000))
	binary.LittleEndian.PutUint32(claims[40:], 1<<30) // the data chunk's size
	long := wav(1, 1, 1000, 8, make([]byte, 1000*(speech.MaxWAVSeconds+1)))
	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{"more bytes than MaxWAVBytes", huge, "32 MiB limit"},
		{"a data chunk claiming 1 GiB", claims, "32 MiB limit"},
		{"longer than MaxWAVSeconds", long, "600 s limit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Parse([]bus.Payload{{Type: "audio/wav", Data: tt.data}})
			if err == nil || !strings.Contains(err.Error(), "observation 0") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %v, want an error about observation 0 containing %q", err, tt.want)
			}
		})
	}
}

// TestParseWAVSizeLimit: a WAV as large as an inference request carries
// (here 190 s of 44.1 kHz stereo) is taken; one stereo frame more is
// refused, giving the limit. The parser's limit is the wire's: a larger WAV could
// not reach the module.
func TestParseWAVSizeLimit(t *testing.T) {
	if speech.MaxWAVBytes != bus.MaxObservationBytes {
		t.Fatalf("speech.MaxWAVBytes = %d, bus.MaxObservationBytes = %d: docs/usage.md promises one limit", speech.MaxWAVBytes, bus.MaxObservationBytes)
	}
	a, err := audio.New(audio.Config{Net: mvae.Config{Latent: 4, Hidden: 8}, Source: identitySource()})
	if err != nil {
		t.Fatal(err)
	}
	const header = 44 // RIFF, fmt and data chunk headers
	at := wav(1, 2, 44100, 16, tone((speech.MaxWAVBytes-header)/2, 440, 44100))
	if len(at) != speech.MaxWAVBytes {
		t.Fatalf("built a WAV of %d bytes, want %d", len(at), speech.MaxWAVBytes)
	}
	if _, err := a.Parse([]bus.Payload{{Type: "audio/wav", Data: at}}); err != nil {
		t.Fatalf("a WAV of MaxWAVBytes: %v", err)
	}
	over := wav(1, 2, 44100, 16, tone((speech.MaxWAVBytes-header)/2+2, 440, 44100))
	if _, err := a.Parse([]bus.Payload{{Type: "audio/wav", Data: over}}); err == nil || !strings.Contains(err.Error(), "32 MiB limit") {
		t.Fatalf("a WAV of MaxWAVBytes+4 bytes: %v, want a refusal giving the 32 MiB limit", err)
	}
}
