// Package language is the caption modality: short English captions as
// MaxTokens token ids over the caption vocabulary, an MVAE-style MLP encoder
// on their one-hot encoding, and a decoder with a categorical likelihood per
// token position.
//
// It reads only its own shard (language.shard, which holds the captions and
// the vocabulary, never the label), parses free text a person types (unknown
// words map to <unk>; text with no known word is refused), and renders a
// latent as the most likely caption.
package language

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/mvae"
	"github.com/serket-go/serket/nn"
)

// Config configures the modality.
type Config struct {
	Name   string // module name; default "language"
	Net    mvae.Config
	Source *mvae.Source // its shard; nil for a module that only parses and renders
	Vocab  *dataset.Vocab
}

// Language is the caption modality: the networks' part is mvae.Modality's.
type Language struct {
	*mvae.Modality[*Captions]
	src   *mvae.Source
	vocab *dataset.Vocab
	t, v  int                  // tokens per caption, vocabulary size
	cands []int32              // distinct captions of the shard, for Render
	spare mvae.Spare[Captions] // the last step's batch, for LoadBatch to refill
}

var (
	_ module.Learner  = (*Language)(nil)
	_ module.Loader   = (*Language)(nil)
	_ module.Recycler = (*Language)(nil)
	_ module.Parser   = (*Language)(nil)
	_ module.Renderer = (*Language)(nil)
	_ module.Saver    = (*Language)(nil)
	_ module.Scorer   = (*Language)(nil)
	_ module.Featurer = (*Language)(nil)
	_ module.Picker   = (*Captions)(nil)
)

// New returns the modality with fresh parameters. The vocabulary is the
// shard's when there is a shard, else cfg.Vocab, else the caption
// generator's.
func New(cfg Config) (*Language, error) {
	vocab := cfg.Vocab
	if cfg.Source != nil {
		words := cfg.Source.Shard.Meta["vocab"]
		if words == "" {
			return nil, fmt.Errorf("language: the shard has no vocabulary; prepare the dataset again")
		}
		vocab = dataset.NewVocab(strings.Split(words, "\n"))
	}
	if vocab == nil {
		vocab = dataset.CaptionVocab()
	}
	t, v := dataset.MaxTokens, vocab.Len()
	cfg.Net.In, cfg.Net.Out = t*v, t*v
	words := strings.Join(vocab.Words(), "\n")
	m, err := mvae.NewModality[*Captions](mvae.Parts{
		Kind: "language", Name: cfg.Name, Net: cfg.Net,
		Likelihood: categorical{t: t, v: v},
		// A checkpoint over another vocabulary would map every token to
		// another word: it is refused before anything changes.
		Meta: map[string]string{"vocab": words},
		Check: func(meta map[string]string) error {
			if meta["vocab"] != words {
				return fmt.Errorf("the checkpoint's vocabulary differs from this module's")
			}
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	return &Language{Modality: m, src: cfg.Source, vocab: vocab, t: t, v: v}, nil
}

// categorical is the captions' likelihood: a categorical distribution
// over the vocabulary at every token position, the decoder's outputs its
// logits (MaxTokens×V a row).
type categorical struct{ t, v int }

func (categorical) Name() string { return "categorical" }

func (c categorical) LogLik(ll, dout, out []float32, x mvae.Batch, w []float32) {
	nn.CategoricalLogLik(ll, dout, out, x.(*Captions).IDs, w, x.Len(), c.t, c.v)
}

// Mean is each token position's distribution over the vocabulary (the
// softmax of its logits): the mean of its one-hot encoding.
func (c categorical) Mean(dst, out []float32) {
	lp := make([]float64, c.v)
	for p := 0; p+c.v <= len(out); p += c.v {
		LogSoftmax(lp, out[p:p+c.v])
		for k, v := range lp {
			dst[p+k] = float32(math.Exp(v))
		}
	}
}

// Captions is a batch of captions: N×MaxTokens token ids and their one-hot
// encoding, N×(MaxTokens×V).
type Captions struct {
	N      int
	IDs    []int32
	OneHot []float32
}

// Len implements module.Batch.
func (x *Captions) Len() int { return x.N }

// Input implements mvae.Batch: the encoder reads the one-hot encoding.
func (x *Captions) Input() []float32 { return x.OneHot }

func (l *Language) newCaptions(n int) *Captions {
	return &Captions{N: n, IDs: make([]int32, n*l.t), OneHot: make([]float32, n*l.t*l.v)}
}

// setOneHot sets row i of c's one-hot matrix from its ids; the row is
// zero, as newCaptions makes it.
func (l *Language) setOneHot(c *Captions, i int) {
	row := c.OneHot[i*l.t*l.v : (i+1)*l.t*l.v]
	for p, id := range c.IDs[i*l.t : (i+1)*l.t] {
		row[p*l.v+int(id)] = 1
	}
}

// Vocab is the vocabulary.
func (l *Language) Vocab() *dataset.Vocab { return l.vocab }

// Pick implements module.Picker.
func (x *Captions) Pick(rows []int) module.Batch {
	t, v := len(x.IDs)/max(x.N, 1), len(x.OneHot)/max(x.N, 1)
	out := &Captions{N: len(rows), IDs: make([]int32, len(rows)*t), OneHot: make([]float32, len(rows)*v)}
	for i, r := range rows {
		copy(out.IDs[i*t:(i+1)*t], x.IDs[r*t:(r+1)*t])
		copy(out.OneHot[i*v:(i+1)*v], x.OneHot[r*v:(r+1)*v])
	}
	return out
}

// LoadBatch implements module.Loader from language.shard (MaxTokens int32
// token ids per item, little-endian).
func (l *Language) LoadBatch(ids []uint64) (module.Batch, []bool, error) {
	c := l.spare.Take()
	if c == nil {
		c = l.newCaptions(len(ids))
	} else {
		l.reuse(c, len(ids))
	}
	present, err := l.src.Lookup(ids, func(i int, rec []byte) error {
		for p := 0; p < l.t; p++ {
			id := int32(binary.LittleEndian.Uint32(rec[4*p:]))
			if id < 0 || int(id) >= l.v {
				return fmt.Errorf("item %d: token id %d outside the vocabulary of %d", ids[i], id, l.v)
			}
			c.IDs[i*l.t+p] = id
		}
		l.setOneHot(c, i)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("language: %w", err)
	}
	return c, present, nil
}

// Recycle implements module.Recycler. It keeps only a batch of this
// language's shape whose ids are in its vocabulary, as LoadBatch makes
// them: reuse unsets the one-hot entries by id.
func (l *Language) Recycle(x module.Batch) {
	c, ok := x.(*Captions)
	if !ok || len(c.IDs) != c.N*l.t || len(c.OneHot) != c.N*l.t*l.v {
		return
	}
	for _, id := range c.IDs {
		if id < 0 || int(id) >= l.v {
			return
		}
	}
	l.spare.Keep(c)
}

// reuse readies c, a batch Recycle kept, to hold n captions as newCaptions
// makes them: it unsets the one-hot entries its ids set and zeroes the
// ids, so that all of its storage is zero again.
func (l *Language) reuse(c *Captions, n int) {
	for k, id := range c.IDs {
		c.OneHot[k*l.v+int(id)] = 0
	}
	clear(c.IDs)
	c.N, c.IDs, c.OneHot = n, mvae.Resize(c.IDs, n*l.t), mvae.Resize(c.OneHot, n*l.t*l.v)
}

// MaxTextBytes bounds the text Parse accepts.
const MaxTextBytes = 4096

// Parse implements module.Parser: text/plain, one caption per payload.
func (l *Language) Parse(raw []bus.Payload) (module.Batch, error) {
	c := l.newCaptions(len(raw))
	for i, p := range raw {
		if !strings.HasPrefix(p.Type, "text/plain") {
			return nil, fmt.Errorf("observation %d: content type %q, want text/plain", i, p.Type)
		}
		if len(p.Data) > MaxTextBytes {
			return nil, fmt.Errorf("observation %d: %d bytes of text, at most %d", i, len(p.Data), MaxTextBytes)
		}
		text := string(p.Data)
		ids := c.IDs[i*l.t : (i+1)*l.t]
		unknown := l.vocab.Encode(ids, text)
		// Known words past the cut do not count: the caption holds only
		// the first MaxTokens-1 words.
		if !slices.ContainsFunc(ids, func(id int32) bool { return id > dataset.EOSID }) {
			if len(dataset.Tokenize(text)) > unknown {
				return nil, fmt.Errorf("observation %d: no known word in the first %d words of %q, the most a caption keeps; known words include %s", i, l.t-1, text, l.examples())
			}
			return nil, fmt.Errorf("observation %d: no known word in %q; known words include %s", i, text, l.examples())
		}
		l.setOneHot(c, i)
	}
	return c, nil
}

func (l *Language) examples() string {
	ws := l.vocab.Words()
	var pick []string
	for _, w := range ws {
		if !strings.HasPrefix(w, "<") {
			pick = append(pick, w)
		}
	}
	if len(pick) > 12 {
		step := len(pick) / 12
		var s []string
		for i := 0; i < len(pick) && len(s) < 12; i += step {
			s = append(s, pick[i])
		}
		pick = s
	}
	return strings.Join(pick, ", ")
}

// Render implements module.Renderer: the most likely caption among those
// of the module's own shard (its distinct token sequences, no labels), or,
// without a shard, the most likely token at each position. The decoder
// scores every position independently, and the noun's position varies with
// the template, so per-position argmax mixes templates ("a is of"); scoring
// whole known captions does not.
func (l *Language) Render(z []float32, n int) ([]bus.Payload, error) {
	logits, err := l.Output(z, n)
	if err != nil {
		return nil, err
	}
	out := make([]bus.Payload, n)
	ids := make([]int32, l.t)
	cands := l.candidates()
	logp := make([]float64, l.t*l.v)
	for i := 0; i < n; i++ {
		for p := 0; p < l.t; p++ {
			row := logits[(i*l.t+p)*l.v : (i*l.t+p+1)*l.v]
			LogSoftmax(logp[p*l.v:(p+1)*l.v], row)
		}
		if len(cands) > 0 {
			best, bestLP := 0, math.Inf(-1)
			for c := 0; c < len(cands)/l.t; c++ {
				var s float64
				for p, id := range cands[c*l.t : (c+1)*l.t] {
					s += logp[p*l.v+int(id)]
				}
				if s > bestLP {
					best, bestLP = c, s
				}
			}
			copy(ids, cands[best*l.t:(best+1)*l.t])
		} else {
			for p := 0; p < l.t; p++ {
				best := 0
				for k := 1; k < l.v; k++ {
					if logp[p*l.v+k] > logp[p*l.v+best] {
						best = k
					}
				}
				ids[p] = int32(best)
			}
		}
		out[i] = bus.Payload{Type: "text/plain; charset=utf-8", Data: []byte(l.vocab.Decode(ids))}
	}
	return out, nil
}

// candidates returns the distinct captions of the shard, MaxTokens ids each,
// found once.
func (l *Language) candidates() []int32 {
	if l.cands != nil || l.src == nil {
		return l.cands
	}
	seen := map[string]bool{}
	sh := l.src.Shard
	for i := 0; i < len(sh.IDs); i++ {
		rec := sh.Records[i*sh.RecordSize : (i+1)*sh.RecordSize]
		if seen[string(rec)] {
			continue
		}
		seen[string(rec)] = true
		ok := true
		for p := 0; p < l.t; p++ {
			id := binary.LittleEndian.Uint32(rec[4*p:])
			ok = ok && id < uint32(l.v)
		}
		for p := 0; ok && p < l.t; p++ {
			l.cands = append(l.cands, int32(binary.LittleEndian.Uint32(rec[4*p:])))
		}
	}
	return l.cands
}

// LogSoftmax writes log softmax(x) into dst (len(x)), in float64 with a
// max-shifted log-sum-exp: one token position's log-probabilities from the
// decoder's logits.
func LogSoftmax(dst []float64, x []float32) {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	lse := m + math.Log(s)
	for k, v := range x {
		dst[k] = float64(v) - lse
	}
}
