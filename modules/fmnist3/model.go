package fmnist3

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/internal/boundedread"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/audio"
	"github.com/serket-go/serket/modules/language"
	"github.com/serket-go/serket/modules/mvae"
	"github.com/serket-go/serket/modules/vision"
	"github.com/serket-go/serket/nn"
)

// Model is the three built-in modalities over a prepared dataset, with the
// dataset's manifest (the labels), in this process.
type Model struct {
	Data     string // the prepared dataset directory
	Latent   int
	Vision   *vision.Vision
	Language *language.Language
	Audio    *audio.Audio
	Manifest *dataset.Manifest
}

// Open builds the modalities with fresh parameters (hidden units per
// layer: 512 when 0) on the dataset in dir, every item fully paired.
func Open(dir string, latent, hidden int) (*Model, error) {
	man, err := dataset.ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	m := &Model{Data: dir, Latent: latent, Manifest: man}
	net := mvae.Config{Latent: latent, Hidden: hidden}
	mods := map[string]module.Modality{}
	for _, name := range m.Names() {
		if mods[name], err = NewModality(dir, name, net, mvae.Pairing{}); err != nil {
			return nil, fmt.Errorf("fmnist3: %w", err)
		}
	}
	m.Vision, m.Language, m.Audio = mods[dataset.Vision].(*vision.Vision), mods[dataset.Language].(*language.Language), mods[dataset.Audio].(*audio.Audio)
	return m, nil
}

// Names are the modalities in the order Modalities returns them.
func (m *Model) Names() []string { return dataset.Modalities() }

// Modality returns the modality called name, or nil.
func (m *Model) Modality(name string) module.Modality {
	switch name {
	case dataset.Vision:
		return m.Vision
	case dataset.Language:
		return m.Language
	case dataset.Audio:
		return m.Audio
	}
	return nil
}

// Net returns the networks of the modality called name, or nil.
func (m *Model) Net(name string) *mvae.Net {
	switch name {
	case dataset.Vision:
		return m.Vision.Net()
	case dataset.Language:
		return m.Language.Net()
	case dataset.Audio:
		return m.Audio.Net()
	}
	return nil
}

// Restore loads every modality's checkpoint, <dir>/<name>.ckpt. It fails,
// naming the file, when one is missing or does not fit. A file larger than
// a checkpoint of this model can be, or one that is not a regular file, is
// refused before it is read, with the limit.
func (m *Model) Restore(dir string) error {
	for _, name := range m.Names() {
		path := filepath.Join(dir, name+".ckpt")
		f, err := boundedread.Open(path, maxCheckpointBytes(m.Net(name)))
		if err != nil {
			return fmt.Errorf("fmnist3: the %s checkpoint: %w", name, err)
		}
		_, err = module.RestoreFrom(m.Modality(name).(module.Saver), f)
		f.Close()
		if err != nil {
			return fmt.Errorf("fmnist3: %s: %w", path, err)
		}
	}
	return nil
}

// maxCheckpointBytes bounds a checkpoint of net: its parameters and Adam's
// two moments, 4 bytes a value, and 1 MiB for the names, shapes and
// metadata (a few KiB, the language vocabulary among them).
func maxCheckpointBytes(net *mvae.Net) int64 {
	var n int64
	for _, p := range net.Params() {
		n += int64(len(p.W))
	}
	return 3*4*n + 1<<20 // the label module.Run writes in front is a few dozen bytes
}

// Save writes every modality's checkpoint into dir (created if needed).
func (m *Model) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, name := range m.Names() {
		s := m.Modality(name).(module.Saver)
		if err := nn.WriteFileAtomic(filepath.Join(dir, name+".ckpt"), s.Save); err != nil {
			return fmt.Errorf("fmnist3: saving %s: %w", name, err)
		}
	}
	return nil
}

// NewModality makes the built-in modality called name (vision, language
// or audio) on the prepared dataset in dir, with the given networks and
// pairing, as `serket module NAME` makes it; tests and references that
// need one modality alone start here.
func NewModality(dir, name string, net mvae.Config, p mvae.Pairing) (module.Modality, error) {
	src, err := mvae.OpenSource(dir, name, p)
	if err != nil {
		return nil, err
	}
	switch name {
	case dataset.Vision:
		return vision.New(vision.Config{Net: net, Source: src})
	case dataset.Language:
		return language.New(language.Config{Net: net, Source: src})
	case dataset.Audio:
		return audio.New(audio.Config{Net: net, Source: src})
	}
	return nil, fmt.Errorf("fmnist3: no built-in modality %q (vision, language, audio)", name)
}
