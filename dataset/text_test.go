package dataset_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/serket-go/serket/dataset"
)

// TestCaptionsRoundTrip: every caption of every class, over many seeds,
// fits MaxTokens, encodes with no unknown word and decodes to itself; and
// the seeds reach every synonym and many templates.
func TestCaptionsRoundTrip(t *testing.T) {
	v := dataset.CaptionVocab()
	var ids [dataset.MaxTokens]int32
	for class := range dataset.NumClasses {
		seen := map[string]bool{}
		for seed := range uint64(2000) {
			c := dataset.Caption(class, rand.New(rand.NewPCG(seed, 7)))
			seen[c] = true
			if unk := v.Encode(ids[:], c); unk != 0 {
				t.Fatalf("class %d: %q has %d unknown words", class, c, unk)
			}
			if got := v.Decode(ids[:]); got != c {
				t.Fatalf("class %d: %q decodes to %q", class, c, got)
			}
			if !slices.Contains(ids[:], dataset.EOSID) {
				t.Fatalf("class %d: %q was cut: %v", class, c, ids)
			}
		}
		if len(seen) < 30 {
			t.Errorf("class %d: only %d distinct captions in 2000 draws", class, len(seen))
		}
	}
}

// TestCaptionSynonyms: captions name their class by its synonyms, so the
// classes are told apart by words (t-shirt vs shirt, boot vs boots).
func TestCaptionSynonyms(t *testing.T) {
	want := map[int][]string{
		0: {"t-shirt", "tee", "top", "tshirt"},
		1: {"trousers", "pants", "jeans", "slacks"},
		5: {"sandal", "sandals", "flip-flops"},
		6: {"shirt", "blouse", "button-down"},
		7: {"sneaker", "sneakers", "trainers", "running shoe"},
		9: {"ankle boot", "boot", "boots", "bootie"},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for class, syns := range want {
		found := map[string]bool{}
		for range 1000 {
			words := " " + dataset.Caption(class, rng) + " "
			n := 0
			for _, s := range syns {
				if strings.Contains(words, " "+s+" ") {
					found[s] = true
					n++
				}
			}
			if n == 0 {
				t.Fatalf("class %d: caption %q names none of %v", class, words, syns)
			}
		}
		if len(found) != len(syns) {
			t.Errorf("class %d: only %v of %v in 1000 captions", class, found, syns)
		}
	}
	// Articles agree with the noun.
	for range 2000 {
		c := dataset.Caption(9, rng)
		if strings.Contains(c, "a ankle") || strings.Contains(c, "an boot") {
			t.Fatalf("bad article: %q", c)
		}
	}
}

func TestCaptionDeterministic(t *testing.T) {
	draw := func(seed uint64) []string {
		rng := rand.New(rand.NewPCG(seed, seed))
		var out []string
		for c := range 50 {
			out = append(out, dataset.Caption(c%dataset.NumClasses, rng))
		}
		return out
	}
	if a, b := draw(3), draw(3); !slices.Equal(a, b) {
		t.Fatalf("same seed, different captions:\n%v\n%v", a, b)
	}
	if a, b := draw(3), draw(4); slices.Equal(a, b) {
		t.Fatalf("seeds 3 and 4 give the same 50 captions: %v", a)
	}
}

func TestCaptionBadClassPanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "class 10") {
			t.Fatalf("recovered %v, want a panic naming class 10", r)
		}
	}()
	dataset.Caption(10, rand.New(rand.NewPCG(1, 1)))
}

func TestVocabIDs(t *testing.T) {
	v := dataset.NewVocab([]string{"zebra", "Apple", "apple", "ankle boot", ""})
	if got := v.Words(); !slices.Equal(got, []string{"ankle", "apple", "boot", "zebra"}) {
		t.Fatalf("Words %v", got)
	}
	if v.Len() != 7 {
		t.Fatalf("Len %d, want 7", v.Len())
	}
	for id, w := range []string{"<pad>", "<unk>", "<eos>", "ankle", "apple", "boot", "zebra"} {
		if got := v.Word(int32(id)); got != w {
			t.Errorf("Word(%d) = %q, want %q", id, got, w)
		}
	}
	if got := dataset.NewVocab(v.Words()).Words(); !slices.Equal(got, v.Words()) {
		t.Errorf("NewVocab(Words()) gives %v", got)
	}
}

func TestEncode(t *testing.T) {
	v := dataset.CaptionVocab()
	for _, c := range []struct {
		name, in, want string
		unknown        int
	}{
		{"plain", "a photo of a sneaker", "a photo of a sneaker", 0},
		{"normalised", "  T-Shirt!!  ", "t-shirt", 0},
		{"class name with slash", "t-shirt/top", "t-shirt top", 0},
		{"case and punctuation", "MY Sneakers, please.", "my sneakers <unk>", 1},
		{"hyphen not between letters", "-boot- flip-flops - coat", "boot flip-flops coat", 0},
		{"digits split words", "bag2tote", "bag tote", 0},
		{"unknown words", "my fluffy purple sneaker", "my <unk> <unk> sneaker", 2},
		{"empty", "", "", 0},
		{"only punctuation", "?!", "", 0},
		{"cut, eos kept", "a b c d e f g h i j", "a <unk> <unk> <unk> <unk> <unk> <unk>", 8}, // "i" is a word,
		{"cut counts unknown words beyond the cut", "bag bag bag bag bag bag bag xyzzy", "bag bag bag bag bag bag bag", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			ids := make([]int32, dataset.MaxTokens)
			for i := range ids {
				ids[i] = 99 // Encode must overwrite every slot
			}
			unk := v.Encode(ids, c.in)
			if got := v.Decode(ids); got != c.want || unk != c.unknown {
				t.Fatalf("Encode(%q) → %v → %q with %d unknown, want %q with %d", c.in, ids, got, unk, c.want, c.unknown)
			}
			eos := slices.Index(ids, dataset.EOSID)
			if eos < 0 {
				t.Fatalf("no <eos> in %v", ids)
			}
			for _, id := range ids[eos+1:] {
				if id != dataset.PadID {
					t.Fatalf("not padded after <eos>: %v", ids)
				}
			}
		})
	}
}

func TestDecodeOddIDs(t *testing.T) {
	v := dataset.CaptionVocab()
	sneaker := v.ID("sneaker")
	got := v.Decode([]int32{dataset.PadID, sneaker, 9999, -1, dataset.UnkID, dataset.EOSID, sneaker})
	if got != "sneaker <unk> <unk> <unk>" {
		t.Fatalf("Decode %q", got)
	}
	if got := v.Decode(nil); got != "" {
		t.Fatalf("Decode(nil) = %q", got)
	}
}

func ExampleVocab_Encode() {
	v := dataset.CaptionVocab()
	ids := make([]int32, dataset.MaxTokens)
	unknown := v.Encode(ids, "Look at my fluffy T-Shirt!")
	fmt.Println(v.Decode(ids), unknown)
	// Output: look at my <unk> t-shirt 1
}

// TestClassOfCaption: every caption the generator makes names its class,
// and text naming none or two classes is -1.
func TestClassOfCaption(t *testing.T) {
	for c := range dataset.NumClasses {
		for seed := range uint64(300) {
			s := dataset.Caption(c, rand.New(rand.NewPCG(seed, 9)))
			if got := dataset.ClassOfCaption(s); got != c {
				t.Errorf("ClassOfCaption(%q) = %d, want %d", s, got, c)
			}
		}
	}
	for _, s := range []string{"", "a photo of", "a shirt and a bag", "<unk> <unk>"} {
		if got := dataset.ClassOfCaption(s); got != -1 {
			t.Errorf("ClassOfCaption(%q) = %d, want -1", s, got)
		}
	}
}
