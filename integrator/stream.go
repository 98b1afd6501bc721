package integrator

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
)

// StreamConfig sets streaming fusion (DESIGN.md section 5): modules publish
// timestamped posteriors of what their sensors see on …obs.post.<module>;
// the integrator fuses the latest posterior of each module that is recent
// enough and publishes a Belief on …belief. Latest wins: a new posterior
// replaces a module's previous one, and the fusion runs on whatever is
// latest when it gets to it, so a slow or dead module never blocks the
// others and nothing queues.
type StreamConfig struct {
	// Slop is how old a posterior may be, at fusion time, to join a
	// belief; default 1 s.
	Slop time.Duration
	// MaxAhead is how far in the future a timestamp may be (clock skew
	// between machines) before the posterior is refused; default 1 s.
	MaxAhead time.Duration
	// MinPeriod spaces beliefs at least this far apart (0: one per
	// posterior, as fast as fusion runs).
	MinPeriod time.Duration
	// LogEvery limits the log to one line per sender and kind of bad
	// input per interval; default 10 s (every one is counted).
	LogEvery time.Duration
	// Now is the clock; default time.Now (tests replace it).
	Now func() time.Time
}

func (c *StreamConfig) defaults() {
	if c.Slop <= 0 {
		c.Slop = time.Second
	}
	if c.MaxAhead <= 0 {
		c.MaxAhead = time.Second
	}
	if c.LogEvery <= 0 {
		c.LogEvery = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// StreamStats count streaming fusion's inputs and outputs.
type StreamStats struct {
	Posteriors uint64            `json:"posteriors"`   // accepted
	Beliefs    uint64            `json:"beliefs"`      // published
	Rejected   map[string]uint64 `json:"rejected"`     // per sender (or subject): malformed, wrong shape, NaN
	OutOfOrder map[string]uint64 `json:"out_of_order"` // older than the module's latest: dropped
	Future     map[string]uint64 `json:"future"`       // beyond MaxAhead: dropped
	Expired    map[string]uint64 `json:"expired"`      // older than Slop at fusion time: left out
	LastError  string            `json:"last_error,omitempty"`
}

type observation struct {
	t      time.Time
	mu, lv []float32
}

type streamer struct {
	ig      *Integrator
	cfg     StreamConfig
	mu      sync.Mutex
	latest  map[string]observation
	stats   StreamStats
	logged  map[string]time.Time
	wake    chan struct{}
	seq     uint64
	fused   Fused
	experts []Expert
}

func newStreamer(ig *Integrator, cfg StreamConfig) *streamer {
	cfg.defaults()
	return &streamer{ig: ig, cfg: cfg, latest: map[string]observation{}, logged: map[string]time.Time{}, wake: make(chan struct{}, 1),
		stats: StreamStats{Rejected: map[string]uint64{}, OutOfOrder: map[string]uint64{}, Future: map[string]uint64{}, Expired: map[string]uint64{}}}
}

// start subscribes to the modules' streamed posteriors and publishes
// beliefs until stop is called.
func (s *streamer) start() (stop func(), err error) {
	sub, err := s.ig.nc.Subscribe(s.ig.subj.ObsPost("*"), s.receive)
	if err != nil {
		return nil, fmt.Errorf("integrator: subscribe %s: %w", s.ig.subj.ObsPost("*"), err)
	}
	sub.SetPendingLimits(-1, 256<<20)       // bounded by bytes, not by a count of small messages
	if err := s.ig.nc.Flush(); err != nil { // the server has the subscription before Ready
		sub.Unsubscribe()
		return nil, fmt.Errorf("integrator: subscribe %s: %w", s.ig.subj.ObsPost("*"), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.loop(ctx)
	}()
	return func() { sub.Unsubscribe(); cancel(); <-done }, nil
}

func (s *streamer) loop(ctx context.Context) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		if s.cfg.MinPeriod > 0 {
			if wait := s.cfg.MinPeriod - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
			last = time.Now()
		}
		s.publish()
	}
}

// receive runs on the subscription's goroutine: it only decodes, checks and
// stores, so it keeps up with any rate.
func (s *streamer) receive(m *nats.Msg) {
	var p bus.Posterior
	name := m.Subject[len(s.ig.subj.ObsPost("")):]
	if err := bus.UnmarshalFrom(m.Subject, m.Data, &p, bus.Expect{Latent: s.ig.cfg.Latent, Batch: 1}); err != nil {
		s.bad(s.stats.Rejected, name, "rejected streamed posterior", err.Error())
		return
	}
	if p.Sender != name {
		s.bad(s.stats.Rejected, name, "rejected streamed posterior", fmt.Sprintf("sender %q publishes on %s's subject", p.Sender, name))
		return
	}
	t := time.Unix(0, p.Time)
	now := s.cfg.Now()
	if t.After(now.Add(s.cfg.MaxAhead)) {
		s.bad(s.stats.Future, name, "dropped a posterior from the future", fmt.Sprintf("timestamp %v ahead of this clock", t.Sub(now).Round(time.Millisecond)))
		return
	}
	s.mu.Lock()
	if prev, ok := s.latest[name]; ok && !t.After(prev.t) {
		s.mu.Unlock()
		s.bad(s.stats.OutOfOrder, name, "dropped an out-of-order posterior", fmt.Sprintf("timestamp %v before the latest", prev.t.Sub(t).Round(time.Microsecond)))
		return
	}
	s.latest[name] = observation{t: t, mu: p.Mu.Data, lv: p.LogVar.Data}
	s.stats.Posteriors++
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// bad counts a bad input and logs it at most once per LogEvery per sender
// and kind.
func (s *streamer) bad(counter map[string]uint64, sender, what, why string) {
	s.mu.Lock()
	counter[sender]++
	s.stats.LastError = sender + ": " + why
	key := sender + "\x00" + what
	now := time.Now()
	logIt := now.Sub(s.logged[key]) >= s.cfg.LogEvery
	if logIt {
		s.logged[key] = now
	}
	n := counter[sender]
	s.mu.Unlock()
	if logIt {
		s.ig.log.Warn(what, "peer", sender, "why", why, "count", n)
	}
}

// publish fuses the latest posterior of every module within Slop of now
// and publishes the belief.
func (s *streamer) publish() {
	now := s.cfg.Now()
	s.mu.Lock()
	names := make([]string, 0, len(s.latest))
	for n := range s.latest {
		names = append(names, n)
	}
	slices.Sort(names)
	s.experts = s.experts[:0]
	var sources []bus.Source
	for _, n := range names {
		o := s.latest[n]
		age := now.Sub(o.t)
		if age > s.cfg.Slop {
			s.stats.Expired[n]++
			delete(s.latest, n)
			continue
		}
		s.experts = append(s.experts, Expert{Mu: o.mu, LogVar: o.lv})
		sources = append(sources, bus.Source{Module: n, AgeNs: max(age.Nanoseconds(), 0)})
	}
	if len(sources) == 0 {
		s.mu.Unlock()
		return
	}
	d := s.ig.cfg.Latent
	s.fused.Fuse(s.experts, 1, d)
	s.seq++
	b := &bus.Belief{Seq: s.seq, Time: now.UnixNano(), Mu: bus.Matrix(1, d, slices.Clone(s.fused.Mu)), LogVar: bus.Matrix(1, d, slices.Clone(s.fused.LogVar)), Sources: sources}
	s.stats.Beliefs++
	s.mu.Unlock()
	b.SetSender(Name)
	data, err := bus.Marshal(b)
	if err == nil {
		err = s.ig.nc.Publish(s.ig.subj.Belief(), data)
	}
	if err != nil {
		s.ig.log.Error("cannot publish a belief", "err", err)
	}
}

func (s *streamer) snapshot() StreamStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.stats
	c.Rejected, c.OutOfOrder, c.Future, c.Expired = maps.Clone(c.Rejected), maps.Clone(c.OutOfOrder), maps.Clone(c.Future), maps.Clone(c.Expired)
	return c
}
