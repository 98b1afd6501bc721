package web

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
)

// watcher does what only a page needs, while one is open: it polls
// discovery, listens to streamed posteriors, takes a sample of training
// posteriors and projects the latent.
type watcher struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// The watcher's periods: a sample of training posteriors (one message per
// module: a batch of rows is plenty of points) and the projection.
const (
	samplePeriod  = 3 * time.Second
	projectPeriod = 2 * time.Second
)

func startWatcher(h *Hub) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{cancel: cancel}
	w.wg.Add(3)
	go func() { defer w.wg.Done(); h.pollServices(ctx) }()
	go func() { defer w.wg.Done(); h.samplePosteriors(ctx) }()
	go func() { defer w.wg.Done(); h.project(ctx) }()
	return w
}

func (w *watcher) stop() {
	w.cancel()
	w.wg.Wait()
}

// every calls f now and then every period until ctx is done.
func every(ctx context.Context, period time.Duration, f func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pollServices asks discovery for the pipeline's services and their stats.
func (h *Hub) pollServices(ctx context.Context) {
	every(ctx, h.cfg.Poll, func() {
		began := time.Now()
		svcs, err := h.c.Services(ctx, h.cfg.Window)
		if err != nil {
			if ctx.Err() == nil {
				h.warn.Warn(h.log, "discover", "web: discovery failed", "err", err)
			}
			return
		}
		h.mu.Lock()
		h.nodes.update(svcs, began, time.Now())
		h.mu.Unlock()
		h.poke()
	})
}

// samplePosteriors takes one training posterior of each module every
// samplePeriod (a subscription that ends itself after one message), and
// listens to every streamed posterior, for the projection.
func (h *Hub) samplePosteriors(ctx context.Context) {
	stream, err := h.cfg.NC.Subscribe(h.subj.ObsPost("*"), h.onPosterior)
	if err != nil {
		h.warn.Warn(h.log, "subscribe", "web: cannot listen to streamed posteriors", "err", err)
	} else {
		defer stream.Unsubscribe()
	}
	var round []*nats.Subscription
	defer func() {
		for _, s := range round {
			s.Unsubscribe()
		}
	}()
	every(ctx, samplePeriod, func() {
		for _, s := range round {
			s.Unsubscribe() // one that got its message is gone already
		}
		round = round[:0]
		h.mu.Lock()
		modules := h.nodes.modules()
		h.mu.Unlock()
		for _, m := range modules {
			s, err := h.cfg.NC.Subscribe(h.subj.Post(m), h.onPosterior)
			if err != nil {
				continue
			}
			s.AutoUnsubscribe(1)
			round = append(round, s)
		}
	})
}

// onPosterior keeps a posterior's means for the projection, coloured by
// the module it is of.
func (h *Hub) onPosterior(m *nats.Msg) {
	var p bus.Posterior
	module, ok := h.fromModule("posterior", m, &p, &p.Sender, bus.Expect{Latent: h.latentSize()})
	if !ok {
		return
	}
	h.mu.Lock()
	h.latent.addRows(module, p.Mu, p.Present)
	h.mu.Unlock()
}

// project recomputes the projection of the latest points.
func (h *Hub) project(ctx context.Context) {
	every(ctx, projectPeriod, func() {
		h.mu.Lock()
		pts := h.latent.points()
		h.mu.Unlock()
		v, ok := projectPoints(pts)
		h.mu.Lock()
		h.latent.set(v, ok)
		h.mu.Unlock()
	})
}
