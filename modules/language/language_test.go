package language_test

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/module/moduletest"
	"github.com/serket-go/serket/modules/language"
	"github.com/serket-go/serket/modules/mvae"
)

func text(s string) bus.Payload {
	return bus.Payload{Type: "text/plain; charset=utf-8", Data: []byte(s)}
}

func source(t *testing.T, p mvae.Pairing) *mvae.Source {
	t.Helper()
	src, err := mvae.OpenSource(datasettest.Dir(t), dataset.Language, p)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestConformance(t *testing.T) {
	src := source(t, mvae.Pairing{Fraction: 0.5, Seed: 3})
	moduletest.Run(t, moduletest.Config{
		New: func() (module.Modality, error) {
			return language.New(language.Config{Net: mvae.Config{Latent: 16, Hidden: 128, Seed: 1}, Source: src})
		},
		IDs:    []uint64{0, 1, 2, 3, 4, 5, 6, 7, 60000, 60001},
		BadIDs: []uint64{59999},
		Inputs: []bus.Payload{text("a photo of a sneaker"), text("My comfy TROUSERS!"), text("boots")},
		BadInputs: []bus.Payload{
			text("xyzzy qwerty"),
			text(""),
			text(strings.Repeat("sneaker ", 1000)),
			{Type: "image/png", Data: []byte("a sneaker")},
		},
	})
}

// TestLoadedCaptionsAreCaptions: the shard's token ids decode to captions
// the generator can make, of the item's class (checked through the manifest,
// which only the test reads).
func TestLoadedCaptionsAreCaptions(t *testing.T) {
	dir := datasettest.Dir(t)
	l, err := language.New(language.Config{Net: mvae.Config{Latent: 4, Hidden: 8}, Source: source(t, mvae.Pairing{})})
	if err != nil {
		t.Fatal(err)
	}
	man, err := dataset.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids := []uint64{0, 1, 2, 3, 60000}
	x, present, err := l.LoadBatch(ids)
	if err != nil {
		t.Fatal(err)
	}
	c := x.(*language.Captions)
	classOf := map[uint64]uint8{}
	for _, it := range man.Items {
		classOf[it.ID] = it.Class
	}
	for i, id := range ids {
		if !present[i] {
			t.Fatalf("item %d absent with full pairing", id)
		}
		got := l.Vocab().Decode(c.IDs[i*dataset.MaxTokens : (i+1)*dataset.MaxTokens])
		if got == "" {
			t.Fatalf("item %d: empty caption", id)
		}
		// Some caption of the item's class, for some seed, must be this one.
		found := false
		for seed := uint64(0); seed < 5000 && !found; seed++ {
			found = dataset.Caption(int(classOf[id]), newRand(seed)) == got
		}
		if !found {
			t.Errorf("item %d: caption %q is not one the generator makes for class %d", id, got, classOf[id])
		}
	}
}

func TestParseMapsUnknownWords(t *testing.T) {
	l, err := language.New(language.Config{Net: mvae.Config{Latent: 4, Hidden: 8}})
	if err != nil {
		t.Fatal(err)
	}
	x, err := l.Parse([]bus.Payload{text("my fluffy sneaker")})
	if err != nil {
		t.Fatal(err)
	}
	got := l.Vocab().Decode(x.(*language.Captions).IDs[:dataset.MaxTokens])
	if got != "my <unk> sneaker" {
		t.Fatalf("parsed %q, want %q", got, "my <unk> sneaker")
	}
	_, err = l.Parse([]bus.Payload{text("xyzzy")})
	if err == nil || !strings.Contains(err.Error(), "no known word") || !strings.Contains(err.Error(), "known words include") {
		t.Fatalf("text with no known word: %v", err)
	}
}

// TestRestoreRefusesAnotherVocabulary: a checkpoint of a network over
// another vocabulary of the same size fits every shape, but would map each
// token to another word; it is refused, and nothing changes.
func TestRestoreRefusesAnotherVocabulary(t *testing.T) {
	words := dataset.CaptionVocab().Words()
	words[0] = "aardvark"
	other := dataset.NewVocab(words)
	if other.Len() != dataset.CaptionVocab().Len() {
		t.Fatalf("the other vocabulary has %d ids, want %d: the test needs one of the same shapes", other.Len(), dataset.CaptionVocab().Len())
	}
	newLang := func(v *dataset.Vocab, seed uint64) *language.Language {
		l, err := language.New(language.Config{Net: mvae.Config{Latent: 4, Hidden: 8, Seed: seed}, Vocab: v})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	var ckpt bytes.Buffer
	if err := newLang(other, 2).Save(&ckpt); err != nil {
		t.Fatal(err)
	}
	l := newLang(nil, 1)
	before := slices.Clone(l.Net().Params()[0].W)
	if err := l.Restore(bytes.NewReader(ckpt.Bytes())); err == nil || !strings.Contains(err.Error(), "vocabulary differs") {
		t.Fatalf("Restore of a checkpoint over another vocabulary: %v", err)
	}
	if !slices.Equal(l.Net().Params()[0].W, before) {
		t.Fatal("the refused checkpoint changed the parameters")
	}
	ckpt.Reset()
	if err := newLang(nil, 2).Save(&ckpt); err != nil {
		t.Fatal(err)
	}
	if err := l.Restore(bytes.NewReader(ckpt.Bytes())); err != nil {
		t.Fatalf("Restore of a checkpoint over the same vocabulary: %v", err)
	}
	if slices.Equal(l.Net().Params()[0].W, before) {
		t.Fatal("Restore of a checkpoint over the same vocabulary left the parameters as they were")
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0)) }
