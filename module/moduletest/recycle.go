package moduletest

import (
	"slices"
	"testing"

	"github.com/serket-go/serket/module"
)

// testRecycler: a batch handed back (module.Recycler) and refilled by
// LoadBatch must encode as a new batch of the same ids does, whether it
// held more rows or fewer before, with its absent items' placeholders
// reset; and a LoadBatch after the refill must not hand out the same
// storage again. The configured ids, in order and reversed, move absent
// items to rows present ones held.
func (s *suite) testRecycler(t *testing.T) {
	m := s.fresh(t)
	l, rc := m.(module.Loader), m.(module.Recycler)
	ids := s.cfg.IDs
	back := slices.Clone(ids)
	slices.Reverse(back)
	one := ids[:1]
	type loaded struct {
		x       module.Batch
		present []bool
	}
	load := func(ids []uint64) loaded {
		t.Helper()
		x, present, err := l.LoadBatch(ids)
		if err != nil {
			t.Fatalf("LoadBatch(%v): %v", ids, err)
		}
		return loaded{x, present}
	}
	want := map[string][]float32{}
	check := func(what string, ids []uint64, got loaded) {
		t.Helper()
		mu, _ := s.encode(t, m, got.x)
		fresh := load(ids) // nothing is kept: new storage
		if want[what] == nil {
			want[what], _ = s.encode(t, m, fresh.x)
		}
		if !slices.Equal(mu, want[what]) || !slices.Equal(got.present, fresh.present) {
			t.Fatalf("a recycled batch refilled with %s (%v) encodes otherwise than a new one: LoadBatch left some of its old contents", what, ids)
		}
	}
	a := load(ids)
	rc.Recycle(a.x)
	b := load(back) // a's storage, refilled in the other order
	c := load(ids)  // nothing is kept: must not be b's storage
	check("the ids reversed", back, b)
	check("the ids", ids, c)
	rc.Recycle(b.x)
	d := load(one) // fewer rows
	check("one id", one, d)
	rc.Recycle(d.x)
	check("the ids", ids, load(ids)) // more rows than it held last
}
