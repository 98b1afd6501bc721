package mvae

import (
	"fmt"
	"path/filepath"

	"github.com/serket-go/serket/dataset"
)

// Pairing is the partial-pairing setting of a training run: the fraction of
// train items that keep every modality (the rest keep one each), the seed of
// the mask, and the modalities it is drawn over. The zero value means fully
// paired.
type Pairing struct {
	Fraction   float64
	Seed       uint64
	Modalities []string
}

// Source is a modality's own shard and its pairing: all the data a
// module may read.
type Source struct {
	Modality string
	Shard    *dataset.Shard
	Pairing  Pairing
}

// OpenSource reads the modality's shard from a prepared dataset directory.
func OpenSource(dir, modality string, p Pairing) (*Source, error) {
	s, err := dataset.ReadShard(filepath.Join(dir, modality+".shard"), modality)
	if err != nil {
		return nil, err
	}
	if p.Fraction == 0 && len(p.Modalities) == 0 {
		p.Fraction = 1
	}
	if len(p.Modalities) == 0 {
		p.Modalities = dataset.Modalities()
	}
	return &Source{Modality: modality, Shard: s, Pairing: p}, nil
}

// Keeps reports whether the pairing mask keeps modality's observation of
// item id: always when Fraction is 1 or more.
func (p Pairing) Keeps(id uint64, modality string) bool {
	return p.Fraction >= 1 || dataset.Present(id, dataset.Split(id), modality, p.Modalities, p.Fraction, p.Seed)
}

// Lookup calls each with the record of every id this modality has and
// returns which ids it has: an id missing from the shard is an error, an id
// the pairing mask withholds is absent (present false, each not called),
// and the first error each returns stops the lookup.
func (s *Source) Lookup(ids []uint64, each func(i int, rec []byte) error) ([]bool, error) {
	if s == nil {
		return nil, fmt.Errorf("no dataset: start the module with --data DIR (after `serket data prepare`)")
	}
	present := make([]bool, len(ids))
	for i, id := range ids {
		rec, ok := s.Shard.Record(id)
		if !ok {
			return nil, fmt.Errorf("%s shard has no item %d", s.Modality, id)
		}
		if !s.Pairing.Keeps(id, s.Modality) {
			continue
		}
		present[i] = true
		if err := each(i, rec); err != nil {
			return nil, err
		}
	}
	return present, nil
}
