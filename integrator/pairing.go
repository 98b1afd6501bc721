package integrator

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Pairing is how a run treats data of which only some items have every
// modality (serket train --paired-fraction): which items are paired, how
// batches mix them with the rest, and what a term scores on an item its
// subset did not see. The zero value is plain training: batches drawn
// uniformly, every term scoring every row.
type Pairing struct {
	// Paired reports whether a training item has every modality. It is
	// the seeded mask the modules draw their presence from
	// (dataset.Present), so the integrator knows which items are paired
	// without seeing any module's data. nil: not known (Share is then
	// refused).
	Paired func(id uint64) bool
	// Share is the least share of every batch drawn from the paired
	// items, in [0, 1): round(Share·Batch) of them, at least one, cycling
	// through permutations of the paired items, the rest of the batch
	// through permutations of the others. An epoch keeps its number of
	// steps (its items ÷ Batch), so the budget is the same as without
	// it. When the paired items are already at least Share of all items,
	// a uniform draw gives batches that share on average, and they are
	// drawn uniformly, as with 0.
	Share float64
	// SeenOnly weighs 0 each row of a term that none of its subset's
	// experts saw. Such a row's latent is a draw from the prior alone,
	// and scoring a module's own data under it teaches its decoder the
	// data's mean rather than any tie between modalities; MVAE trains an
	// item only on the modalities it has. Modules are sent the weights,
	// so they must honour row weights (bus.TrainsRowWeights).
	SeenOnly bool
}

func (p Pairing) check() error {
	if !(p.Share >= 0 && p.Share < 1) {
		return fmt.Errorf("integrator: paired share %v: want a share in [0, 1)", p.Share)
	}
	if p.Share > 0 && p.Paired == nil {
		return fmt.Errorf("integrator: paired share %v without knowing which items are paired", p.Share)
	}
	return nil
}

// fingerprint is what p adds to a run's fingerprint: nothing when it
// changes nothing, so that checkpoints of plain runs stay as they were.
func (p Pairing) fingerprint() string {
	var fp string
	if p.Share > 0 {
		fp += fmt.Sprintf(" paired_share=%g", p.Share)
	}
	if p.SeenOnly {
		fp += " seen_only"
	}
	return fp
}

// epochOrder returns the items of an epoch in the order its steps take
// them, in dst's storage: a permutation of the run's items seeded by the
// run's seed and the epoch, or, with a paired share above the paired
// items' own (and both paired and unpaired items), batches that each take
// their share from the paired items and the rest from the others.
func (c *TrainConfig) epochOrder(dst []uint64, epoch int) []uint64 {
	dst = dst[:0]
	rng := rand.New(rand.NewPCG(c.Seed, uint64(epoch)))
	var paired, other []uint64
	if c.Pairing.Share > 0 {
		for _, id := range c.IDs {
			if c.Pairing.Paired(id) {
				paired = append(paired, id)
			} else {
				other = append(other, id)
			}
		}
	}
	if len(paired) == 0 || len(other) == 0 || float64(len(paired)) >= c.Pairing.Share*float64(len(c.IDs)) {
		for _, p := range rng.Perm(len(c.IDs)) {
			dst = append(dst, c.IDs[p])
		}
		return dst
	}
	perBatch := min(max(int(math.Round(c.Pairing.Share*float64(c.Batch))), 1), c.Batch-1)
	fromPaired, fromOther := cycle{ids: paired, rng: rng}, cycle{ids: other, rng: rng}
	for i := range c.IDs {
		if i%c.Batch < perBatch {
			dst = append(dst, fromPaired.next())
		} else {
			dst = append(dst, fromOther.next())
		}
	}
	return dst
}

// cycle hands out ids in permutations drawn one after another, each
// once per permutation.
type cycle struct {
	ids  []uint64
	rng  *rand.Rand
	perm []int
	at   int
}

func (c *cycle) next() uint64 {
	if c.at == len(c.perm) {
		c.perm, c.at = c.rng.Perm(len(c.ids)), 0
	}
	c.at++
	return c.ids[c.perm[c.at-1]]
}
