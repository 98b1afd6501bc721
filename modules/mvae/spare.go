package mvae

import "sync/atomic"

// Spare is the one batch a Loader keeps for reuse (module.Recycler): the
// SDK hands a finished step's batch back with Keep, and the next LoadBatch
// takes it to refill. It is safe for concurrent use, since an evaluation
// may load a batch while a training step runs; a batch taken is the
// taker's alone.
type Spare[T any] struct{ p atomic.Pointer[T] }

// Keep keeps x for the next Take, in place of any batch kept before.
func (s *Spare[T]) Keep(x *T) { s.p.Store(x) }

// Take returns the batch kept, or nil, and keeps none.
func (s *Spare[T]) Take() *T { return s.p.Swap(nil) }

// Resize is buf with length n: buf's own storage if it holds n values (as
// it was: the caller overwrites or clears it), else new zeroed storage.
func Resize[E any](buf []E, n int) []E {
	if cap(buf) >= n {
		return buf[:n]
	}
	return make([]E, n)
}

// ClearAbsent zeroes the rows, width values each, of x whose item is not
// present: an absent item's placeholder row is zero in a reused batch as
// in a new one.
func ClearAbsent(x []float32, present []bool, width int) {
	for i, p := range present {
		if !p {
			clear(x[i*width : (i+1)*width])
		}
	}
}
