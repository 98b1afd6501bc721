package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/internal/lograte"
)

// HubConfig configures a Hub.
type HubConfig struct {
	// NC is the connection the Hub listens and asks on; the Hub does not
	// own it. Under --secure it should sign in with the admin key.
	NC       *nats.Conn
	Pipeline string // "" is the default pipeline
	// Latent is the pipeline's latent size D: beliefs and posteriors of
	// another size are refused. 0 takes whatever size comes first.
	Latent int
	// Expect lists the processes the pipeline should have (from its file),
	// so that the graph shows them before they first answer.
	Expect []Process
	// Poll is how often discovery is asked while a page is open (default
	// 1 s); Window how long each ask waits for answers (default 300 ms).
	Poll, Window time.Duration
	Logger       *slog.Logger
}

// Process is one process a pipeline runs: its name ("integrator" for the
// integrator) and role: RoleModule, RolePrior or RoleIntegrator.
type Process struct{ Name, Role string }

// The roles of the graph's nodes.
const (
	RoleModule     = "module"
	RolePrior      = bus.RolePrior
	RoleIntegrator = "integrator"
)

// Hub follows one pipeline on the bus and fans what it learns out to the
// pages connected to it. It is safe for concurrent use.
type Hub struct {
	cfg  HubConfig
	subj bus.Subjects
	c    *client.Client
	log  *slog.Logger
	warn *lograte.Limiter

	mu      sync.Mutex
	pages   map[*page]struct{}
	nodes   *nodeBook
	train   *trainBook
	beliefs *beliefBook
	latent  *latentBook
	refused map[string]uint64 // by what was refused: "belief", "said", …
	lastErr string

	subs    []*nats.Subscription // always on
	watch   *watcher             // while a page is open
	wake    chan struct{}
	stop    context.CancelFunc
	stopped chan struct{}
}

// NewHub subscribes to the pipeline's progress, beliefs and renderings and
// starts following it until ctx is done or Close.
func NewHub(ctx context.Context, cfg HubConfig) (*Hub, error) {
	if cfg.NC == nil {
		return nil, errors.New("web: a Hub needs a NATS connection")
	}
	subj, err := bus.NewSubjects(cfg.Pipeline)
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	c, err := client.New(cfg.NC, cfg.Pipeline, "web")
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Window <= 0 {
		cfg.Window = 300 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Pipeline == "" {
		cfg.Pipeline = bus.DefaultPipeline
	}
	h := &Hub{
		cfg: cfg, subj: subj, c: c, log: cfg.Logger, warn: lograte.New(10 * time.Second),
		pages: map[*page]struct{}{}, nodes: newNodeBook(cfg.Pipeline, cfg.Expect), train: newTrainBook(),
		beliefs: newBeliefBook(), latent: newLatentBook(cfg.Latent), refused: map[string]uint64{},
		wake: make(chan struct{}, 1), stopped: make(chan struct{}),
	}
	for subject, handle := range map[string]nats.MsgHandler{
		subj.TrainProgress(): h.onProgress,
		subj.Belief():        h.onBelief,
		subj.Said("*"):       h.onSaid,
	} {
		sub, err := cfg.NC.Subscribe(subject, handle)
		if err != nil {
			h.unsubscribe()
			return nil, fmt.Errorf("web: subscribe to %s: %w", subject, err)
		}
		h.subs = append(h.subs, sub)
	}
	if err := cfg.NC.Flush(); err != nil {
		h.unsubscribe()
		return nil, fmt.Errorf("web: %w", err)
	}
	ctx, h.stop = context.WithCancel(ctx)
	go h.loop(ctx)
	return h, nil
}

// Close stops the Hub: its subscriptions, its polling, and every page's
// event stream.
func (h *Hub) Close() {
	h.stop()
	<-h.stopped
}

func (h *Hub) unsubscribe() {
	for _, s := range h.subs {
		s.Unsubscribe()
	}
	h.subs = nil
}

// Pipeline is the name of the pipeline the Hub follows.
func (h *Hub) Pipeline() string { return h.cfg.Pipeline }

// Infer asks the pipeline for an inference, as `serket infer` does.
func (h *Hub) Infer(ctx context.Context, req *bus.InferRequest) (*bus.InferReply, error) {
	return h.c.Infer(ctx, req)
}

// ProcessEvent tells the Hub what the process supervisor saw of a process
// (`serket up` knows at once when one exits): down after it exited, and
// starting once it was started again, until it answers discovery.
func (h *Hub) ProcessEvent(name string, up bool) {
	h.mu.Lock()
	h.nodes.event(name, up, time.Now())
	h.mu.Unlock()
	h.poke()
}

// Refused counts what the Hub refused from the bus, by kind ("progress",
// "belief", "said", "posterior").
func (h *Hub) Refused() map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.refused)
}

// Pages is how many pages are connected.
func (h *Hub) Pages() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.pages)
}

// refuse counts a message the Hub would not take and logs it, at most
// once per 10 s per kind, telling the pages as often; the caller holds no
// lock.
func (h *Hub) refuse(kind, subject string, err error) {
	h.mu.Lock()
	h.refused[kind]++
	n := h.refused[kind]
	h.mu.Unlock()
	if h.warn.Warn(h.log, kind, "web: refused a message", "kind", kind, "subject", subject, "err", err, "refused", n) {
		h.mu.Lock()
		h.lastErr = fmt.Sprintf("refused a %s on %s (%d so far): %v", kind, subject, n, err)
		h.mu.Unlock()
	}
}

// senderOf is the module a subject ending in ".<module>" is of.
func senderOf(subject string) string {
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

// poke makes the loop send what changed now rather than at its next tick.
func (h *Hub) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// tick is how often the loop sends pages what changed; each kind of event
// has its own, slower, limit on top.
const tick = 100 * time.Millisecond

// loop sends every page what changed, rate-limited per kind of event.
func (h *Hub) loop(ctx context.Context) {
	defer close(h.stopped)
	defer h.unsubscribe()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			h.mu.Lock()
			for p := range h.pages {
				h.dropLocked(p)
			}
			h.mu.Unlock()
			return
		case <-t.C:
		case <-h.wake:
		}
		h.mu.Lock()
		if len(h.pages) > 0 {
			h.broadcastLocked(h.changedLocked(time.Now()))
		}
		h.mu.Unlock()
	}
}

// changedLocked returns the events of what changed since the pages were
// last sent it, and no more often than each kind's limit.
func (h *Hub) changedLocked(now time.Time) []event {
	var evs []event
	add := func(name string, v any, ok bool) {
		if ok {
			evs = append(evs, encodeEvent(name, v))
		}
	}
	v, ok := h.nodes.changed(now)
	add("services", v, ok)
	tv, ok := h.train.changed(now)
	add("train", tv, ok)
	bv, ok := h.beliefs.changedBelief(now)
	add("belief", bv, ok)
	for _, s := range h.beliefs.changedSaid(now) {
		add("said", s, true)
	}
	lv, ok := h.latent.changed(now)
	add("latent", lv, ok)
	if h.lastErr != "" {
		add("notice", map[string]string{"text": h.lastErr}, true)
		h.lastErr = ""
	}
	return evs
}

// snapshotLocked is everything a page that just connected needs.
func (h *Hub) snapshotLocked(now time.Time) []event {
	evs := []event{encodeEvent("services", h.nodes.view(now))}
	evs = append(evs, encodeEvent("train", h.train.all(true)))
	if b, ok := h.beliefs.belief(); ok {
		evs = append(evs, encodeEvent("belief", b))
	}
	for _, s := range h.beliefs.allSaid() {
		evs = append(evs, encodeEvent("said", s))
	}
	if l, ok := h.latent.last(); ok {
		evs = append(evs, encodeEvent("latent", l))
	}
	return evs
}

// event is one Server-Sent Event, ready to write.
type event []byte

func encodeEvent(name string, v any) event {
	b, err := json.Marshal(v)
	if err != nil {
		// Every value is the Hub's own, of checked finite numbers.
		panic(fmt.Sprintf("web: event %s: %v", name, err))
	}
	return event("event: " + name + "\ndata: " + string(b) + "\n\n")
}
