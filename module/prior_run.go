package module

import (
	"context"
	"fmt"
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
)

// RunPrior connects m to the pipeline as the micro service serket-<name>
// with role "prior" and answers the integrator's prior requests until ctx
// is done. With opts.Train it learns from training steps' requests of the
// run it is enrolled in (bus.Control, as a modality's module), and saves
// and restores opts.Checkpoint when that run's integrator asks; without
// it, nothing on the bus changes it. Options about modalities (sensors,
// private latents) do not apply.
func RunPrior(ctx context.Context, m PriorModel, opts Options) error {
	spec := m.PriorSpec()
	if err := spec.Validate(); err != nil {
		return err
	}
	subj, err := opts.subjects()
	if err != nil {
		return err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default().With("module", spec.Name)
	}
	p := &priorRunner{m: m, spec: spec, opts: opts, subj: subj, log: log, logLimit: lograte.New(10 * time.Second)}
	return p.run(ctx)
}

// priorRunner serves one PriorModel. mu serialises every call into the
// model and the run state: requests and controls come on different
// goroutines.
type priorRunner struct {
	m        PriorModel
	spec     PriorSpec
	opts     Options
	subj     bus.Subjects
	log      *slog.Logger
	logLimit *lograte.Limiter
	nc       *nats.Conn
	instance string

	mu      sync.Mutex
	session string // the training session enrolled in, "" for none
	runID   string
	weights Label
	trained bool
	// frozenRun: enrolled frozen (the model takes part unchanged).
	frozenRun bool
	stats     priorStats
	in        bus.PriorRequest
	out       []PriorOut
	ev        []Evidence
	reply     bus.PriorReply
}

// priorStats are a prior module's counters: the "prior" endpoint's
// STATS data and its status reply.
type priorStats struct {
	Requests  int     `json:"requests"`
	Learned   int     `json:"learned"` // training requests it learned from
	Step      uint64  `json:"step"`    // the latest of them
	Rejected  int     `json:"rejected"`
	Refused   int     `json:"refused"`
	LastError string  `json:"last_error,omitempty"`
	Run       string  `json:"run,omitempty"`
	Session   string  `json:"session,omitempty"`
	Saved     uint64  `json:"saved,omitempty"`
	Seconds   float64 `json:"compute_seconds"`
}

func (p *priorRunner) run(ctx context.Context) error {
	if s, ok := As[Saver](p.m); ok && p.opts.Checkpoint != "" {
		var (
			l        Label
			restored bool
		)
		err := p.safely(func() (err error) {
			l, restored, err = restore(s, p.opts.Checkpoint, p.log)
			return err
		})
		if err != nil {
			return fmt.Errorf("module %s: %w", p.spec.Name, err)
		}
		p.weights, p.trained = l, restored
	}
	nc, owned, err := p.connect()
	if err != nil {
		return err
	}
	p.nc = nc
	if owned {
		defer nc.Drain()
	}
	svc, err := p.serve()
	if err != nil {
		return err
	}
	defer svc.Stop()
	if p.opts.Train {
		sub, err := nc.Subscribe(p.subj.Control(p.spec.Name), p.handleControl)
		if err != nil {
			return fmt.Errorf("module %s: subscribe %s: %w", p.spec.Name, p.subj.Control(p.spec.Name), err)
		}
		defer sub.Unsubscribe()
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("module %s: %w", p.spec.Name, err)
	}
	p.log.Info("prior module serving", "service", bus.ServiceName(p.spec.Name), "pipeline", p.opts.Pipeline, "latent", p.spec.Latent, "trains", p.opts.Train)
	if p.opts.Ready != nil {
		p.opts.Ready(svc)
	}
	<-ctx.Done()
	return nil
}

func (p *priorRunner) connect() (*nats.Conn, bool, error) {
	if p.opts.Conn != nil {
		return p.opts.Conn, false, nil
	}
	cfg := p.opts.NATS
	if cfg.Name == "" {
		cfg.Name = bus.ServiceName(p.spec.Name)
	}
	if cfg.Logger == nil {
		cfg.Logger = p.log
	}
	nc, err := bus.Connect(cfg)
	if err != nil {
		return nil, false, fmt.Errorf("module %s: %w", p.spec.Name, err)
	}
	return nc, true, nil
}

// serve registers the micro service and its endpoints: the prior itself
// and the status (named "train", like a modality's).
func (p *priorRunner) serve() (micro.Service, error) {
	host, _ := os.Hostname()
	name := bus.ServiceName(p.spec.Name)
	svc, err := micro.AddService(p.nc, micro.Config{
		Name: name, Version: Version, QueueGroup: name,
		Description: fmt.Sprintf("serket prior module %s", p.spec.Name),
		Metadata: map[string]string{
			bus.MetaPipeline: p.opts.Pipeline, bus.MetaLatent: strconv.Itoa(p.spec.Latent),
			bus.MetaWire: strconv.Itoa(bus.WireVersion), bus.MetaModule: p.spec.Name, bus.MetaRole: bus.RolePrior,
			bus.MetaPID: strconv.Itoa(os.Getpid()), bus.MetaHost: host,
		},
		StatsHandler: func(e *micro.Endpoint) any { return p.snapshot() },
	})
	if err != nil {
		return nil, fmt.Errorf("module %s: register service %s: %w", p.spec.Name, name, err)
	}
	p.instance = svc.Info().ID
	endpoints := []endpoint{
		{"prior", p.subj.Prior(p.spec.Name), func(req micro.Request) { p.handlePrior(req, false) }},
		{"train", p.subj.TrainStatus(p.spec.Name), func(req micro.Request) { req.RespondJSON(p.snapshot()) }},
	}
	if p.opts.Train { // the subject it learns from: none unless it trains
		endpoints = append(endpoints, endpoint{"learn", p.subj.PriorTrain(p.spec.Name), func(req micro.Request) { p.handlePrior(req, true) }})
	}
	for _, e := range endpoints {
		if err := svc.AddEndpoint(e.name, micro.HandlerFunc(e.h), micro.WithEndpointSubject(e.subject)); err != nil {
			svc.Stop()
			return nil, fmt.Errorf("module %s: endpoint %s on %s: %w", p.spec.Name, e.name, e.subject, err)
		}
	}
	return svc, nil
}

func (p *priorRunner) snapshot() priorStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// refuse counts a request or control that was refused and logs it, once
// per interval and kind for a flood.
func (p *priorRunner) refuse(kind string, rejected bool, err error) {
	if rejected {
		p.stats.Rejected++
	} else {
		p.stats.Refused++
	}
	p.stats.LastError = err.Error()
	p.logLimit.Warn(p.log, kind, "refused a "+kind+" (logged once per 10 s; all are counted)", "err", err)
}

// safely calls the model, turning a panic into an error.
func (p *priorRunner) safely(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("prior model panicked", "panic", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("module %s: the prior model panicked: %v", p.spec.Name, v)
		}
	}()
	return f()
}
