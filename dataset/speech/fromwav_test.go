package speech_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/serket-go/serket/dataset/speech"
)

// TestFromWAV feeds FromWAV the file espeak-ng writes itself (22050 Hz) and
// the same utterance as a 44.1 kHz float stereo file: both must give the
// features of the utterance synthesised straight at 16 kHz.
func TestFromWAV(t *testing.T) {
	cfg := speech.DefaultConfig()
	e := speech.NewExtractor(cfg)
	v := trainVoice(t)
	want := make([]float32, cfg.Size())
	e.LogMel(want, say(t, "trouser", v, cfg.SampleRate))

	path := filepath.Join(t.TempDir(), "trouser.wav")
	cmd := exec.Command("espeak-ng", "-w", path, "-v", v.Name, "-s", strconv.Itoa(v.Rate), "-p", strconv.Itoa(v.Pitch), "trouser")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("espeak-ng: %v: %s", err, out)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if rate := binary.LittleEndian.Uint32(file[24:]); rate != 22050 {
		t.Fatalf("espeak-ng wrote %d Hz, this test expects 22050", rate)
	}
	got := make([]float32, cfg.Size())
	if err := e.FromWAV(got, bytes.NewReader(file)); err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(got, want); d > 1e-5 {
		t.Errorf("espeak-ng's own file: features differ by up to %v", d)
	}

	// 44.1 kHz, 32-bit float, two channels at half level each.
	x := speech.Resample(say(t, "trouser", v, 22050), 22050, 44100)
	var data []byte
	for _, s := range x {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(s/2))
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(s/2))
	}
	stereo := riff(chunk("fmt ", fmtBody(3, 2, 44100, 32)), chunk("data", data))
	if err := e.FromWAV(got, bytes.NewReader(stereo)); err != nil {
		t.Fatal(err)
	}
	// The two paths differ only by rounding and the resamplers' tails
	// (measured: mean 8e-6, max 2e-4).
	var sum float64
	for i := range got {
		sum += math.Abs(float64(got[i] - want[i]))
	}
	mean := sum / float64(len(got))
	t.Logf("44.1 kHz float stereo: mean |difference| %.2e, max %.2e", mean, maxAbsDiff(got, want))
	if d := maxAbsDiff(got, want); mean > 1e-3 || d > 0.05 {
		t.Errorf("44.1 kHz float stereo: features differ by %.2e on average, %.2e at most", mean, d)
	}
}

func TestFromWAVErrors(t *testing.T) {
	e := speech.NewExtractor(speech.DefaultConfig())
	dst := make([]float32, e.Config().Size())
	err := e.FromWAV(dst, bytes.NewReader([]byte("not a wav")))
	if !errors.Is(err, speech.ErrInvalidWAV) {
		t.Errorf("garbage: error %v, want ErrInvalidWAV", err)
	}
	var b bytes.Buffer
	speech.WriteWAV(&b, nil, 16000)
	if err := e.FromWAV(dst, &b); !errors.Is(err, speech.ErrInvalidWAV) {
		t.Errorf("no samples: error %v, want ErrInvalidWAV", err)
	}
}

// ExampleExtractor_FromWAV computes the features of a WAV file: here one
// written from a synthetic tone at 44.1 kHz.
func ExampleExtractor_FromWAV() {
	var file bytes.Buffer
	tone := sine(44100/2, 1000, 0.5, 44100)
	if err := speech.WriteWAV(&file, tone, 44100); err != nil {
		panic(err)
	}
	e := speech.NewExtractor(speech.DefaultConfig())
	feats := make([]float32, e.Config().Frames*e.Config().Mels)
	if err := e.FromWAV(feats, &file); err != nil {
		panic(err)
	}
	c := e.Config()
	fmt.Printf("%d frames × %d mels\n", c.Frames, c.Mels)
	// Output: 80 frames × 32 mels
}
