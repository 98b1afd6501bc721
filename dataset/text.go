package dataset

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"unicode"
)

// MaxTokens is the length of an encoded caption, the end token included:
// longer text is cut, shorter text padded.
const MaxTokens = 8

// The special token ids every [Vocab] starts with.
const (
	PadID int32 = 0
	UnkID int32 = 1
	EOSID int32 = 2
)

// The special tokens, as [Vocab.Decode] writes them.
const (
	PadToken = "<pad>"
	UnkToken = "<unk>"
	EOSToken = "<eos>"
)

// Vocab maps words to token ids: 0 <pad>, 1 <unk>, 2 <eos>, then the words
// in sorted order. A Vocab is immutable and safe for concurrent use.
type Vocab struct {
	words []string // by id, the specials first
	ids   map[string]int32
}

// NewVocab builds the vocabulary of words: each is normalised as
// [Vocab.Encode] would (so "T-Shirt" becomes "t-shirt", and "ankle boot"
// gives two words), duplicates dropped, the rest sorted after the
// specials.
func NewVocab(words []string) *Vocab {
	var ws []string
	for _, w := range words {
		ws = appendTokens(ws, w)
	}
	slices.Sort(ws)
	ws = slices.Compact(ws)
	v := &Vocab{words: []string{PadToken, UnkToken, EOSToken}, ids: map[string]int32{}}
	for _, w := range ws {
		v.ids[w] = int32(len(v.words))
		v.words = append(v.words, w)
	}
	return v
}

// Len is the number of token ids, the specials included.
func (v *Vocab) Len() int { return len(v.words) }

// Words returns the words by id, without the three specials: NewVocab of
// them gives the same Vocab.
func (v *Vocab) Words() []string { return slices.Clone(v.words[3:]) }

// ID returns the id of one normalised word, or UnkID.
func (v *Vocab) ID(word string) int32 {
	if id, ok := v.ids[word]; ok {
		return id
	}
	return UnkID
}

// Word returns the token of id: a word, a special, or <unk> for an id
// outside the vocabulary.
func (v *Vocab) Word(id int32) string {
	if id < 0 || int(id) >= len(v.words) {
		return UnkToken
	}
	return v.words[id]
}

// Encode writes text's token ids into dst: lower-cased words (letters, with
// inner hyphens kept: "T-Shirt/top!" is "t-shirt" and "top"), unknown
// words as UnkID, then EOSID, then PadID to the end of dst. Text too long
// for dst is cut so that EOSID is always there: at most len(dst)-1 words
// are kept. It returns how many words of text (kept or cut) are not in the
// vocabulary. It panics if dst is empty.
func (v *Vocab) Encode(dst []int32, text string) (unknown int) {
	if len(dst) == 0 {
		panic("dataset: Vocab.Encode into an empty dst")
	}
	n := 0
	eachToken(text, func(w string) {
		id := v.ID(w)
		if id == UnkID {
			unknown++
		}
		if n < len(dst)-1 {
			dst[n] = id
			n++
		}
	})
	dst[n] = EOSID
	clear(dst[n+1:])
	return unknown
}

// Decode returns the words of ids up to the first EOSID, space-joined,
// skipping PadID; unknown and out-of-range ids read as <unk>.
func (v *Vocab) Decode(ids []int32) string {
	var b strings.Builder
	for _, id := range ids {
		if id == EOSID {
			break
		}
		if id == PadID {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(v.Word(id))
	}
	return b.String()
}

// Tokenize returns the normalised words of text, as [Vocab.Encode] sees
// them.
func Tokenize(text string) []string { return appendTokens(nil, text) }

func appendTokens(dst []string, text string) []string {
	eachToken(text, func(w string) { dst = append(dst, w) })
	return dst
}

// eachToken calls f with each word of text: a maximal run of letters, with
// a hyphen kept where it joins two letters, lower-cased.
func eachToken(text string, f func(string)) {
	rs := []rune(text)
	var word []rune
	for i, r := range rs {
		switch {
		case unicode.IsLetter(r):
			word = append(word, unicode.ToLower(r))
		case r == '-' && len(word) > 0 && i+1 < len(rs) && unicode.IsLetter(rs[i+1]):
			word = append(word, '-')
		default:
			if len(word) > 0 {
				f(string(word))
				word = word[:0]
			}
		}
	}
	if len(word) > 0 {
		f(string(word))
	}
}

// A caption template: {a} is an indefinite article agreeing with the noun
// that follows, {x} the noun. Plural nouns (trousers, sneakers) take the
// plural form.
type template struct{ singular, plural string }

var templates = []template{
	{"{x}", "{x}"},
	{"{a} {x}", "some {x}"},
	{"the {x}", "the {x}"},
	{"my {x}", "my {x}"},
	{"my new {x}", "my new {x}"},
	{"a photo of {a} {x}", "a photo of {x}"},
	{"a picture of the {x}", "a picture of the {x}"},
	{"an image of {a} {x}", "an image of {x}"},
	{"this is {a} {x}", "these are {x}"},
	{"this is my {x}", "these are my {x}"},
	{"look at my {x}", "look at my {x}"},
	{"look at this {x}", "look at these {x}"},
	{"here is {a} {x}", "here are some {x}"},
	{"i like this {x}", "i like these {x}"},
	{"a nice {x}", "nice {x}"},
	{"an old {x}", "old {x}"},
}

// A synonym of a class, and whether it is plural.
type synonym struct {
	word   string
	plural bool
}

var synonyms = [NumClasses][]synonym{
	{{"t-shirt", false}, {"tee", false}, {"top", false}, {"tshirt", false}},
	{{"trousers", true}, {"pants", true}, {"jeans", true}, {"slacks", true}},
	{{"pullover", false}, {"sweater", false}, {"jumper", false}},
	{{"dress", false}, {"gown", false}, {"frock", false}},
	{{"coat", false}, {"jacket", false}, {"parka", false}},
	{{"sandal", false}, {"sandals", true}, {"flip-flops", true}},
	{{"shirt", false}, {"blouse", false}, {"button-down", false}},
	{{"sneaker", false}, {"sneakers", true}, {"trainers", true}, {"running shoe", false}},
	{{"bag", false}, {"handbag", false}, {"purse", false}, {"tote", false}},
	{{"ankle boot", false}, {"boot", false}, {"boots", true}, {"bootie", false}},
}

// Caption returns a short English caption of class (0 to 9): a template
// and a synonym drawn from rng, so the same rng state gives the same
// caption. Every caption fits [MaxTokens] and uses only words of
// [CaptionVocab]. It panics if class is not a class.
func Caption(class int, rng *rand.Rand) string {
	if class < 0 || class >= NumClasses {
		panic(fmt.Sprintf("dataset: Caption of class %d, want 0 to %d", class, NumClasses-1))
	}
	syn := synonyms[class][rng.IntN(len(synonyms[class]))]
	t := templates[rng.IntN(len(templates))]
	return fill(t, syn)
}

func fill(t template, syn synonym) string {
	s := t.singular
	if syn.plural {
		s = t.plural
	}
	art := "a"
	if strings.ContainsRune("aeiou", rune(syn.word[0])) {
		art = "an"
	}
	return strings.NewReplacer("{a}", art, "{x}", syn.word).Replace(s)
}

// allCaptions calls f with every caption Caption can return for class.
func allCaptions(class int, f func(string)) {
	for _, syn := range synonyms[class] {
		for _, t := range templates {
			f(fill(t, syn))
		}
	}
}

// CaptionVocab returns the vocabulary of every word [Caption] can produce.
func CaptionVocab() *Vocab {
	var words []string
	for c := range NumClasses {
		allCaptions(c, func(s string) { words = append(words, s) })
	}
	return NewVocab(words)
}

// ClassOfCaption returns the class whose name or synonym a caption uses,
// for evaluation (it reads labels: a module must never call it). It is
// -1 when the caption names no class, or names two.
func ClassOfCaption(text string) int {
	tokens := Tokenize(text)
	found := -1
	for c := range NumClasses {
		for _, syn := range synonyms[c] {
			if containsRun(tokens, Tokenize(syn.word)) {
				if found >= 0 && found != c {
					return -1
				}
				found = c
			}
		}
	}
	return found
}

func containsRun(tokens, run []string) bool {
	for i := 0; i+len(run) <= len(tokens); i++ {
		if slices.Equal(tokens[i:i+len(run)], run) {
			return true
		}
	}
	return false
}

// ClassCaptions returns every caption Caption can make for class: each
// synonym in every template. Evaluation uses it to score a decoder's
// belief in a class with the templates balanced across classes.
func ClassCaptions(class int) []string {
	var out []string
	allCaptions(class, func(s string) { out = append(out, s) })
	return out
}
