package dataset

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/serket-go/serket/internal/atomicfile"
	"github.com/serket-go/serket/internal/boundedread"
)

// ManifestVersion is the version of the prepared-dataset layout this build
// writes and reads.
const ManifestVersion = 1

// Item is one sample of the dataset as the manifest records it.
type Item struct {
	ID    uint64 `json:"id"`
	Split string `json:"split"` // Train or Test
	Class uint8  `json:"class"` // index into ClassNames
}

// Manifest lists a prepared dataset's items with their split and class. It
// is for evaluation (and the integrator's choice of batches) only: a module
// never reads it, so no module learns the labels.
type Manifest struct {
	Version int    `json:"version"`
	Seed    uint64 `json:"seed"`
	// Config is a hash of everything that determines the data: the
	// Fashion-MNIST files, seed, limit, audio pool sizes and feature
	// configuration, and the formats. Equal hashes mean equal shards.
	Config     string         `json:"config"`
	Limit      int            `json:"limit,omitempty"`
	AudioTrain int            `json:"audio_train"` // pool utterances per class
	AudioTest  int            `json:"audio_test"`
	Counts     map[string]int `json:"counts"` // items per split
	Created    time.Time      `json:"created"`
	Items      []Item         `json:"items"` // sorted by ID
}

// InSplit returns the items of one split, in id order.
func (m *Manifest) InSplit(split string) []Item {
	var out []Item
	for _, it := range m.Items {
		if it.Split == split {
			out = append(out, it)
		}
	}
	return out
}

// ErrNotPrepared is wrapped by the errors of [ReadManifest] and [ReadShard]
// when the dataset has not been prepared in that directory.
var ErrNotPrepared = errors.New("dataset not prepared")

// prepareHint tells the user how to (re)build the dataset in dir.
func prepareHint(dir string) string {
	if filepath.Clean(dir) == filepath.Clean(DefaultDir()) {
		return "run `serket data prepare`"
	}
	return fmt.Sprintf("run `serket data prepare --dir %s`", dir)
}

// MaxManifestBytes bounds a manifest file, which is read whole: the
// manifest of all 70,000 items is 2.7 MB.
const MaxManifestBytes = 64 << 20

// ReadManifest reads and checks dir/manifest.json. A missing file gives an
// error wrapping [ErrNotPrepared] that says to run `serket data prepare`.
func ReadManifest(dir string) (*Manifest, error) {
	path := ManifestPath(dir)
	b, err := boundedread.File(path, MaxManifestBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s: %w: %s", dir, ErrNotPrepared, prepareHint(dir))
	case errors.Is(err, boundedread.ErrTooLarge) || errors.Is(err, boundedread.ErrNotRegular):
		return nil, fmt.Errorf("%w: %s", err, prepareHint(dir))
	case err != nil:
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", path, err, prepareHint(dir))
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", path, err, prepareHint(dir))
	}
	return &m, nil
}

func (m *Manifest) check() error {
	if m.Version != ManifestVersion {
		return fmt.Errorf("manifest version %d, this build reads version %d", m.Version, ManifestVersion)
	}
	counts := map[string]int{}
	for i, it := range m.Items {
		if i > 0 && it.ID <= m.Items[i-1].ID {
			return fmt.Errorf("item ids not sorted and unique: %d after %d", it.ID, m.Items[i-1].ID)
		}
		if it.Split != Split(it.ID) {
			return fmt.Errorf("item %d: split %q, but its id is in %s", it.ID, it.Split, Split(it.ID))
		}
		if it.Class >= NumClasses {
			return fmt.Errorf("item %d: class %d is not a class", it.ID, it.Class)
		}
		counts[it.Split]++
	}
	for _, split := range []string{Train, Test} {
		if counts[split] != m.Counts[split] {
			return fmt.Errorf("counts say %d %s items, the list has %d", m.Counts[split], split, counts[split])
		}
	}
	return nil
}

// writeManifest writes m to dir/manifest.json atomically.
func writeManifest(dir string, m *Manifest) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return atomicfile.Write(ManifestPath(dir), func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}
