package language_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/modules/language"
	"github.com/serket-go/serket/modules/mvae"
)

// FuzzParse: Parse, which every encode request and sensor message with
// text goes through, never panics. It refuses text over MaxTextBytes or
// without a known word among the tokens it keeps, naming the observation;
// otherwise it gives one caption of MaxTokens ids in the vocabulary — words,
// <eos>, then padding — whose one-hot rows match the ids, that
// Vocab.Decode turns into text Parse reads back to the same ids, and that
// the encoder maps to a finite posterior.
func FuzzParse(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	for class := range dataset.NumClasses {
		f.Add([]byte(dataset.Caption(class, rng)))
	}
	for _, s := range []string{
		"My comfy TROUSERS!", "T-Shirt/top", "ankle boot", "sneaker sneaker sneaker sneaker sneaker sneaker sneaker sneaker",
		"xyzzy qwerty", "", " \t\n", "<unk> <eos> <pad>", "-", "a-", "ÄÖÜ dress Straße", "\xff\xfe sneaker \x00",
		"x x x x x x x x sneaker", strings.Repeat("sneaker ", 600),
	} {
		f.Add([]byte(s))
	}
	l, err := language.New(language.Config{Net: mvae.Config{Latent: 4, Hidden: 8, Seed: 1}})
	if err != nil {
		f.Fatal(err)
	}
	vocab := l.Vocab()
	f.Fuzz(func(t *testing.T, text []byte) {
		x, err := l.Parse([]bus.Payload{{Type: "text/plain; charset=utf-8", Data: text}})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "observation 0: ") {
				t.Errorf("error %q does not name the observation", err)
			}
			return
		}
		if len(text) > language.MaxTextBytes {
			t.Fatalf("accepted %d bytes of text, more than MaxTextBytes", len(text))
		}
		c := x.(*language.Captions)
		if c.N != 1 || len(c.IDs) != dataset.MaxTokens || len(c.OneHot) != dataset.MaxTokens*vocab.Len() {
			t.Fatalf("a caption of %d rows, %d ids, %d one-hot values", c.N, len(c.IDs), len(c.OneHot))
		}
		eos := slices.Index(c.IDs, dataset.EOSID)
		known := 0
		for p, id := range c.IDs {
			switch {
			case id < 0 || int(id) >= vocab.Len():
				t.Fatalf("token %d is %d, outside the vocabulary of %d", p, id, vocab.Len())
			case eos < 0 || p < eos && id <= dataset.EOSID && id != dataset.UnkID || p > eos && id != dataset.PadID:
				t.Fatalf("ids %v: want words, <eos>, then padding", c.IDs)
			case p < eos && id != dataset.UnkID:
				known++
			}
			row := c.OneHot[p*vocab.Len() : (p+1)*vocab.Len()]
			for k, v := range row {
				want := float32(0)
				if k == int(id) {
					want = 1
				}
				if v != want {
					t.Fatalf("one-hot row %d does not encode id %d", p, id)
				}
			}
		}
		if known == 0 {
			t.Fatalf("accepted %q, whose kept tokens %v hold no known word", text, c.IDs)
		}
		back := vocab.Decode(c.IDs)
		y, err := l.Parse([]bus.Payload{{Type: "text/plain", Data: []byte(back)}})
		if err != nil {
			t.Fatalf("Parse refuses %q, the decoding of %q: %v", back, text, err)
		}
		if got := y.(*language.Captions).IDs; !slices.Equal(got, c.IDs) {
			t.Fatalf("%q → %v → %q → %v", text, c.IDs, back, got)
		}
		mu, lv := make([]float32, 4), make([]float32, 4)
		if err := l.Encode(x, mu, lv); err != nil {
			t.Fatal(err)
		}
		for i := range mu {
			if math.IsNaN(float64(mu[i])) || math.IsInf(float64(mu[i]), 0) || math.IsNaN(float64(lv[i])) || math.IsInf(float64(lv[i]), 0) {
				t.Fatalf("posterior mu %v, logvar %v", mu, lv)
			}
		}
	})
}

// TestParseRefusesOversizedText: text over MaxTextBytes is refused before
// it is tokenised, with an error that gives both sizes.
func TestParseRefusesOversizedText(t *testing.T) {
	l, err := language.New(language.Config{Net: mvae.Config{Latent: 4, Hidden: 8}})
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("a sneaker ", 1<<20)
	_, err = l.Parse([]bus.Payload{{Type: "text/plain", Data: []byte(big)}})
	if err == nil || !strings.Contains(err.Error(), "10485760 bytes") || !strings.Contains(err.Error(), "4096") {
		t.Fatalf("Parse of 10 MiB of text = %v, want an error giving the size and the limit", err)
	}
}

// TestParseCountsOnlyKeptWords: a known word past the words a caption
// keeps does not make unknown text usable, and the error says why.
func TestParseCountsOnlyKeptWords(t *testing.T) {
	l, err := language.New(language.Config{Net: mvae.Config{Latent: 4, Hidden: 8}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Parse([]bus.Payload{{Type: "text/plain", Data: []byte("x x x x x x x x sneaker")}})
	if err == nil || !strings.Contains(err.Error(), "no known word in the first 7 words") {
		t.Fatalf("Parse = %v, want an error saying no known word is among the words kept", err)
	}
}
