package eval

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/internal/boundedread"
)

// Labels are what evaluation knows and the modules never see: the class of
// each item of the dataset, and its split. A pipeline names the file
// (`labels:` in the pipeline file); a prepared Fashion-MNIST-3 dataset's
// manifest is one (its classes are Fashion-MNIST's), and any JSON file of
// the same shape is another:
//
//	{"classes": ["red", "green"], "items": [{"id": 1, "split": "train", "class": 0}, …]}
type Labels struct {
	Path    string
	Classes []string
	items   []dataset.Item
}

// labelsFile is the JSON of a labels file (a manifest has more fields,
// which are left alone).
type labelsFile struct {
	Classes []string       `json:"classes"`
	Items   []dataset.Item `json:"items"`
}

// ReadLabels reads the labels file at path, or the manifest of the
// prepared dataset when path is its directory.
func ReadLabels(path string) (*Labels, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = dataset.ManifestPath(path)
	}
	b, err := boundedread.File(path, dataset.MaxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("eval: labels: %w", err)
	}
	var f labelsFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("eval: labels %s: %w", path, err)
	}
	if len(f.Classes) == 0 && filepath.Base(path) == filepath.Base(dataset.ManifestPath("")) {
		f.Classes = dataset.ClassNames[:]
	}
	l := &Labels{Path: path, Classes: f.Classes, items: f.Items}
	if err := l.check(); err != nil {
		return nil, fmt.Errorf("eval: labels %s: %w", path, err)
	}
	return l, nil
}

func (l *Labels) check() error {
	if len(l.Classes) < 2 {
		return errors.New("fewer than two classes (give \"classes\": [names])")
	}
	seen := map[uint64]bool{}
	for _, it := range l.items {
		switch {
		case int(it.Class) >= len(l.Classes):
			return fmt.Errorf("item %d has class %d of %d", it.ID, it.Class, len(l.Classes))
		case it.Split != dataset.Train && it.Split != dataset.Test:
			return fmt.Errorf("item %d is in split %q, want %q or %q", it.ID, it.Split, dataset.Train, dataset.Test)
		case seen[it.ID]:
			return fmt.Errorf("item %d is listed twice", it.ID)
		}
		seen[it.ID] = true
	}
	return nil
}

// Split returns the ids and classes of the first n items of split (all of
// them when n ≤ 0), in the file's order.
func (l *Labels) Split(split string, n int) ([]uint64, []int, error) {
	var ids []uint64
	var classes []int
	for _, it := range l.items {
		if it.Split != split {
			continue
		}
		if n > 0 && len(ids) == n {
			break
		}
		ids, classes = append(ids, it.ID), append(classes, int(it.Class))
	}
	if len(ids) == 0 {
		return nil, nil, fmt.Errorf("eval: labels %s: no %s items", l.Path, split)
	}
	return ids, classes, nil
}
