package integrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/internal/lograte"
	"github.com/serket-go/serket/poe"
	"github.com/serket-go/serket/procenv"
)

// Version is the serket version the integrator reports in its service INFO.
const Version = "0.1.0"

// Name is the integrator's sender name on the wire and its module-name slot.
const Name = "integrator"

// Config configures the integrator process.
type Config struct {
	Pipeline string         // "" means $SERKET_PIPELINE, then bus.DefaultPipeline
	Latent   int            // D, the pipeline's latent size; modules announcing another are left out
	NATS     bus.ConnConfig // ignored when Conn is set
	Conn     *nats.Conn     // an existing connection (not closed by Run)
	Logger   *slog.Logger

	// Deadline bounds the encoding phase of an inference; a module that has
	// not answered by then is reported missing. Default 2 s.
	Deadline time.Duration
	// DecodeDeadline bounds the decoding phase of an inference of one
	// latent; each further sample adds DecodePerSample, since rendering
	// can cost per sample (speech runs Griffin-Lim). Defaults 2 s and
	// 500 ms. (A request that reaches a module as it dies is lost, and only
	// the deadline ends the wait, so it is kept to what the work needs.)
	DecodeDeadline  time.Duration
	DecodePerSample time.Duration
	// Discovery is how often the integrator asks the bus which modules are
	// live; default 1 s. A module missing from Misses polls in a row
	// (default 3) is dropped.
	Discovery time.Duration
	Misses    int

	// InferWorkers is how many inferences run at once (default 8). An
	// inference mostly waits for modules, so one at a time would leave the
	// modules idle and queue every other client behind it. The infer
	// endpoint decodes a request and hands it to a free worker; when all
	// are busy, requests wait in the subscription.
	InferWorkers int

	// Aggregation fuses an inference's posteriors (default PoE): a
	// pipeline serves with the aggregation its run was trained with.
	// Streaming fusion is a product of experts whatever it is.
	Aggregation aggregate.Aggregation

	// Stream sets streaming fusion of the modules' timestamped posteriors
	// into beliefs (always on; see StreamConfig).
	Stream StreamConfig

	// Ready, if set, is called once the service is registered.
	Ready func(*Integrator)
}

// Integrator is a running integrator. Its methods are safe for concurrent use.
type Integrator struct {
	cfg  Config
	log  *slog.Logger
	subj bus.Subjects
	nc   *nats.Conn

	mu      sync.Mutex
	modules map[string]*member
	prior   string        // the pipeline's prior module, "" for none (discovered)
	polled  chan struct{} // closed and replaced after every discovery poll
	stats   serviceStats
	stream  *streamer

	evalSteps uint64 // evaluation steps run, for their step ids

	sendMu  sync.Mutex
	sendBuf []byte // training messages' encoding, reused message after message

	inferSlots chan struct{}  // one per inference running (InferWorkers)
	inferring  sync.WaitGroup // the inferences running

	limit *lograte.Limiter // rejections: a line per kind per interval
}

// member is a module the integrator has discovered.
type member struct {
	Name       string
	Latent     int
	Likelihood string
	Training   string // what its training step understands (bus.MetaTraining)
	Instances  int
	misses     int
	joined     time.Time
	refused    string // why it is left out, "" if it is in
}

type serviceStats struct {
	Live      []string          `json:"live"`
	Refused   map[string]string `json:"refused,omitempty"`
	Inferred  int               `json:"inferred"`
	Missing   map[string]int    `json:"missing"` // module → inferences it missed
	Rejected  int               `json:"rejected"`
	LastError string            `json:"last_error,omitempty"`
	Stream    *StreamStats      `json:"stream,omitempty"`
}

// Run serves as the pipeline's integrator until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	ig, err := New(cfg)
	if err != nil {
		return err
	}
	return ig.Run(ctx)
}

// New checks cfg and returns an integrator that is not yet running.
func New(cfg Config) (*Integrator, error) {
	if cfg.Pipeline == "" {
		cfg.Pipeline = os.Getenv(procenv.EnvPipeline)
	}
	if cfg.Pipeline == "" {
		cfg.Pipeline = bus.DefaultPipeline
	}
	subj, err := bus.NewSubjects(cfg.Pipeline)
	if err != nil {
		return nil, err
	}
	if cfg.Latent < 1 || cfg.Latent > 4096 {
		return nil, fmt.Errorf("integrator: latent size %d: want 1 to 4096", cfg.Latent)
	}
	if cfg.DecodeDeadline <= 0 {
		cfg.DecodeDeadline = 2 * time.Second
	}
	if cfg.DecodePerSample <= 0 {
		cfg.DecodePerSample = 500 * time.Millisecond
	}
	if cfg.Deadline <= 0 {
		cfg.Deadline = 2 * time.Second
	}
	if cfg.Aggregation == nil {
		cfg.Aggregation = aggregate.PoE()
	}
	if cfg.Discovery <= 0 {
		cfg.Discovery = time.Second
	}
	if cfg.Misses <= 0 {
		cfg.Misses = 3
	}
	if cfg.InferWorkers <= 0 {
		cfg.InferWorkers = 8
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default().With("module", Name)
	}
	ig := &Integrator{
		cfg: cfg, log: log, subj: subj,
		modules: map[string]*member{},
		polled:  make(chan struct{}),
		stats:   serviceStats{Missing: map[string]int{}},
		limit:   lograte.New(10 * time.Second),
	}
	ig.stream = newStreamer(ig, cfg.Stream)
	return ig, nil
}

// Run connects, registers the serket-integrator service and serves until
// ctx is done.
func (ig *Integrator) Run(ctx context.Context) error {
	ig.nc = ig.cfg.Conn
	if ig.nc == nil {
		cc := ig.cfg.NATS
		if cc.Name == "" {
			cc.Name = bus.ServiceName(Name)
		}
		if cc.Logger == nil {
			cc.Logger = ig.log
		}
		nc, err := bus.Connect(cc)
		if err != nil {
			return fmt.Errorf("integrator: %w", err)
		}
		ig.nc = nc
		defer nc.Drain()
	}
	host, _ := os.Hostname()
	svc, err := micro.AddService(ig.nc, micro.Config{
		Name:        bus.ServiceName(Name),
		Version:     Version,
		Description: "serket integrator: product-of-experts fusion and inference",
		QueueGroup:  bus.ServiceName(Name),
		Metadata: map[string]string{
			bus.MetaPipeline: ig.cfg.Pipeline,
			bus.MetaLatent:   strconv.Itoa(ig.cfg.Latent),
			bus.MetaWire:     strconv.Itoa(bus.WireVersion),
			bus.MetaRole:     "integrator",
			bus.MetaPID:      strconv.Itoa(os.Getpid()),
			bus.MetaHost:     host,
		},
		StatsHandler: func(*micro.Endpoint) any { return ig.snapshot() },
	})
	if err != nil {
		return fmt.Errorf("integrator: register service: %w", err)
	}
	ig.inferSlots = make(chan struct{}, ig.cfg.InferWorkers)
	defer ig.inferring.Wait() // after the service stops taking requests
	defer svc.Stop()
	if err := svc.AddEndpoint("infer", micro.HandlerFunc(ig.handleInfer), micro.WithEndpointSubject(ig.subj.Infer())); err != nil {
		return fmt.Errorf("integrator: endpoint infer on %s: %w", ig.subj.Infer(), err)
	}
	stopStream, err := ig.stream.start()
	if err != nil {
		return err
	}
	defer stopStream()
	ig.log.Info("integrator serving", "pipeline", ig.cfg.Pipeline, "latent", ig.cfg.Latent, "infer", ig.subj.Infer(), "beliefs", ig.subj.Belief())
	if ig.cfg.Ready != nil {
		ig.cfg.Ready(ig)
	}
	ig.discover(ctx)
	return nil
}

// Live returns the names of the modules currently in the pipeline, sorted.
func (ig *Integrator) Live() []string {
	ig.mu.Lock()
	defer ig.mu.Unlock()
	return ig.liveLocked()
}

func (ig *Integrator) liveLocked() []string {
	var out []string
	for name, m := range ig.modules {
		if m.refused == "" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// PriorModule is the pipeline's prior module as discovery found it, ""
// for none: inference fuses under its prior.
func (ig *Integrator) PriorModule() string {
	ig.mu.Lock()
	defer ig.mu.Unlock()
	return ig.prior
}

// Polled returns a channel that is closed after the next discovery poll,
// for tests and tools that wait for the pipeline to change.
func (ig *Integrator) Polled() <-chan struct{} {
	ig.mu.Lock()
	defer ig.mu.Unlock()
	return ig.polled
}

// StreamStats returns streaming fusion's counters.
func (ig *Integrator) StreamStats() StreamStats { return ig.stream.snapshot() }

func (ig *Integrator) snapshot() serviceStats {
	st := ig.stream.snapshot()
	ig.mu.Lock()
	defer ig.mu.Unlock()
	s := ig.stats
	s.Stream = &st
	s.Live = ig.liveLocked()
	s.Missing = make(map[string]int, len(ig.stats.Missing))
	for k, v := range ig.stats.Missing {
		s.Missing[k] = v
	}
	for name, m := range ig.modules {
		if m.refused != "" {
			if s.Refused == nil {
				s.Refused = map[string]string{}
			}
			s.Refused[name] = m.refused
		}
	}
	return s
}

// discover polls the bus for the pipeline's modules until ctx is done.
func (ig *Integrator) discover(ctx context.Context) {
	window := min(250*time.Millisecond, ig.cfg.Discovery/2)
	for {
		svcs, err := bus.Discover(ctx, ig.nc, bus.DiscoverConfig{Pipeline: ig.cfg.Pipeline, Window: window})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			ig.log.Warn("discovery failed", "err", err)
		} else {
			ig.update(svcs)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(ig.cfg.Discovery - window):
		}
	}
}

func (ig *Integrator) update(svcs []bus.Service) {
	seen := map[string]*member{}
	prior := ""
	for _, s := range svcs {
		if s.Role() == bus.RolePrior && s.Metadata[bus.MetaLatent] == strconv.Itoa(ig.cfg.Latent) {
			prior = s.Module()
		}
		if s.Role() != "module" || s.Module() == "" {
			continue
		}
		m := seen[s.Module()]
		if m == nil {
			latent, _ := strconv.Atoi(s.Metadata[bus.MetaLatent])
			m = &member{Name: s.Module(), Latent: latent, Likelihood: s.Metadata[bus.MetaLikelihood], Training: s.Metadata[bus.MetaTraining]}
			if latent != ig.cfg.Latent {
				m.refused = fmt.Sprintf("latent size %d, the pipeline's is %d", latent, ig.cfg.Latent)
			}
			seen[m.Name] = m
		}
		m.Instances++
	}
	ig.mu.Lock()
	defer ig.mu.Unlock()
	if prior != ig.prior {
		ig.log.Info("prior module changed: inference fuses under its prior", "peer", prior, "was", ig.prior)
		ig.prior = prior
	}
	for name, m := range seen {
		old := ig.modules[name]
		switch {
		case old == nil && m.refused != "":
			ig.log.Error("module left out of the pipeline", "peer", name, "why", m.refused)
		case old == nil:
			ig.log.Info("module joined", "peer", name, "latent", m.Latent, "likelihood", m.Likelihood, "instances", m.Instances)
		case old.refused != m.refused:
			ig.log.Info("module changed", "peer", name, "refused", m.refused)
		}
		m.joined = time.Now()
		if old != nil {
			m.joined = old.joined
		}
		ig.modules[name] = m
	}
	for name, m := range ig.modules {
		if seen[name] != nil {
			continue
		}
		m.misses++
		if m.misses >= ig.cfg.Misses {
			ig.log.Warn("module left: it stopped answering discovery", "peer", name, "polls", m.misses)
			delete(ig.modules, name)
		}
	}
	close(ig.polled)
	ig.polled = make(chan struct{})
}

// reject counts a refused request and logs it, once per interval for a
// flood.
func (ig *Integrator) reject(err error) {
	ig.mu.Lock()
	ig.stats.Rejected++
	ig.stats.LastError = err.Error()
	ig.mu.Unlock()
	ig.limit.Warn(ig.log, "rejected request", "rejected a request (logged once per 10 s; all are counted)", "err", err)
}

func (ig *Integrator) handleInfer(req micro.Request) {
	var in bus.InferRequest
	if err := bus.UnmarshalFrom(req.Subject(), req.Data(), &in, bus.Expect{}); err != nil {
		ig.reject(err)
		if req.Reply() != "" {
			req.Error("400", err.Error(), nil)
		}
		return
	}
	if req.Reply() == "" {
		return // nobody to answer
	}
	// A free worker answers: the subscription waits only when every one
	// is busy. The worker replies on the connection, not through req,
	// which micro reads as soon as this handler returns.
	ig.inferSlots <- struct{}{}
	ig.inferring.Add(1)
	go func(reply string) {
		defer func() { <-ig.inferSlots; ig.inferring.Done() }()
		ig.answer(reply, &in)
	}(req.Reply())
}

// answer runs one inference and publishes its reply, or an error reply
// with micro's error headers, to reply.
func (ig *Integrator) answer(reply string, in *bus.InferRequest) {
	msg := nats.NewMsg(reply)
	out, err := ig.Infer(context.Background(), in)
	if err == nil {
		out.SetSender(Name)
		msg.Data, err = bus.MarshalLimit(out, bus.PayloadLimit(ig.nc))
		if err != nil {
			msg.Header.Set(micro.ErrorCodeHeader, "500")
		}
	} else {
		msg.Header.Set(micro.ErrorCodeHeader, "400")
	}
	if err != nil {
		ig.reject(err)
		msg.Data = nil
		msg.Header.Set(micro.ErrorHeader, err.Error())
	}
	if err := ig.nc.PublishMsg(msg); err != nil {
		ig.log.Error("cannot reply to inference", "err", err)
	}
}

// Infer runs one inference (DESIGN.md section 5) and returns its reply. An
// error means the request itself is unusable (nothing to fuse is not an
// error: the result is then the prior).
func (ig *Integrator) Infer(ctx context.Context, in *bus.InferRequest) (*bus.InferReply, error) {
	d := ig.cfg.Latent
	out := &bus.InferReply{Missing: map[string]string{}, Outputs: map[string][]bus.Payload{}}
	refused := ig.refusals()

	// The joint posterior of what answered, and the latents to decode:
	// its mean, or n draws.
	experts := ig.encodeAll(ctx, in, refused, out)
	post := ig.posterior(ctx, experts, out.Contributors, in, out)
	n := max(in.Samples, 1)
	z := make([]float32, n*d)
	if in.Samples == 0 {
		copy(z, post.Mean()[:d])
	}
	rng := rand.New(rand.NewPCG(uint64(in.Seed), 0x5e4e7))
	rows := len(post.Mean()) / d // 1, or n under a prior module: a row per draw
	for i := range in.Samples {
		post.Draw(z[i*d:(i+1)*d], i%rows, rng)
	}
	out.Mu, out.LogVar = bus.Matrix(1, d, slices.Clone(post.Mean()[:d])), bus.Matrix(1, d, slices.Clone(post.LogVar()[:d]))
	if len(out.Concept) > n {
		out.Concept = out.Concept[:n]
	}
	out.Z = bus.Matrix(n, d, z)

	ig.decodeAll(ctx, in.Want, refused, n, out)
	ig.countInference(out)
	return out, nil
}

// refusals returns why each module left out of the pipeline is, by name.
func (ig *Integrator) refusals() map[string]string {
	ig.mu.Lock()
	defer ig.mu.Unlock()
	why := map[string]string{}
	for name, m := range ig.modules {
		if m.refused != "" {
			why[name] = m.refused
		}
	}
	return why
}

// encodeAll encodes the observations of in: every observing module at once,
// until the deadline. It returns the experts of the modules that answered
// and adds their names to out.Contributors, both in name order; every other
// observing module goes to out.Missing with the reason.
func (ig *Integrator) encodeAll(ctx context.Context, in *bus.InferRequest, refused map[string]string, out *bus.InferReply) []poe.Expert {
	type encoded struct {
		name       string
		mu, logvar []float32
		err        error
	}
	names := make([]string, 0, len(in.Observations))
	for name := range in.Observations {
		names = append(names, name)
	}
	sort.Strings(names)
	results := make(chan encoded, len(names))
	ectx, cancel := context.WithTimeout(ctx, ig.cfg.Deadline)
	defer cancel()
	pending := 0
	for _, name := range names {
		if why := refused[name]; why != "" {
			out.Missing[name] = why
			continue
		}
		pending++
		go func(name string) {
			var rep bus.EncodeReply
			err := ig.request(ectx, ig.cfg.Deadline, ig.subj.Encode(name), &bus.EncodeRequest{Observations: []bus.Payload{in.Observations[name]}}, &rep, bus.Expect{Latent: ig.cfg.Latent, Batch: 1})
			results <- encoded{name, rep.Mu.Data, rep.LogVar.Data, err}
		}(name)
	}
	got := map[string]poe.Expert{}
	for ; pending > 0; pending-- {
		r := <-results
		if r.err != nil {
			out.Missing[r.name] = r.err.Error()
			continue
		}
		got[r.name] = poe.Expert{Mu: r.mu, LogVar: r.logvar}
	}
	// Experts in name order (names is sorted), so the fusion is deterministic.
	var experts []poe.Expert
	for _, name := range names {
		if e, ok := got[name]; ok {
			out.Contributors = append(out.Contributors, name)
			experts = append(experts, e)
		}
	}
	return experts
}

// decodeAll decodes out.Z (n rows) with every module of want at once, until
// the decode deadline (which grows with n), into out.Outputs; every other
// module of want goes to out.Missing with the reason.
func (ig *Integrator) decodeAll(ctx context.Context, want []string, refused map[string]string, n int, out *bus.InferReply) {
	type decoded struct {
		name string
		outs []bus.Payload
		err  error
	}
	results := make(chan decoded, len(want))
	limit := ig.cfg.DecodeDeadline + time.Duration(max(n-1, 0))*ig.cfg.DecodePerSample
	dctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	pending := 0
	for _, name := range want {
		if why := refused[name]; why != "" {
			out.Missing[name] = why
			continue
		}
		pending++
		go func(name string) {
			var rep bus.DecodeReply
			err := ig.request(dctx, limit, ig.subj.Decode(name), &bus.DecodeRequest{Z: out.Z}, &rep, bus.Expect{Batch: n})
			results <- decoded{name, rep.Outputs, err}
		}(name)
	}
	for ; pending > 0; pending-- {
		r := <-results
		if r.err != nil {
			out.Missing[r.name] = r.err.Error()
			continue
		}
		out.Outputs[r.name] = r.outs
	}
}

// countInference counts an inference, and each module it went without.
func (ig *Integrator) countInference(out *bus.InferReply) {
	ig.mu.Lock()
	ig.stats.Inferred++
	for name := range out.Missing {
		ig.stats.Missing[name]++
	}
	ig.mu.Unlock()
	if len(out.Missing) > 0 {
		ig.log.Info("inference without some modules", "contributors", out.Contributors, "missing", out.Missing)
	}
}

// request sends a request to a module and decodes its reply, turning every
// failure into an error that says what happened to whom.
func (ig *Integrator) request(ctx context.Context, limit time.Duration, subject string, in, out bus.Message, e bus.Expect) error {
	in.(interface{ SetSender(string) }).SetSender(Name)
	b, err := bus.MarshalLimit(in, bus.PayloadLimit(ig.nc))
	if err != nil {
		return err
	}
	msg, err := ig.nc.RequestWithContext(ctx, subject, b)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return errors.New("no live module answers (not running, or not in this pipeline)")
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("no answer within the deadline of %v", limit)
	case err != nil:
		return err
	}
	if desc := msg.Header.Get(micro.ErrorHeader); desc != "" {
		return fmt.Errorf("module error %s: %s", msg.Header.Get(micro.ErrorCodeHeader), desc)
	}
	return bus.UnmarshalFrom(subject, msg.Data, out, e)
}
