package module

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/internal/lograte"
	"github.com/serket-go/serket/internal/proc"
	"github.com/serket-go/serket/nn"
	"github.com/serket-go/serket/procenv"
)

// Version is the serket version reported in every service's INFO.
const Version = "0.1.0"

// Options configure Run. The zero value connects to $NATS_URL (or the
// default URL) and joins the default pipeline.
type Options struct {
	Pipeline string         // "" means bus.DefaultPipeline or $SERKET_PIPELINE
	NATS     bus.ConnConfig // how to connect; ignored when Conn is set
	Conn     *nats.Conn     // an existing connection to use (not closed by Run)
	Logger   *slog.Logger

	// Train lets the module take part in training runs: it hears the
	// integrator's training steps and learns from them. Without it the
	// module serves inference only: it never subscribes to a training
	// subject, so nothing on the bus can change its weights or its
	// checkpoint file. `serket train` (and `serket up` with a training
	// integrator) start their modules with it ($SERKET_TRAIN=1).
	Train bool

	// Checkpoint is a file for a Saver's parameters: restored at start if it
	// exists. A module that trains writes it only when the integrator of
	// its run asks (so that every module's file of a run is of one step,
	// and a diverged run keeps its last good one), labelled with the run
	// and step (see Label), and reads it again when the integrator rolls
	// the run back. Each save keeps the file it replaces as
	// Checkpoint+".prev", restored instead (and logged) when the newest is
	// damaged (see ErrCorruptCheckpoint). A module that does not train
	// never writes it.
	Checkpoint string

	// StepTimeout abandons a training step that makes no progress for this
	// long (the integrator died mid-step); default 30 s.
	StepTimeout time.Duration

	// Sensors are subjects whose messages are this module's observations,
	// one raw observation each (streaming perception, DESIGN.md section
	// 5): the payload, with its media type from the Content-Type header
	// (else SensorType) and its time from the Serket-Time header (Unix
	// nanoseconds; else when it arrived). The module encodes the latest
	// observation whenever it is free and publishes the posterior,
	// timestamped, on …obs.post.<name>; observations that arrive meanwhile
	// replace each other (latest wins, counted). Needs a Parser.
	Sensors    []string
	SensorType string
	// SensorRate caps the posteriors published per second (0: as fast as
	// the modality encodes).
	SensorRate float64
	// SayBeliefs renders the pipeline's beliefs at their mean (the latest
	// wins) and publishes the rendering on …said.<name>. Needs a Renderer.
	SayBeliefs bool

	// Private is the size of the private latent the module was asked to
	// keep (--private; 0: whatever its modality keeps). Run refuses a
	// modality whose Spec().Private is not it: one that does not support
	// a private latent must not train as if it had one.
	Private int

	// Ready, if set, is called once the service is registered and listening.
	Ready func(svc micro.Service)
}

// Run connects m to the pipeline as the micro service serket-<name> and
// serves until ctx is done, then stops the service, saves a checkpoint if
// configured, and returns. It returns an error if it cannot start; once
// serving, bad messages are logged and counted, never fatal.
func Run(ctx context.Context, m Modality, opts Options) error {
	r, err := newRunner(m, opts)
	if err != nil {
		return err
	}
	return r.run(ctx)
}

// subjects resolves o's pipeline ($SERKET_PIPELINE, else the default)
// and returns its subjects.
func (o *Options) subjects() (bus.Subjects, error) {
	if o.Pipeline == "" {
		o.Pipeline = os.Getenv(procenv.EnvPipeline)
	}
	subj, err := bus.NewSubjects(o.Pipeline)
	if o.Pipeline == "" {
		o.Pipeline = bus.DefaultPipeline
	}
	return subj, err
}

type runner struct {
	sendMu  sync.Mutex
	sendBuf []byte // the training messages' encoding, reused step after step

	// The last training messages received: the next decodes into their
	// storage (the training subscription's goroutine only). Step begins
	// alternate between two, so that a step's plan and sample ids stay
	// whole while the next one is decoded (and refused, maybe).
	inStep     [2]bus.StepBegin
	inStepNext int
	inLatent   bus.Latent
	inEGrad    bus.ExpertGrad
	trainSubj  trainSubjects
	trainIn    chan trainMsg // the training goroutine → the actor
	trainDone  chan struct{} // the actor → the training goroutine: handled
	// The step's outgoing messages and decodeStep's storage, step after
	// step (the actor only).
	w        []float32 // the rows' weights of the step
	dec      stepTerms // the terms the module decodes
	outPost  bus.Posterior
	outZGrad bus.ZGrad

	m        Modality
	spec     Spec
	instance string // the micro service's id: new at every start
	opts     Options
	log      *slog.Logger
	subj     bus.Subjects
	nc       *nats.Conn
	owned    bool

	events  chan func()
	quit    chan struct{} // closed when the actor stops taking events
	pending []func()      // inference deferred while a training step is active

	statsMu sync.Mutex
	stats   trainStats

	logLimit *lograte.Limiter // refusals: a line per kind and sender per interval

	// training run state, owned by the actor goroutine
	session string // the training session enrolled in, "" for none
	runID   string // the run it belongs to
	weights Label  // the run and step the weights are of
	trained bool   // the weights are a checkpoint's, not fresh ones
	frozen  bool   // enrolled frozen: steps without learning, no saves

	// training step state, owned by the actor goroutine
	step       uint64
	active     bool
	lastTouch  time.Time
	x          Batch
	present    []bool
	weight     float32
	beta       float32 // the step's KL weight
	train      bool    // the step updates parameters (else it only scores)
	plan       []bus.Term
	mu, logvar []float32
	stepStart  time.Time // when the current step's StepBegin arrived

	// priv is the modality's private latent, nil if it keeps none; kl is
	// a term's private KL weight per row.
	priv *private
	kl   []float32
}

// trainStats are the training counters, reported as the data of the
// "train" endpoint's STATS and as its reply.
type trainStats struct {
	Messages  int    `json:"messages"` // training messages received
	Steps     int    `json:"steps"`    // steps learned from
	Step      uint64 `json:"step"`     // the latest of them
	Rejected  int    `json:"rejected"` // messages refused (malformed, wrong shape, NaN, …)
	Refused   int    `json:"refused"`  // messages or requests of a session it is not enrolled in, or not from the integrator
	Stale     int    `json:"stale"`    // messages of a step not running (dropped)
	Abandoned int    `json:"abandoned"`
	LastError string `json:"last_error,omitempty"`
	// The run the module is enrolled in (its id and session), and the
	// step of its last checkpoint save.
	Run     string `json:"run,omitempty"`
	Session string `json:"session,omitempty"`
	Saved   uint64 `json:"saved,omitempty"`

	// Where the time of the training steps went: StepSeconds from each
	// StepBegin to the step's end; ComputeSeconds in the modality
	// (LoadBatch, Encode, Decode, Learn); CodecSeconds decoding and
	// encoding the step's messages (and handing them to the connection);
	// SaveSeconds writing checkpoints. The rest of a step is waiting for
	// the integrator and the other modules.
	StepSeconds    float64 `json:"step_seconds"`
	ComputeSeconds float64 `json:"compute_seconds"`
	CodecSeconds   float64 `json:"codec_seconds"`
	SaveSeconds    float64 `json:"save_seconds"`
	// PeakRSSBytes is the most resident memory the process has used.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`

	Stream streamStats `json:"stream"`
}

func newRunner(m Modality, opts Options) (*runner, error) {
	spec := m.Spec()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if opts.Private > 0 && spec.Private != opts.Private {
		return nil, fmt.Errorf("module %s: a private latent of %d was asked for (--private), and its modality keeps %d (Spec().Private): it does not support one of that size",
			spec.Name, opts.Private, spec.Private)
	}
	subj, err := opts.subjects()
	if err != nil {
		return nil, err
	}
	if opts.StepTimeout <= 0 {
		opts.StepTimeout = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default().With("module", spec.Name)
	}
	var priv *private
	if spec.Private > 0 {
		h := fnv.New64a()
		h.Write([]byte(spec.Name))
		priv = newPrivate(spec.Latent, spec.Private, h.Sum64())
	}
	return &runner{
		m: m, spec: spec, opts: opts, log: log, subj: subj, priv: priv,
		events:    make(chan func()),
		quit:      make(chan struct{}),
		trainSubj: newTrainSubjects(subj, spec.Name),
		trainIn:   make(chan trainMsg),
		trainDone: make(chan struct{}, 1),
		logLimit:  lograte.New(10 * time.Second),
	}, nil
}

func (r *runner) run(ctx context.Context) error {
	if s, ok := As[Saver](r.m); ok && r.opts.Checkpoint != "" {
		l, restored, err := restore(s, r.opts.Checkpoint, r.log)
		if err != nil {
			return fmt.Errorf("module %s: %w", r.spec.Name, err)
		}
		r.weights, r.trained = l, restored
	}
	r.nc = r.opts.Conn
	if r.nc == nil {
		cfg := r.opts.NATS
		if cfg.Name == "" {
			cfg.Name = bus.ServiceName(r.spec.Name)
		}
		if cfg.Logger == nil {
			cfg.Logger = r.log
		}
		nc, err := bus.Connect(cfg)
		if err != nil {
			return fmt.Errorf("module %s: %w", r.spec.Name, err)
		}
		r.nc, r.owned = nc, true
	}
	defer func() {
		if r.owned {
			r.nc.Drain()
		}
	}()

	host, _ := os.Hostname()
	name := bus.ServiceName(r.spec.Name)
	svc, err := micro.AddService(r.nc, micro.Config{
		Name:        name,
		Version:     Version,
		Description: fmt.Sprintf("serket modality %s (%s likelihood)", r.spec.Name, r.spec.Likelihood),
		QueueGroup:  name,
		Metadata: map[string]string{
			bus.MetaPipeline:   r.opts.Pipeline,
			bus.MetaLatent:     strconv.Itoa(r.spec.Latent),
			bus.MetaLikelihood: r.spec.Likelihood,
			bus.MetaWire:       strconv.Itoa(bus.WireVersion),
			bus.MetaModule:     r.spec.Name,
			bus.MetaRole:       "module",
			bus.MetaPID:        strconv.Itoa(os.Getpid()),
			bus.MetaHost:       host,
			bus.MetaBLAS:       nn.Backend(),
			bus.MetaTraining:   bus.TrainsRowWeights,
			bus.MetaPrivate:    strconv.Itoa(r.spec.Private),
		},
		StatsHandler: func(e *micro.Endpoint) any {
			if e.Name != "train" {
				return nil
			}
			return r.snapshot()
		},
		ErrorHandler: func(_ micro.Service, err *micro.NATSError) {
			r.log.Error("service error", "subject", err.Subject, "err", err.Description)
		},
	})
	if err != nil {
		return fmt.Errorf("module %s: register service %s: %w", r.spec.Name, name, err)
	}
	r.instance = svc.Info().ID
	// The status endpoint (named "train" for its counters) answers
	// whether or not the module trains: streaming counts are there too.
	endpoints := []endpoint{
		{"encode", r.subj.Encode(r.spec.Name), r.handleEncode},
		{"decode", r.subj.Decode(r.spec.Name), r.handleDecode},
		{"train", r.subj.TrainStatus(r.spec.Name), r.handleTrainStatus},
	}
	// Evaluation's endpoints, for what the modality can do: a client sees
	// from the service's INFO which it has.
	if _, ok := As[Featurer](r.m); ok {
		endpoints = append(endpoints, endpoint{"features", r.subj.Features(r.spec.Name), r.handleFeatures})
	}
	if _, ok := As[Loader](r.m); ok {
		endpoints = append(endpoints, endpoint{"score", r.subj.Score(r.spec.Name), r.handleScore})
	}
	training := r.trains()
	for _, e := range endpoints {
		if err := svc.AddEndpoint(e.name, micro.HandlerFunc(e.h), micro.WithEndpointSubject(e.subject)); err != nil {
			svc.Stop()
			return fmt.Errorf("module %s: endpoint %s on %s: %w", r.spec.Name, e.name, e.subject, err)
		}
	}
	if training {
		stop, err := r.subscribeTraining()
		if err != nil {
			svc.Stop()
			return fmt.Errorf("module %s: %w", r.spec.Name, err)
		}
		defer stop()
	}
	stopStream, err := r.startStreaming(ctx)
	if err != nil {
		svc.Stop()
		return fmt.Errorf("module %s: %w", r.spec.Name, err)
	}
	defer stopStream()
	if err := r.nc.Flush(); err != nil {
		svc.Stop()
		return fmt.Errorf("module %s: %w", r.spec.Name, err)
	}
	r.log.Info("module serving", "service", name, "pipeline", r.opts.Pipeline, "latent", r.spec.Latent, "likelihood", r.spec.Likelihood, "trains", training, "blas", nn.Backend())
	if nn.Backend() == "gonum" {
		// A module built outside the repository's Makefile gets pure-Go
		// GEMM unless its author knows the tag: say so where they look.
		r.log.Info("package nn's GEMM is pure Go here; build the module with -tags openblas (Debian: libopenblas-dev) for several times the speed")
	}
	if r.opts.Ready != nil {
		r.opts.Ready(svc)
	}

	r.actor(ctx)
	close(r.quit)
	r.abandon()
	r.drainPending() // answer inference that waited for a step that will not end
	svc.Stop()
	return nil
}

// endpoint is one of the module's micro endpoints.
type endpoint struct {
	name, subject string
	h             func(micro.Request)
}

// trains reports whether the module takes part in training: it was asked
// to (Options.Train) and can (a Learner with its own data, a Loader).
func (r *runner) trains() bool {
	_, learner := As[Learner](r.m)
	_, loader := As[Loader](r.m)
	return r.opts.Train && learner && loader
}

// actor runs every call into the modality, one at a time, until ctx is done.
func (r *runner) actor(ctx context.Context) {
	tick := time.NewTicker(r.opts.StepTimeout / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-r.events:
			f()
		case t := <-r.trainIn:
			r.handleTrainMsg(t)
			r.trainDone <- struct{}{}
		case <-tick.C:
			if r.active && time.Since(r.lastTouch) > r.opts.StepTimeout {
				r.log.Warn("abandoning a training step that made no progress", "step", r.step, "timeout", r.opts.StepTimeout)
				r.abandon()
			}
		}
		if !r.active {
			r.drainPending()
		}
	}
}

// do runs f, an inference, on the actor and waits for it; handlers block
// their subscription until the modality has handled the message, so the
// endpoint's stats time the real work. f is deferred while a training step
// is active. It returns false, without running f, if the module is
// stopping. (Training messages take their own way to the actor, trainIn.)
func (r *runner) do(f func()) bool { return newActorCall(r, f).call() }

// actorCall is do's way of running f on the actor, made once so that a
// caller who runs the same f again and again (a module's sensor path)
// allocates nothing per call: the closures the actor runs and the channel
// it answers on are the call's.
type actorCall struct {
	r    *runner
	done chan struct{}
	run  func() // on the actor: f, then done
	hand func() // what goes to the actor: run, or run deferred past a step
}

func newActorCall(r *runner, f func()) *actorCall {
	c := &actorCall{r: r, done: make(chan struct{}, 1)}
	c.run = func() {
		f()
		c.done <- struct{}{}
	}
	c.hand = func() {
		if r.active {
			r.pending = append(r.pending, c.run)
			return
		}
		c.run()
	}
	return c
}

// call runs f on the actor and waits for it, or returns false without
// running it if the module is stopping. One call at a time.
func (c *actorCall) call() bool {
	select {
	case c.r.events <- c.hand:
	case <-c.r.quit:
		return false
	}
	<-c.done // a deferred f still runs: drainPending after the actor stops
	return true
}

func (r *runner) drainPending() {
	for len(r.pending) > 0 && !r.active {
		f := r.pending[0]
		r.pending = r.pending[1:]
		f()
	}
}

// safely calls f and turns a panic in the modality into an error, so that a
// bug in one modality's handling of one input never takes the process down.
func (r *runner) safely(what string, f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("modality panicked", "call", what, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("module %s: %s panicked: %v", r.spec.Name, what, p)
		}
	}()
	return f()
}

// reject counts a training message that could not be accepted and logs it,
// once per interval for a flood.
func (r *runner) reject(err error) {
	r.counters(func(c *trainStats) { c.Rejected++; c.LastError = err.Error() })
	r.logLimit.Warn(r.log, "rejected", "rejected a training message (logged once per 10 s; all are counted)", "err", err)
}

func (r *runner) stale(got uint64) {
	r.counters(func(c *trainStats) { c.Stale++ })
	r.log.Debug("dropped stale training message", "step", got, "current", r.step)
}

func (r *runner) counters(f func(*trainStats)) {
	r.statsMu.Lock()
	f(&r.stats)
	r.statsMu.Unlock()
}

func (r *runner) snapshot() trainStats {
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	st := r.stats
	st.PeakRSSBytes = proc.PeakRSS()
	return st
}

// handleTrainStatus answers with the training counters, as JSON.
func (r *runner) handleTrainStatus(req micro.Request) {
	if err := req.RespondJSON(r.snapshot()); err != nil {
		r.log.Error("cannot reply", "subject", req.Subject(), "err", err)
	}
}

// replyError answers a request with a micro error, counted in the endpoint's stats.
func (r *runner) replyError(req micro.Request, code string, err error) {
	r.log.Warn("request failed", "subject", req.Subject(), "err", err)
	if req.Reply() == "" {
		return
	}
	if e := req.Error(code, err.Error(), nil); e != nil {
		r.log.Error("cannot send error reply", "subject", req.Subject(), "err", e)
	}
}

func (r *runner) reply(req micro.Request, m bus.Message) {
	m.(interface{ SetSender(string) }).SetSender(r.spec.Name)
	b, err := bus.MarshalLimit(m, bus.PayloadLimit(r.nc))
	if err != nil {
		r.replyError(req, "500", err)
		return
	}
	if err := req.Respond(b); err != nil {
		r.log.Error("cannot reply", "subject", req.Subject(), "err", err)
	}
}

func (r *runner) handleEncode(req micro.Request) {
	var in bus.EncodeRequest
	if err := bus.UnmarshalFrom(req.Subject(), req.Data(), &in, bus.Expect{}); err != nil {
		r.replyError(req, "400", err)
		return
	}
	p, parser := As[Parser](r.m)
	if !parser && len(in.Observations) > 0 {
		r.notHere(req, "parse raw input", "Parser")
		return
	}
	r.serveRequest(req, "Parse/Encode", func() (bus.Message, error) {
		n, d := len(in.Observations)+len(in.IDs), r.spec.Latent
		mu, lv := make([]float32, n*d), make([]float32, n*d)
		out := &bus.EncodeReply{}
		if k := len(in.Observations); k > 0 {
			x, err := p.Parse(in.Observations)
			if err != nil {
				return nil, fmt.Errorf("module %s: input from %q: %w", r.spec.Name, in.Sender, err)
			}
			if x.Len() != k {
				return nil, fmt.Errorf("module %s: Parse returned %d rows for %d observations", r.spec.Name, x.Len(), k)
			}
			if err := r.encodeShared(x, mu[:k*d], lv[:k*d]); err != nil {
				return nil, fmt.Errorf("module %s: encode: %w", r.spec.Name, err)
			}
		}
		if len(in.IDs) > 0 {
			x, present, err := r.items(in.IDs)
			if err != nil {
				return nil, err
			}
			k := len(in.Observations)
			if err := r.encodeShared(x, mu[k*d:], lv[k*d:]); err != nil {
				return nil, fmt.Errorf("module %s: encode: %w", r.spec.Name, err)
			}
			out.Present = append(make([]bool, k), present...)
			for i := range k {
				out.Present[i] = true
			}
		}
		out.Mu, out.LogVar = bus.Matrix(n, d, mu), bus.Matrix(n, d, lv)
		return out, nil
	})
}

func (r *runner) handleDecode(req micro.Request) {
	var in bus.DecodeRequest
	if err := bus.UnmarshalFrom(req.Subject(), req.Data(), &in, bus.Expect{Latent: r.spec.Latent}); err != nil {
		r.replyError(req, "400", err)
		return
	}
	rd, ok := As[Renderer](r.m)
	if !ok {
		r.replyError(req, "501", fmt.Errorf("module %s cannot render outputs (it does not implement module.Renderer)", r.spec.Name))
		return
	}
	if !r.do(func() {
		var out bus.DecodeReply
		err := r.safely("Render", func() error {
			z, err := r.whole(in.Z.Data, in.Z.Rows())
			if err != nil {
				return fmt.Errorf("module %s: render: %w", r.spec.Name, err)
			}
			outs, err := rd.Render(z, in.Z.Rows())
			if err != nil {
				return fmt.Errorf("module %s: render: %w", r.spec.Name, err)
			}
			if len(outs) != in.Z.Rows() {
				return fmt.Errorf("module %s: Render returned %d outputs for %d latents", r.spec.Name, len(outs), in.Z.Rows())
			}
			out.Outputs = outs
			return nil
		})
		if err != nil {
			r.replyError(req, "500", err)
			return
		}
		r.reply(req, &out)
	}) {
		r.replyError(req, "503", fmt.Errorf("module %s is stopping", r.spec.Name))
	}
}
