package latest_test

import (
	"context"
	"sync"
	"testing"

	"github.com/serket-go/serket/internal/latest"
)

func TestLatestWins(t *testing.T) {
	s := latest.New[int]()
	for i := 1; i <= 5; i++ {
		s.Put(i)
	}
	v, ok := s.Take(context.Background())
	if !ok || v != 5 || s.Replaced() != 4 {
		t.Fatalf("took %d (%v) with %d replaced, want 5 and 4", v, ok, s.Replaced())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := s.Take(ctx); ok {
		t.Fatal("Take on an empty slot with a done context returned a value")
	}
}

// A consumer never misses the last value of a fast producer, and never sees
// values out of order.
func TestProducerConsumer(t *testing.T) {
	s := latest.New[int]()
	const n = 100000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= n; i++ {
			s.Put(i)
		}
	}()
	last := 0
	for last != n {
		v, _ := s.Take(context.Background())
		if v <= last {
			t.Fatalf("took %d after %d", v, last)
		}
		last = v
	}
	wg.Wait()
}
