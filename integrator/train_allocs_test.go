package integrator_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/serket-go/serket/integrator"
)

// TestTrainStepAllocatesNothingOfItsOwn runs the whole training pipeline in
// this process (the integrator, three toy modules, the NATS server) with
// every allocation profiled, and requires that in the steady state no
// allocation happens on serket's per-step path: under the integrator's
// runStep or a module's handling of a training message, and not inside
// the NATS client or server (nats.go gives every message received a Msg
// and a copy of its payload; the in-process server is a separate process
// in a deployment) or inside the modality (the toy's batches are its own).
// On failure it lists every such allocation site with its stack.
func TestTrainStepAllocatesNothingOfItsOwn(t *testing.T) {
	if testing.Short() {
		t.Skip("profiles every allocation of a training run")
	}
	profileEveryAllocation(t)

	p := toyPipeline(t, 0, "a", "b", "c")
	const from, to = 10, 40 // steps: the steady state is measured between them
	var before, after map[[32]uintptr]int64
	_, err := p.ig.Train(context.Background(), integrator.TrainConfig{
		Modules: []string{"a", "b", "c"}, IDs: ids(3000), Epochs: 1, Batch: 60, Subsets: 1, Deadline: 20 * time.Second,
		OnStep: func(s integrator.StepStats) {
			switch s.Step {
			case from:
				before = allocsByStack()
			case to:
				after = allocsByStack()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sites, total := ourAllocs(before, after, stepPath)
	steps := int64(to - from)
	// Fewer than one per step overall: a one-off growth of some buffer
	// passes, anything that allocates every step (in any module) fails.
	var b strings.Builder
	for _, s := range sites[:min(len(sites), 12)] {
		fmt.Fprintf(&b, "\n%d allocations (%.1f per step) at\n%s", s.n, float64(s.n)/float64(steps), s.stack)
	}
	if total >= steps {
		t.Errorf("%d allocations on serket's per-step path over %d steps, want fewer than one per step:%s", total, steps, b.String())
	} else {
		t.Logf("%d allocations on serket's per-step path over %d steps:%s", total, steps, b.String())
	}
}

// allocSite is a stack that allocated, and how many times.
type allocSite struct {
	n     int64
	stack string
}

// profileEveryAllocation records every allocation in the memory profile
// until t ends.
func profileEveryAllocation(t *testing.T) {
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	t.Cleanup(func() { runtime.MemProfileRate = old })
}

// ourAllocs are the allocations of serket's own on path (see onPath)
// between two profiles, most first, and their total.
func ourAllocs(before, after map[[32]uintptr]int64, path []string) ([]allocSite, int64) {
	var sites []allocSite
	var total int64
	for stk, n := range after {
		n -= before[stk]
		if n <= 0 {
			continue
		}
		if s, ours := onPath(stk, path); ours {
			sites = append(sites, allocSite{n, s})
			total += n
		}
	}
	sort.Slice(sites, func(i, j int) bool { return sites[i].n > sites[j].n })
	return sites, total
}

// allocsByStack is the heap profile's allocation count per stack, as of
// now (the profile is published by garbage collections).
func allocsByStack() map[[32]uintptr]int64 {
	runtime.GC()
	runtime.GC()
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+50)
		var ok bool
		if n, ok = runtime.MemProfile(recs, true); ok {
			break
		}
	}
	out := map[[32]uintptr]int64{}
	for _, r := range recs[:n] {
		out[r.Stack0] += r.AllocObjects
	}
	return out
}

// stepPath marks the functions of a training step: the integrator's and a
// module's.
var stepPath = []string{"integrator.(*Integrator).runStep", "module.(*runner).handleTrain"}

// onPath reports whether an allocation with this stack is serket's own on
// the path of one of the functions path names, and the stack as text.
// Walking out from the allocation, the first frame of serket or of NATS
// decides: NATS's (the client's or the server's) and the toy modality's
// are theirs, serket's (msgpack and the runtime called from it included)
// are ours if a function of path is on the stack.
func onPath(stk [32]uintptr, path []string) (string, bool) {
	pcs := stk[:]
	if i := slices.Index(pcs, 0); i >= 0 {
		pcs = pcs[:i]
	}
	frames := runtime.CallersFrames(pcs)
	var (
		text    strings.Builder
		owner   string
		perStep bool
	)
	for {
		f, more := frames.Next()
		fmt.Fprintf(&text, "\t%s\n", f.Function)
		switch fn := f.Function; {
		case owner != "":
		case strings.HasPrefix(fn, "github.com/nats-io/"):
			owner = "nats"
		case strings.HasPrefix(fn, "github.com/serket-go/serket/modules/"):
			owner = "modality"
		case strings.HasPrefix(fn, "github.com/serket-go/serket/"):
			owner = "serket"
		}
		for _, fn := range path {
			perStep = perStep || strings.Contains(f.Function, fn)
		}
		if !more {
			break
		}
	}
	return text.String(), owner == "serket" && perStep
}
