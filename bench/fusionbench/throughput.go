package fusionbench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
)

// sliceMax is the longest slice a cell is measured in.
const sliceMax = 500 * time.Millisecond

// Slices splits a cell's measured time into n slices of at most half a
// second each.
func Slices(total time.Duration) (n int, slice time.Duration) {
	n = max(1, int((total+sliceMax-1)/sliceMax))
	return n, total / time.Duration(n)
}

// Warmup is how long a slice runs before it is measured.
func Warmup(slice time.Duration) time.Duration { return min(slice/4, 100*time.Millisecond) }

// table measures every cell of the throughput table for cfg.Duration in
// all, in slices taken round-robin over the cells, so that a change in the
// machine's load falls on every cell alike rather than on whichever ran
// then.
func table(ctx context.Context, srv *bus.Server, cfg Config) ([]Cell, error) {
	var cells []Cell
	for _, m := range cfg.Modules {
		for _, d := range cfg.Latents {
			cells = append(cells, Cell{Modules: m, Latent: d})
		}
	}
	n, slice := Slices(cfg.Duration)
	for range n {
		for i := range cells {
			c := &cells[i]
			s, err := measureSlice(ctx, srv, cfg, c.Modules, c.Latent, slice)
			if err != nil {
				return nil, err
			}
			cfg.Log.Debug("throughput slice", "modules", c.Modules, "latent", c.Latent, "beliefs", s.Beliefs, "posteriors", s.Posteriors, "seconds", s.Seconds)
			c.Seconds += s.Seconds
			c.Beliefs += s.Beliefs
			c.Posteriors += s.Posteriors
			c.Stalls += s.Stalls
			c.Refused += s.Refused
		}
	}
	for i := range cells {
		c := &cells[i]
		c.BeliefsPerSec = float64(c.Beliefs) / c.Seconds
		c.PosteriorsPerSec = float64(c.Posteriors) / c.Seconds
		if c.Beliefs > 0 {
			c.PerBelief = float64(c.Posteriors) / float64(c.Beliefs)
			c.UsPerBelief = 1e6 * c.Seconds / float64(c.Beliefs)
		}
	}
	return cells, nil
}

// loops are the m modules of one slice in their closed loops, and the
// listener that tells each when a belief named its posterior.
type loops struct {
	d       int
	names   []string
	index   map[string]int
	pending []atomic.Int64 // each module's posterior awaiting a belief (0: none)
	acks    []chan struct{}
	subj    bus.Subjects

	badBeliefs atomic.Int64
	stalls     atomic.Int64
	firstErr   atomic.Pointer[error]
}

func newLoops(pipeline string, m, d int) (*loops, error) {
	subj, err := bus.NewSubjects(pipeline)
	if err != nil {
		return nil, err
	}
	l := &loops{d: d, names: make([]string, m), index: make(map[string]int, m), pending: make([]atomic.Int64, m), acks: make([]chan struct{}, m), subj: subj}
	for i := range l.names {
		l.names[i] = fmt.Sprintf("m%02d", i)
		l.index[l.names[i]] = i
		l.acks[i] = make(chan struct{}, 1)
	}
	return l, nil
}

// listen decodes each belief once, on nc, and acknowledges every pending
// posterior it names.
func (l *loops) listen(nc *nats.Conn) error {
	sub, err := nc.Subscribe(l.subj.Belief(), func(msg *nats.Msg) {
		var b bus.Belief
		if bus.UnmarshalFrom(msg.Subject, msg.Data, &b, bus.Expect{Latent: l.d}) != nil {
			l.badBeliefs.Add(1)
			return
		}
		for _, s := range b.Sources {
			i, ok := l.index[s.Module]
			// Once only: later beliefs name the same posterior until the
			// module's next one replaces it.
			if ok && l.pending[i].CompareAndSwap(b.Time-s.AgeNs, 0) {
				select {
				case l.acks[i] <- struct{}{}:
				default: // the module gave up on an earlier one: it is not waiting for this
				}
			}
		}
	})
	if err != nil {
		return fmt.Errorf("fusionbench: subscribe to beliefs: %w", err)
	}
	sub.SetPendingLimits(-1, -1)
	// No posterior goes out before the listener is in place.
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("fusionbench: subscribe to beliefs: %w", err)
	}
	return nil
}

// run is module i's closed loop on nc until ctx is done: publish a
// posterior, wait for a belief to name it (or the timeout: a stall),
// publish the next.
func (l *loops) run(ctx context.Context, i int, nc *nats.Conn, timeout time.Duration) {
	m := len(l.names)
	mu, lv := make([]float32, l.d), make([]float32, l.d)
	for j := range mu {
		mu[j], lv[j] = float32(i)/float32(m), -float32(j%4)
	}
	subject := l.subj.ObsPost(l.names[i])
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var last int64
	for ctx.Err() == nil {
		t := max(time.Now().UnixNano(), last+1)
		last = t
		l.pending[i].Store(t)
		post := &bus.Posterior{Time: t, Mu: bus.Matrix(1, l.d, mu), LogVar: bus.Matrix(1, l.d, lv)}
		post.SetSender(l.names[i])
		b, err := bus.Marshal(post)
		if err == nil {
			err = nc.Publish(subject, b)
		}
		if err != nil {
			l.firstErr.CompareAndSwap(nil, &err)
			return
		}
		timer.Reset(timeout)
		select {
		case <-l.acks[i]:
		case <-timer.C:
			l.stalls.Add(1)
		case <-ctx.Done():
			return
		}
	}
}

// measureSlice runs one slice of a cell: m modules of latent size d in
// closed loops against a fresh integrator, measured for dur after a
// warm-up. It fills in the counts and the seconds.
func measureSlice(ctx context.Context, srv *bus.Server, cfg Config, m, d int, dur time.Duration) (*Cell, error) {
	pipeline := fmt.Sprintf("bench-m%d-d%d", m, d)
	ig, stopIG, err := startIntegrator(srv, pipeline, d, cfg.Log)
	if err != nil {
		return nil, err
	}
	defer stopIG()
	l, err := newLoops(pipeline, m, d)
	if err != nil {
		return nil, err
	}
	var cs conns
	defer cs.close()
	listener, err := cs.open(srv, "belief-listener", cfg.Log)
	if err == nil {
		err = l.listen(listener)
	}
	if err != nil {
		return nil, err
	}
	mods := make([]*nats.Conn, m)
	for i := range mods {
		if mods[i], err = cs.open(srv, "serket-"+l.names[i], cfg.Log); err != nil {
			return nil, err
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	for i := range mods {
		wg.Go(func() { l.run(runCtx, i, mods[i], cfg.Timeout) })
	}
	// The warm-up and the window are measured spans of time: the loops run
	// on their own meanwhile.
	ok := wait(ctx, Warmup(dur))
	s0, t0 := ig.StreamStats(), time.Now()
	l.stalls.Store(0)
	ok = ok && wait(ctx, dur)
	s1, t1 := ig.StreamStats(), time.Now()
	stop()
	wg.Wait()
	if !ok {
		return nil, ctx.Err()
	}
	if p := l.firstErr.Load(); p != nil {
		return nil, fmt.Errorf("%w: a module of the %d×%d cell: %v", ErrFusion, m, d, *p)
	}
	c := &Cell{Modules: m, Latent: d, Seconds: t1.Sub(t0).Seconds(),
		Beliefs: s1.Beliefs - s0.Beliefs, Posteriors: s1.Posteriors - s0.Posteriors, Stalls: int(l.stalls.Load())}
	for _, counts := range []map[string]uint64{s1.Rejected, s1.OutOfOrder, s1.Future, s1.Expired} {
		for _, n := range counts {
			c.Refused += n
		}
	}
	c.Refused += uint64(l.badBeliefs.Load())
	return c, nil
}

// wait lets dur pass, or reports false when ctx is done first.
func wait(ctx context.Context, dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
