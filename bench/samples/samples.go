// Package samples turns items of a prepared Fashion-MNIST-3 dataset into the
// raw observations a person would give the built-in modalities: a caption
// as text, an image as a grey PNG, an utterance as a WAV (its log-mel
// features inverted by Griffin-Lim, as the audio module renders speech).
// serket bench load sends them, so that its requests cost the modules what
// a real request costs: parsing a PNG, tokenising text, a WAV's log-mel.
//
// A sample is read the way the module reads its item (its Loader on its own
// shard) and written the way the module renders one, so that it is an input
// the module accepts. Other modules have no samples: their inputs come from
// whoever runs them.
package samples

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"image"
	"image/png"
	"maps"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/modules/audio"
	"github.com/serket-go/serket/modules/language"
	"github.com/serket-go/serket/modules/mvae"
	"github.com/serket-go/serket/modules/vision"
)

// writers turn the items ids of the dataset in dir into raw observations,
// one per id, for each built-in modality.
var writers = map[string]func(dir string, ids []uint64) ([]bus.Payload, error){
	dataset.Vision:   images,
	dataset.Language: captions,
	dataset.Audio:    utterances,
}

// Has reports whether module name is a built-in modality, which has samples.
func Has(name string) bool { _, ok := writers[name]; return ok }

// Names are the modules that have samples, sorted.
func Names() []string { return slices.Sorted(maps.Keys(writers)) }

// Read returns the observations of n test items spread evenly over the test
// split of the dataset in dir (all of them when it has fewer), one map per
// item with an observation for each of names. A name without samples is an
// error that says so.
func Read(dir string, names []string, n int) ([]map[string]bus.Payload, error) {
	for _, name := range names {
		if !Has(name) {
			return nil, fmt.Errorf("samples: %s has no sample inputs (only %v do)", name, Names())
		}
	}
	man, err := dataset.ReadManifest(dir)
	if err != nil {
		return nil, fmt.Errorf("samples: %w", err)
	}
	test := man.InSplit(dataset.Test)
	if len(test) == 0 || n < 1 {
		return nil, fmt.Errorf("samples: %s: %d test items, %d wanted", dir, len(test), n)
	}
	n = min(n, len(test))
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = test[i*len(test)/n].ID
	}
	items := make([]map[string]bus.Payload, n)
	for i := range items {
		items[i] = map[string]bus.Payload{}
	}
	for _, name := range names {
		p, err := writers[name](dir, ids)
		if err != nil {
			return nil, fmt.Errorf("samples: %s: %w", name, err)
		}
		for i := range items {
			items[i][name] = p[i]
		}
	}
	return items, nil
}

// tiny sizes the networks of a modality built only to read its items and
// render them: the networks never run.
var tiny = mvae.Config{Latent: 1, Hidden: 1}

func source(dir, name string) (*mvae.Source, error) {
	return mvae.OpenSource(dir, name, mvae.Pairing{})
}

// images encodes each image as a grey PNG, as a camera would send it.
func images(dir string, ids []uint64) ([]bus.Payload, error) {
	src, err := source(dir, dataset.Vision)
	if err != nil {
		return nil, err
	}
	v, err := vision.New(vision.Config{Net: tiny, Source: src})
	if err != nil {
		return nil, err
	}
	b, _, err := v.LoadBatch(ids)
	if err != nil {
		return nil, err
	}
	x := b.(*vision.Images)
	out := make([]bus.Payload, x.N)
	for i := range out {
		img := image.NewGray(image.Rect(0, 0, vision.Side, vision.Side))
		for j, v := range x.Pix[i*vision.Pixels : (i+1)*vision.Pixels] {
			img.Pix[j] = uint8(255*v + 0.5)
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			return nil, err
		}
		out[i] = bus.Payload{Type: "image/png", Data: buf.Bytes()}
	}
	return out, nil
}

// captions turns each item's token ids back into its caption's text.
func captions(dir string, ids []uint64) ([]bus.Payload, error) {
	src, err := source(dir, dataset.Language)
	if err != nil {
		return nil, err
	}
	l, err := language.New(language.Config{Net: tiny, Source: src})
	if err != nil {
		return nil, err
	}
	b, _, err := l.LoadBatch(ids)
	if err != nil {
		return nil, err
	}
	x := b.(*language.Captions)
	t := len(x.IDs) / x.N
	out := make([]bus.Payload, x.N)
	for i := range out {
		out[i] = bus.Payload{Type: "text/plain; charset=utf-8", Data: []byte(l.Vocab().Decode(x.IDs[i*t : (i+1)*t]))}
	}
	return out, nil
}

// utterances renders each item's utterance as a WAV from its log-mel
// features (Griffin-Lim, as the audio module renders speech). Items share
// utterances, so each distinct one is rendered once, in parallel: about
// 0.1 s each on one core.
func utterances(dir string, ids []uint64) ([]bus.Payload, error) {
	src, err := source(dir, dataset.Audio)
	if err != nil {
		return nil, err
	}
	a, err := audio.New(audio.Config{Net: tiny, Source: src})
	if err != nil {
		return nil, err
	}
	b, _, err := a.LoadBatch(ids)
	if err != nil {
		return nil, err
	}
	x := b.(*audio.Features)
	f := len(x.X) / x.N
	first, of := distinct(x.X, x.N, f)
	out := make([]bus.Payload, x.N)
	errs := make([]error, x.N)
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for _, i := range first {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			wav, err := a.SpeechWAV(a.Denormalise(nil, x.X[i*f:(i+1)*f]))
			out[i], errs[i] = bus.Payload{Type: "audio/wav", Data: wav}, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i, j := range of {
		out[i] = out[j]
	}
	return out, nil
}

// distinct finds the distinct rows of x (n rows of f values): first maps a
// row's hash to the first row that has it, of[i] is that row for row i.
func distinct(x []float32, n, f int) (first map[uint64]int, of []int) {
	first = map[uint64]int{}
	of = make([]int, n)
	var b [4]byte
	for i := range of {
		h := fnv.New64a()
		for _, v := range x[i*f : (i+1)*f] {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			h.Write(b[:])
		}
		k := h.Sum64()
		if j, ok := first[k]; ok {
			of[i] = j
			continue
		}
		first[k], of[i] = i, i
	}
	return first, of
}
