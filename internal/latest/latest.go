// Package latest is a one-value mailbox where the newest value wins: a
// producer that is faster than its consumer replaces what is waiting instead
// of queueing behind it. Streaming perception uses it so that a slow module
// never backs up a sensor, and a slow integrator never backs up a module.
package latest

import (
	"context"
	"sync"
)

// Slot holds at most one value. The zero value is not usable; use New.
type Slot[T any] struct {
	mu       sync.Mutex
	v        T
	full     bool
	replaced uint64
	ready    chan struct{} // holds a token while the slot is full
}

// New returns an empty slot.
func New[T any]() *Slot[T] { return &Slot[T]{ready: make(chan struct{}, 1)} }

// Put stores v, replacing (and counting) a value nobody took yet. It never
// blocks.
func (s *Slot[T]) Put(v T) (replaced bool) {
	s.mu.Lock()
	replaced = s.full
	if replaced {
		s.replaced++
	}
	s.v, s.full = v, true
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
	return replaced
}

// Take waits for a value and empties the slot; it returns false when ctx
// is done first.
func (s *Slot[T]) Take(ctx context.Context) (T, bool) {
	for {
		s.mu.Lock()
		if s.full {
			v := s.v
			var zero T
			s.v, s.full = zero, false
			s.mu.Unlock()
			return v, true
		}
		s.mu.Unlock()
		select {
		case <-s.ready:
		case <-ctx.Done():
			var zero T
			return zero, false
		}
	}
}

// TryTake empties the slot if it holds a value, without waiting.
func (s *Slot[T]) TryTake() (T, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.v
	if !s.full {
		return v, false
	}
	var zero T
	s.v, s.full = zero, false
	return v, true
}

// Replaced is how many values were replaced before anyone took them.
func (s *Slot[T]) Replaced() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replaced
}
