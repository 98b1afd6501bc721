package module

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/internal/latest"
)

// streamStats count streaming perception, reported with the training
// counters.
type streamStats struct {
	Observations uint64 `json:"observations"` // sensor messages received
	Posteriors   uint64 `json:"posteriors"`   // encoded and published
	Superseded   uint64 `json:"superseded"`   // replaced by a newer one before the module got to them
	Bad          uint64 `json:"bad"`          // that did not parse or encode
	LastBad      string `json:"last_bad,omitempty"`
	LastPostNs   int64  `json:"last_post_ns,omitempty"` // when the latest posterior was published (Unix ns)
	Beliefs      uint64 `json:"beliefs"`                // beliefs rendered and said
}

type sensorMsg struct {
	subject, typ string
	data         []byte
	t            time.Time
}

// streamCall hands sensor messages to the actor one at a time without
// allocating (an actorCall made once): the message and its outcome pass
// through fields the sensor goroutine and the actor take turns on (the
// hand-off orders them).
type streamCall struct {
	actor *actorCall
	p     Parser
	m     sensorMsg
	err   error
	// The storage of streamPosterior, message after message (the actor's).
	raw    [1]bus.Payload
	mu, lv []float32
	post   bus.Posterior
	wire   []byte
}

func newStreamCall(r *runner, p Parser) *streamCall {
	c := &streamCall{p: p}
	c.actor = newActorCall(r, func() { c.err = r.streamPosterior(c) })
	return c
}

// call runs streamPosterior on m on the actor (after a training step, as
// r.do does) and returns its error; false if the module stops first.
func (c *streamCall) call(m sensorMsg) (error, bool) {
	c.m = m
	ok := c.actor.call()
	c.m = sensorMsg{}
	return c.err, ok
}

// startStreaming subscribes to the sensors and, if asked, the beliefs.
func (r *runner) startStreaming(ctx context.Context) (stop func(), err error) {
	var subs []*nats.Subscription
	var wg sync.WaitGroup
	sctx, cancel := context.WithCancel(ctx)
	stop = func() {
		for _, s := range subs {
			s.Unsubscribe()
		}
		cancel()
		wg.Wait()
	}
	if len(r.opts.Sensors) > 0 {
		p, ok := As[Parser](r.m)
		if !ok {
			stop()
			return nil, errors.New("streaming from sensors needs a modality that parses raw input (module.Parser)")
		}
		slot, call := latest.New[sensorMsg](), newStreamCall(r, p)
		for _, subject := range r.opts.Sensors {
			sub, err := r.nc.Subscribe(subject, func(m *nats.Msg) {
				t := time.Now()
				if v := m.Header.Get(bus.HeaderTime); v != "" {
					if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
						t = time.Unix(0, ns)
					}
				}
				typ := m.Header.Get(bus.HeaderContentType)
				if typ == "" {
					typ = r.opts.SensorType
				}
				r.counters(func(c *trainStats) { c.Stream.Observations++ })
				slot.Put(sensorMsg{subject: m.Subject, typ: typ, data: m.Data, t: t})
			})
			if err != nil {
				stop()
				return nil, fmt.Errorf("subscribe to sensor %s: %w", subject, err)
			}
			subs = append(subs, sub)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			logged, lastPost := time.Time{}, time.Time{}
			var paced uint64 // taken, then replaced by a newer one while pacing
			for {
				m, ok := slot.Take(sctx)
				if !ok {
					return
				}
				if r.opts.SensorRate > 0 { // pace: what arrives meanwhile replaces m
					if wait := time.Duration(float64(time.Second)/r.opts.SensorRate) - time.Since(lastPost); wait > 0 {
						select {
						case <-sctx.Done():
							return
						case <-time.After(wait):
						}
						if newer, ok := slot.TryTake(); ok {
							m = newer
							paced++
						}
					}
					lastPost = time.Now()
				}
				err, ok := call.call(m)
				if !ok {
					return
				}
				superseded := slot.Replaced() + paced
				r.counters(func(c *trainStats) {
					c.Stream.Superseded = superseded
					if err != nil {
						c.Stream.Bad++
						c.Stream.LastBad = err.Error()
					}
				})
				if err != nil && time.Since(logged) > 10*time.Second {
					logged = time.Now()
					r.log.Warn("a sensor message was refused (logged once per 10 s; all are counted)", "sensor", m.subject, "err", err)
				}
			}
		}()
	}
	if r.opts.SayBeliefs {
		rd, ok := As[Renderer](r.m)
		if !ok {
			stop()
			return nil, errors.New("saying beliefs needs a modality that renders (module.Renderer)")
		}
		slot := latest.New[*nats.Msg]()
		sub, err := r.nc.Subscribe(r.subj.Belief(), func(m *nats.Msg) { slot.Put(m) })
		if err != nil {
			stop()
			return nil, fmt.Errorf("subscribe to beliefs: %w", err)
		}
		subs = append(subs, sub)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b bus.Belief // belief after belief: say is done with it when r.do returns
			for {
				m, ok := slot.Take(sctx)
				if !ok {
					return
				}
				if err := bus.UnmarshalReuse(m.Subject, m.Data, &b, bus.Expect{Latent: r.spec.Latent}); err != nil {
					r.reject(err)
					continue
				}
				if !r.do(func() { r.say(rd, &b) }) {
					return
				}
			}
		}()
	}
	return stop, nil
}

// streamPosterior parses and encodes the sensor message of c and publishes
// its timestamped posterior, in c's storage (on the actor).
func (r *runner) streamPosterior(c *streamCall) error {
	d, m := r.spec.Latent, &c.m
	c.mu, c.lv = grow(c.mu, d), grow(c.lv, d)
	err := r.safely("Parse/Encode", func() error {
		c.raw[0] = bus.Payload{Type: m.typ, Data: m.data}
		x, err := c.p.Parse(c.raw[:])
		c.raw[0] = bus.Payload{}
		if err != nil {
			return err
		}
		return r.encodeShared(x, c.mu, c.lv)
	})
	if err != nil {
		return fmt.Errorf("sensor %s: %w", m.subject, err)
	}
	post := &c.post
	post.Time = m.t.UnixNano()
	post.Mu.SetMatrix(1, d, c.mu)
	post.LogVar.SetMatrix(1, d, c.lv)
	post.SetSender(r.spec.Name)
	c.wire, err = bus.MarshalAppend(c.wire[:0], post, bus.PayloadLimit(r.nc))
	if err == nil {
		err = r.nc.Publish(r.subj.ObsPost(r.spec.Name), c.wire) // Publish copies: the buffer serves the next one
	}
	if err != nil {
		return fmt.Errorf("publishing the posterior of sensor %s: %w", m.subject, err)
	}
	now := time.Now().UnixNano()
	r.counters(func(c *trainStats) { c.Stream.Posteriors++; c.Stream.LastPostNs = now })
	return nil
}

// say renders a belief's mean and publishes the rendering.
func (r *runner) say(rd Renderer, b *bus.Belief) {
	var outs []bus.Payload
	err := r.safely("Render", func() error {
		var err error
		z, err := r.whole(b.Mu.Data, 1)
		if err != nil {
			return err
		}
		outs, err = rd.Render(z, 1)
		return err
	})
	if err != nil {
		r.log.Warn("cannot render a belief", "seq", b.Seq, "err", err)
		return
	}
	rep := &bus.DecodeReply{Outputs: outs}
	rep.SetSender(r.spec.Name)
	data, err := bus.MarshalLimit(rep, bus.PayloadLimit(r.nc))
	if err == nil {
		m := nats.NewMsg(r.subj.Said(r.spec.Name))
		m.Data = data
		m.Header.Set(bus.HeaderTime, strconv.FormatInt(b.Time, 10)) // the belief's time
		m.Header.Set(bus.HeaderSeq, strconv.FormatUint(b.Seq, 10))
		err = r.nc.PublishMsg(m)
	}
	if err != nil {
		r.log.Warn("cannot publish what a belief says", "err", err)
		return
	}
	r.counters(func(c *trainStats) { c.Stream.Beliefs++ })
	for _, o := range outs {
		switch {
		case len(o.Type) < 5 || o.Type[:5] != "text/":
		case b.Prior != "" && b.Concept >= 0:
			// What a robot says it sees: the category its prior module
			// places the belief in, and this module's word for it.
			r.log.Info("belief", "seq", b.Seq, "concept", b.Concept, "of", b.Prior, "says", string(o.Data), "from", sourcesOf(b))
		default:
			r.log.Info("belief", "seq", b.Seq, "says", string(o.Data), "from", sourcesOf(b))
		}
	}
}

func sourcesOf(b *bus.Belief) []string {
	var out []string
	for _, s := range b.Sources {
		out = append(out, fmt.Sprintf("%s (%v old)", s.Module, time.Duration(s.AgeNs).Round(time.Millisecond)))
	}
	return out
}
