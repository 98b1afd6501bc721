package integrator

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/poe"
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
	// posterior, as fast as fusion runs; when no other posterior waits,
	// fused on the goroutine that received it, without a hand-off).
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
	// PlainPrior counts beliefs fused under N(0, I) because the
	// pipeline's prior module gave no usable prior in time.
	PlainPrior uint64 `json:"plain_prior,omitempty"`
	LastError  string `json:"last_error,omitempty"`
}

// observation is a module's latest posterior as fusion uses it: the
// expert's precision T_k = exp(−clamp(l_k)) and T_k·μ_k per dimension, in
// float64 as Fused.Fuse accumulates them. They are worked out once, when the
// posterior arrives, rather than once for every belief it joins: with M
// modules a belief then costs M·D additions instead of M·D exponentials.
type observation struct {
	name     string
	t        int64 // Unix ns
	prec, pm []float64
	// spare is the other pair of buffers: receive fills it outside the
	// lock and swaps it in, so that neither side allocates or waits.
	sparePrec, sparePM []float64
	// post is what receive decodes the module's next posterior into (the
	// subscription's goroutine only): its sender's name is then the one it
	// holds, not a new string.
	post bus.Posterior
}

type streamer struct {
	ig       *Integrator
	cfg      StreamConfig
	prefix   int    // len(ObsPost("")): the module name starts there
	beliefTo string // the belief subject

	mu     sync.Mutex // guards latest, order, stats, logged
	latest map[string]*observation
	order  []*observation // latest's values by name: the order experts are fused in
	stats  StreamStats
	logged map[string]time.Time
	wake   chan struct{}

	// p is what receive decodes a module's first posterior into; receive
	// runs on the subscription's goroutine only.
	p bus.Posterior

	// fuse serialises fusion and publishing, so that beliefs reach the wire
	// in the order of their Seq and the buffers below are reused. Take it
	// before mu.
	fuse       sync.Mutex
	stopped    bool
	seq        uint64
	prec, num  []float64 // the fused precision and Σ T_k·μ_k
	belief     bus.Belief
	mu32, lv32 []float32 // the belief's mean and log-variance
	shape      []int
	sources    []bus.Source
	wire       []byte // the belief's encoding
	// The prior module's request and reply (underPrior), reused.
	priorReq bus.PriorRequest
	priorRep bus.PriorReply
}

func newStreamer(ig *Integrator, cfg StreamConfig) *streamer {
	cfg.defaults()
	d := ig.cfg.Latent
	return &streamer{ig: ig, cfg: cfg, prefix: len(ig.subj.ObsPost("")), beliefTo: ig.subj.Belief(),
		latest: map[string]*observation{}, logged: map[string]time.Time{}, wake: make(chan struct{}, 1),
		stats: StreamStats{Rejected: map[string]uint64{}, OutOfOrder: map[string]uint64{}, Future: map[string]uint64{}, Expired: map[string]uint64{}},
		prec:  make([]float64, d), num: make([]float64, d), mu32: make([]float32, d), lv32: make([]float32, d), shape: []int{1, d}}
}

// start subscribes to the modules' streamed posteriors and publishes
// beliefs until stop is called.
func (s *streamer) start() (stop func(), err error) {
	s.fuse.Lock()
	s.stopped = false
	s.fuse.Unlock()
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
	return func() {
		sub.Unsubscribe()
		// A callback still running must not publish on a connection that
		// is about to close.
		s.fuse.Lock()
		s.stopped = true
		s.fuse.Unlock()
		cancel()
		<-done
	}, nil
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

// receive runs on the subscription's goroutine: it decodes, checks and
// stores. With MinPeriod 0 and no newer posterior queued behind this one it
// then fuses and publishes the belief itself, sparing the round trip a
// hand-off to the loop goroutine (a wake-up that, on a busy machine, waits
// for a thread). When posteriors queue up, fusion is handed to the loop
// instead, so that receiving keeps up with any rate and the latest
// posterior wins.
func (s *streamer) receive(m *nats.Msg) {
	name := m.Subject[s.prefix:]
	p := &s.p
	s.mu.Lock()
	if o := s.latest[name]; o != nil {
		p = &o.post
	}
	s.mu.Unlock()
	// Into the module's last posterior's storage: only its numbers are
	// kept, in prec and pm below.
	if err := bus.UnmarshalReuse(m.Subject, m.Data, p, bus.Expect{Latent: s.ig.cfg.Latent, Batch: 1}); err != nil {
		s.bad(s.stats.Rejected, name, "rejected streamed posterior", err.Error())
		return
	}
	if p.Sender != name {
		s.bad(s.stats.Rejected, name, "rejected streamed posterior", fmt.Sprintf("sender %q publishes on %s's subject", p.Sender, name))
		return
	}
	t := p.Time
	now := s.cfg.Now().UnixNano()
	if ahead := since(now, t); ahead > s.cfg.MaxAhead.Nanoseconds() {
		s.bad(s.stats.Future, name, "dropped a posterior from the future", fmt.Sprintf("timestamp %v ahead of this clock", time.Duration(ahead).Round(time.Millisecond)))
		return
	}
	s.mu.Lock()
	o := s.latest[name]
	if o != nil && t <= o.t {
		prev := o.t
		s.mu.Unlock()
		s.bad(s.stats.OutOfOrder, name, "dropped an out-of-order posterior", fmt.Sprintf("timestamp %v before the latest", time.Duration(since(t, prev)).Round(time.Microsecond)))
		return
	}
	var prec, pm []float64
	if o != nil {
		prec, pm = o.sparePrec, o.sparePM
	}
	s.mu.Unlock()
	if prec == nil { // a module's first posteriors
		prec, pm = make([]float64, len(p.Mu.Data)), make([]float64, len(p.Mu.Data))
	}
	// Only this goroutine touches the spare buffers (fusion reads prec and
	// pm) and only it adds observations, so they are filled without the lock.
	for j, lv := range p.LogVar.Data {
		l, _ := poe.ClampLogVar(float64(lv))
		tk := math.Exp(-l)
		prec[j] = tk
		pm[j] = tk * float64(p.Mu.Data[j])
	}
	s.mu.Lock()
	if o = s.latest[name]; o == nil { // new, or expired meanwhile
		o = s.add(name)
	}
	o.t = t
	o.prec, o.sparePrec = prec, o.prec
	o.pm, o.sparePM = pm, o.pm
	s.stats.Posteriors++
	s.mu.Unlock()
	if s.cfg.MinPeriod == 0 && !queued(m) {
		s.publish()
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// since is now − t in nanoseconds, saturated as time.Time.Sub saturates,
// so that a timestamp from the distant past is old rather than, wrapped
// around, new.
func since(t, now int64) int64 {
	d := now - t
	switch {
	case now > t && d < 0:
		return math.MaxInt64
	case now < t && d > 0:
		return math.MinInt64
	}
	return d
}

// add starts module name's observation, which the caller fills before it
// lets go of s.mu.
func (s *streamer) add(name string) *observation {
	o := &observation{name: strings.Clone(name)}
	s.latest[o.name] = o
	i, _ := slices.BinarySearchFunc(s.order, o.name, func(a *observation, n string) int { return strings.Compare(a.name, n) })
	s.order = slices.Insert(s.order, i, o)
	return o
}

// queued reports whether more messages wait behind m on its subscription.
// nats.go counts the message being delivered as pending until its callback
// returns, so one is m itself; a client that counts otherwise only makes
// this answer false once too often, which costs a belief, not a posterior.
func queued(m *nats.Msg) bool {
	if m.Sub == nil {
		return false
	}
	n, _, err := m.Sub.Pending()
	return err == nil && n > 1
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
// with the N(0, I) prior, as Fused.Fuse does (the same sums in the same
// order, so the same bits), and publishes the belief. In steady state it
// allocates nothing itself (bus's check of the belief still does).
func (s *streamer) publish() {
	s.fuse.Lock()
	defer s.fuse.Unlock()
	if s.stopped {
		return
	}
	now := s.cfg.Now().UnixNano()
	for j := range s.prec {
		s.prec[j], s.num[j] = 1, 0
	}
	s.sources = s.sources[:0]
	s.mu.Lock()
	kept := s.order[:0]
	for _, o := range s.order {
		age := since(o.t, now)
		if age > s.cfg.Slop.Nanoseconds() {
			s.stats.Expired[o.name]++
			delete(s.latest, o.name)
			continue
		}
		kept = append(kept, o)
		for j, tk := range o.prec {
			s.prec[j] += tk
			s.num[j] += o.pm[j]
		}
		s.sources = append(s.sources, bus.Source{Module: o.name, AgeNs: max(age, 0)})
	}
	clear(s.order[len(kept):])
	s.order = kept
	if len(s.sources) == 0 {
		s.mu.Unlock()
		return
	}
	s.stats.Beliefs++
	s.mu.Unlock()
	prior, concept := s.underPrior()
	for j, t := range s.prec {
		s.mu32[j] = float32(s.num[j] / t)
		s.lv32[j] = float32(-math.Log(t))
	}
	s.seq++
	b := &s.belief
	*b = bus.Belief{Seq: s.seq, Time: now, Mu: bus.Tensor{Shape: s.shape, Data: s.mu32}, LogVar: bus.Tensor{Shape: s.shape, Data: s.lv32}, Sources: s.sources,
		Prior: prior, Concept: concept}
	b.SetSender(Name)
	var err error
	// Publish copies the encoding, so one buffer serves every belief.
	s.wire, err = bus.MarshalAppend(s.wire[:0], b, bus.DefaultMaxBytes)
	if err == nil {
		err = s.ig.nc.Publish(s.beliefTo, s.wire)
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
