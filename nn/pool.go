package nn

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// The pool shares work split into independent chunks between the calling
// goroutine and GOMAXPROCS−1 long-lived workers, without allocating: the
// matrix products of Gonum and Adam's update use it. It runs one job at a
// time; a caller that finds it busy does its work alone rather than wait.

// chunked is work split into chunks 0…n−1 that may run concurrently, on any
// goroutine, in any order.
type chunked interface {
	runChunk(i int)
}

var pool struct {
	mu      sync.Mutex
	workers int           // started so far; grows with GOMAXPROCS, never shrinks
	wake    chan struct{} // one token per helper wanted
	job     struct {
		work    chunked
		n       int64
		next    atomic.Int64 // next chunk to claim
		pending atomic.Int32 // helpers still running
	}
}

// poolAcquire reserves the pool, reporting false if it is busy. On true the
// caller may call poolRun and must then call poolRelease.
func poolAcquire() bool { return pool.mu.TryLock() }

// poolRelease frees the pool reserved by poolAcquire.
func poolRelease() { pool.mu.Unlock() }

// poolRun runs w's n chunks on the reserved pool. w should
// point to memory that outlives the call (a heap object), so that the
// conversion to chunked does not allocate.
func poolRun(w chunked, n int) {
	j := &pool.job
	j.work, j.n = w, int64(n)
	j.next.Store(0)
	helpers := min(poolHelpers(), n-1)
	j.pending.Store(int32(helpers))
	for range helpers {
		pool.wake <- struct{}{}
	}
	runChunks()
	// The helpers are at most one chunk from done. Spinning rather than
	// blocking keeps the wait free of runtime allocations: a blocked
	// goroutine needs a sudog, which the runtime allocates whenever its
	// per-P cache runs dry.
	for j.pending.Load() > 0 {
		runtime.Gosched()
	}
	j.work = nil
}

// runChunks claims and runs chunks of the current job until none are left.
func runChunks() {
	j := &pool.job
	for {
		i := j.next.Add(1) - 1
		if i >= j.n {
			return
		}
		j.work.runChunk(int(i))
	}
}

// poolHelpers makes sure GOMAXPROCS−1 workers exist and returns how many
// may help now. Called with pool.mu held.
func poolHelpers() int {
	want := runtime.GOMAXPROCS(0) - 1
	if pool.wake == nil {
		pool.wake = make(chan struct{}, 64)
	}
	for ; pool.workers < want && pool.workers < cap(pool.wake); pool.workers++ {
		go func() {
			for range pool.wake {
				runChunks()
				pool.job.pending.Add(-1)
			}
		}()
	}
	return min(want, pool.workers)
}

var (
	_ chunked = (*gemmJob)(nil)
	_ chunked = (*Adam)(nil)
)
