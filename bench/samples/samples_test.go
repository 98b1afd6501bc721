package samples_test

import (
	"strings"
	"testing"

	"github.com/serket-go/serket/bench/samples"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/language"
	"github.com/serket-go/serket/modules/mvae"
	"github.com/serket-go/serket/modules/vision"
)

// parsers build the vision and language modalities as their modules do,
// for their Parsers.
func parsers(t *testing.T, dir string) map[string]module.Parser {
	t.Helper()
	net := mvae.Config{Latent: 2, Hidden: 2}
	src := func(name string) *mvae.Source {
		s, err := mvae.OpenSource(dir, name, mvae.Pairing{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	v, err := vision.New(vision.Config{Net: net, Source: src(dataset.Vision)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := language.New(language.Config{Net: net, Source: src(dataset.Language)})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]module.Parser{dataset.Vision: v, dataset.Language: l}
}

// Samples are the raw inputs a person gives, of distinct test items, and
// each one is an input its module accepts. (Not the utterances: rendering
// a WAV takes seconds under the race detector. cmd/serket's
// TestBenchLoadCommand sends them to the audio module, which must take
// part in every reply.)
func TestRead(t *testing.T) {
	dir := datasettest.Dir(t)
	ps := parsers(t, dir)
	for _, c := range []struct {
		names []string
		n     int
	}{{[]string{dataset.Vision, dataset.Language}, 4}, {[]string{dataset.Language}, 1}} {
		items, err := samples.Read(dir, c.names, c.n)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != c.n {
			t.Fatalf("%d items of %v, want %d", len(items), c.names, c.n)
		}
		for _, name := range c.names {
			var raw []bus.Payload
			seen := map[string]bool{}
			for _, it := range items {
				raw = append(raw, it[name])
				seen[string(it[name].Data)] = true
			}
			want := map[string]string{dataset.Vision: "image/png", dataset.Language: "text/plain"}[name]
			if !strings.HasPrefix(raw[0].Type, want) {
				t.Errorf("%s: a %s sample, want %s", name, raw[0].Type, want)
			}
			if name == dataset.Vision && len(seen) != c.n {
				t.Errorf("%s: %d distinct samples of %d items", name, len(seen), c.n)
			}
			b, err := ps[name].Parse(raw)
			if err != nil {
				t.Fatalf("%s refuses its samples: %v", name, err)
			}
			if b.Len() != c.n {
				t.Errorf("%s: %d rows parsed, want %d", name, b.Len(), c.n)
			}
		}
	}
}

// A module without samples, or a dataset that is not there, is an error
// that says so.
func TestReadRefuses(t *testing.T) {
	if _, err := samples.Read(t.TempDir(), []string{"touch"}, 1); err == nil || !strings.Contains(err.Error(), "touch has no sample inputs") {
		t.Errorf("touch: %v", err)
	}
	if _, err := samples.Read(t.TempDir(), []string{dataset.Vision}, 1); err == nil {
		t.Error("an empty directory gave samples")
	}
	if !samples.Has(dataset.Audio) || samples.Has("touch") || strings.Join(samples.Names(), ",") != "audio,language,vision" {
		t.Errorf("Has/Names: %v", samples.Names())
	}
}
