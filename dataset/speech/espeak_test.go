package speech_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/serket-go/serket/dataset/speech"
)

func TestSynthesize(t *testing.T) {
	v := trainVoice(t)
	x := say(t, "sneaker", v, 16000)
	if len(x) == 0 {
		t.Fatal("no samples")
	}
	if !finite(x) {
		t.Fatal("non-finite samples")
	}
	var peak float64
	for _, s := range x {
		peak = max(peak, math.Abs(float64(s)))
	}
	if peak > 1 || peak < 0.05 {
		t.Errorf("peak %v, want within (0.05, 1]", peak)
	}
	if d := float64(len(x)) / 16000; d < 0.2 || d > 2 {
		t.Errorf("duration %.2f s, want 0.2 to 2 s", d)
	}
	if y := say(t, "sneaker", v, 16000); !slices.Equal(x, y) {
		t.Error("the same voice twice gave different samples")
	}
	// Text that looks like an option is spoken, not parsed.
	if y := say(t, "--help", v, 16000); len(y) == 0 {
		t.Error("no samples for --help")
	}
}

func TestSynthesizeErrors(t *testing.T) {
	v := trainVoice(t)
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		text    string
		voice   speech.Voice
		rate    int
		wantErr string
	}{
		{"empty text", ctx, "  ", v, 16000, "empty text"},
		{"no voice", ctx, "bag", speech.Voice{}, 16000, "bad voice name"},
		{"unknown voice", ctx, "bag", speech.Voice{Name: "xx-nowhere"}, 16000, "voice does not exist"},
		{"bad rate", ctx, "bag", v, 0, "sample rate 0 Hz"},
		{"cancelled", cancelled, "bag", v, 16000, "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := speech.Synthesize(tt.ctx, tt.text, tt.voice, tt.rate)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSynthesizeWithoutEspeak(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := speech.Synthesize(context.Background(), "bag", trainVoice(t), 16000)
	if !errors.Is(err, speech.ErrNoEspeak) {
		t.Fatalf("error %v, want ErrNoEspeak", err)
	}
	if !strings.Contains(err.Error(), "Debian package espeak-ng") {
		t.Errorf("error %q does not name the Debian package espeak-ng", err)
	}
	_, err = speech.BuildPool(context.Background(), speech.PoolConfig{Words: []string{"bag"}, PerWordTrain: 1})
	if !errors.Is(err, speech.ErrNoEspeak) {
		t.Errorf("BuildPool: error %v, want ErrNoEspeak", err)
	}
}

func TestVoicesDisjoint(t *testing.T) {
	train, test := speech.Voices()
	if len(train) == 0 || len(test) == 0 {
		t.Fatalf("%d train and %d test voices", len(train), len(test))
	}
	train2, test2 := speech.Voices()
	if !slices.Equal(train, train2) || !slices.Equal(test, test2) {
		t.Error("Voices is not deterministic")
	}
	names := func(vs []speech.Voice) map[string]bool {
		m := map[string]bool{}
		for _, v := range vs {
			if v.Rate < 80 || v.Rate > 450 || v.Pitch < 0 || v.Pitch > 99 {
				t.Errorf("%v: rate or pitch out of espeak-ng's range", v)
			}
			m[v.Name] = true
		}
		return m
	}
	tr, te := names(train), names(test)
	bases := map[string]bool{}
	for n := range tr {
		if te[n] {
			t.Errorf("%s is both a train and a test voice", n)
		}
		base, _, _ := strings.Cut(n, "+")
		bases[base] = true
	}
	newBase := false
	for n := range te {
		base, _, _ := strings.Cut(n, "+")
		newBase = newBase || !bases[base]
	}
	if !newBase {
		t.Error("every test base voice is also a train base voice")
	}
	if len(tr) < 100 || len(te) < 20 {
		t.Errorf("%d train and %d test base+variant combinations; want more variety", len(tr), len(te))
	}
}

// TestVoicesSpeak synthesises every base+variant combination once and
// checks that the variant changes the sound: espeak-ng silently ignores a
// variant it does not know.
func TestVoicesSpeak(t *testing.T) {
	train, test := speech.Voices()
	var names []string
	for _, v := range append(train, test...) {
		if !slices.Contains(names, v.Name) {
			names = append(names, v.Name)
		}
	}
	if testing.Short() { // a sample: every 10th
		var some []string
		for i := 0; i < len(names); i += 10 {
			some = append(some, names[i])
		}
		names = some
	}
	render := func(name string) ([]float32, error) {
		return speech.Synthesize(context.Background(), "pullover", speech.Voice{Name: name, Rate: 170, Pitch: 50}, 16000)
	}
	var (
		mu    sync.Mutex
		bases = map[string][]float32{}
		wg    sync.WaitGroup
		next  = make(chan string)
	)
	for _, n := range names {
		if base, _, _ := strings.Cut(n, "+"); bases[base] == nil {
			x, err := render(base)
			if err != nil {
				t.Fatal(err)
			}
			bases[base] = x
		}
	}
	for range 2 {
		wg.Go(func() {
			for n := range next {
				x, err := render(n)
				mu.Lock()
				base, variant, _ := strings.Cut(n, "+")
				switch {
				case err != nil:
					t.Errorf("%s: %v", n, err)
				case len(x) < 3200 || !finite(x):
					t.Errorf("%s: %d samples, finite %v", n, len(x), finite(x))
				case variant != "" && slices.Equal(x, bases[base]):
					t.Errorf("%s sounds exactly like %s: espeak-ng does not know the variant", n, base)
				}
				mu.Unlock()
			}
		})
	}
	for _, n := range names {
		next <- n
	}
	close(next)
	wg.Wait()
}
