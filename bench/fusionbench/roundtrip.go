package fusionbench

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bench"
	"github.com/serket-go/serket/bus"
)

// probe is the round trip's module: it publishes posteriors as
// module/stream.go does and reads beliefs on its own connection.
type probe struct {
	name    string
	d       int
	nc      *nats.Conn
	subj    bus.Subjects
	beliefs chan *nats.Msg
	mu, lv  []float32
	last    int64 // the latest posterior's time, so that every one is newer
	// As a module streams: one posterior and one belief value, and one
	// buffer for the encoding, reused message after message.
	post bus.Posterior
	bel  bus.Belief
	wire []byte

	postBytes, beliefBytes int // sizes of the latest posterior and belief
}

// newProbe connects the probe and subscribes it to the beliefs of pipeline.
func newProbe(srv *bus.Server, cs *conns, pipeline string, cfg Config) (*probe, error) {
	subj, err := bus.NewSubjects(pipeline)
	if err != nil {
		return nil, err
	}
	p := &probe{name: "probe", d: cfg.Latent, subj: subj, beliefs: make(chan *nats.Msg, 64),
		mu: make([]float32, cfg.Latent), lv: make([]float32, cfg.Latent)}
	if p.nc, err = cs.open(srv, "serket-probe", cfg.Log); err != nil {
		return nil, err
	}
	// As module/stream.go hears beliefs: a callback hands each message on.
	if _, err := p.nc.Subscribe(subj.Belief(), func(m *nats.Msg) { p.beliefs <- m }); err != nil {
		return nil, fmt.Errorf("fusionbench: subscribe to beliefs: %w", err)
	}
	// The integrator's first belief must find the subscription in place.
	if err := p.nc.Flush(); err != nil {
		return nil, fmt.Errorf("fusionbench: subscribe to beliefs: %w", err)
	}
	return p, nil
}

// size is the size of one marshalled posterior, the raw echo's payload.
func (p *probe) size() (int, error) {
	b, err := bus.Marshal(&bus.Posterior{Header: bus.Header{Sender: p.name}, Time: time.Now().UnixNano(),
		Mu: bus.Matrix(1, p.d, p.mu), LogVar: bus.Matrix(1, p.d, p.lv)})
	return len(b), err
}

// roundTrip publishes posterior seq and waits for the belief that names
// it. It returns how long that took, or whether it was lost or wrong.
func (p *probe) roundTrip(seq int, timeout time.Duration) (time.Duration, bench.Outcome, string) {
	start := time.Now()
	t := max(start.UnixNano(), p.last+1)
	p.last = t
	// A mean that changes with seq, so that a belief of an earlier
	// posterior cannot pass for this one's.
	p.mu[0] = float32(seq%1000) / 100
	post := &p.post
	post.Time = t
	post.Mu.SetMatrix(1, p.d, p.mu)
	post.LogVar.SetMatrix(1, p.d, p.lv)
	post.SetSender(p.name)
	var err error
	p.wire, err = bus.MarshalAppend(p.wire[:0], post, bus.DefaultMaxBytes)
	if err == nil {
		err = p.nc.Publish(p.subj.ObsPost(p.name), p.wire)
	}
	if err != nil {
		return 0, bench.Failed, bench.Kind(err.Error())
	}
	p.postBytes = len(p.wire)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case m := <-p.beliefs:
			bel := &p.bel
			if err := bus.UnmarshalReuse(m.Subject, m.Data, bel, bus.Expect{Latent: p.d}); err != nil {
				return 0, bench.Failed, bench.Kind(err.Error())
			}
			if !names(bel, p.name, t) {
				continue // a belief of an earlier posterior
			}
			took := time.Since(start)
			p.beliefBytes = len(m.Data)
			// The only expert: its precision exp(−lv) = 1 against the prior's 1.
			if want := p.mu[0] / 2; math.Abs(float64(bel.Mu.Data[0]-want)) > 1e-5 {
				return took, bench.Failed, fmt.Sprintf("belief mean %v, want %v", bel.Mu.Data[0], want)
			}
			return took, bench.OK, ""
		case <-deadline.C:
			return 0, bench.Lost, "no belief named the posterior"
		}
	}
}

// names reports whether belief b fused module's posterior of time t.
func names(b *bus.Belief, module string, t int64) bool {
	for _, s := range b.Sources {
		if s.Module == module && b.Time-s.AgeNs == t {
			return true
		}
	}
	return false
}

// party is one kind of round trip: trip seq, timed, with its outcome.
type party func(seq int, timeout time.Duration) (time.Duration, bench.Outcome, string)

// echoParty is the raw round trip: requester asks the echo, timed from
// before the request to after the echo is checked.
func echoParty(e *bench.Echo, requester *nats.Conn) party {
	c := e.Caller(0)
	return func(seq int, timeout time.Duration) (time.Duration, bench.Outcome, string) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		o, kind := c.Call(ctx, requester, seq)
		return time.Since(start), o, kind
	}
}

// roundTrips measures cfg.N fusion round trips and cfg.N raw ones, in
// alternating blocks.
func roundTrips(ctx context.Context, srv *bus.Server, cfg Config) (*RoundTrip, error) {
	const pipeline = "bench-rt"
	_, stopIG, err := startIntegrator(srv, pipeline, cfg.Latent, cfg.Log)
	if err != nil {
		return nil, err
	}
	defer stopIG()
	var cs conns
	defer cs.close()
	p, err := newProbe(srv, &cs, pipeline, cfg)
	if err != nil {
		return nil, err
	}
	size, err := p.size()
	if err != nil {
		return nil, err
	}
	responder, err := cs.open(srv, "echo-responder", cfg.Log)
	if err != nil {
		return nil, err
	}
	e, err := bench.NewEcho([]*nats.Conn{responder}, size)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	requester, err := cs.open(srv, "echo-requester", cfg.Log)
	if err != nil {
		return nil, err
	}
	rt := &RoundTrip{N: cfg.N, Latent: cfg.Latent, Block: cfg.Block}
	if err := interleave(ctx, cfg, rt, p.roundTrip, echoParty(e, requester)); err != nil {
		return nil, err
	}
	rt.PosteriorBytes, rt.BeliefBytes = p.postBytes, p.beliefBytes
	return rt, nil
}

// interleave runs a block of each party not counted, then cfg.N of each in
// alternating blocks of cfg.Block, into rt.
func interleave(ctx context.Context, cfg Config, rt *RoundTrip, serket, raw party) error {
	var firstErr error
	block := func(f party, t *Trips, seq0, n int) {
		for i := range n {
			d, o, why := f(seq0+i, cfg.Timeout)
			if t != nil {
				t.Add(o, why, d)
			}
			if o != bench.OK && firstErr == nil {
				firstErr = fmt.Errorf("%w: round trip %d: %s", ErrFusion, seq0+i, why)
			}
		}
	}
	// A block of each to warm up connections, caches and the scheduler.
	block(serket, nil, 0, min(cfg.Block, cfg.N))
	block(raw, nil, 0, min(cfg.Block, cfg.N))
	firstErr = nil
	for done := 0; done < cfg.N; {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n := min(cfg.Block, cfg.N-done)
		block(serket, &rt.Serket, cfg.Block+done, n)
		block(raw, &rt.Raw, cfg.Block+done, n)
		done += n
	}
	if firstErr != nil {
		rt.FirstError = firstErr.Error()
	}
	rt.Serket.Latency, rt.Raw.Latency = rt.Serket.Tally.Latency(), rt.Raw.Tally.Latency()
	rt.P50Ratio = bench.Ratio(rt.Serket.Latency.P50, rt.Raw.Latency.P50)
	rt.P99Ratio = bench.Ratio(rt.Serket.Latency.P99, rt.Raw.Latency.P99)
	return nil
}
