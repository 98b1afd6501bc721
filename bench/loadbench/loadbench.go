package loadbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bench"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
)

// Config is one load run against the pipeline at URL.
type Config struct {
	URL      string // the NATS server of the running pipeline (required)
	Pipeline string // its name; "" is bus.DefaultPipeline
	// Conn gives the settings (credentials, TLS) of the connection called
	// name; nil: none. Run sets the URL, the name and, when unset, the logger.
	Conn func(name string) bus.ConnConfig
	Log  *slog.Logger // nil: nothing is logged

	// Requests are the observations of the requests, by module: the
	// clients cycle through them. Every one names the same modules; an
	// empty one asks the prior.
	Requests []map[string]bus.Payload
	Want     []string // modules each request asks to decode

	Clients  int           // concurrent clients, each with one request in flight (1 to 100000)
	Conns    int           // connections they share, client i on connection i mod Conns (at most one per client)
	Duration time.Duration // the measured window
	Warmup   time.Duration // sending before the window, not counted
	Timeout  time.Duration // how long a request waits for its reply before it counts as lost
	Wait     time.Duration // how long to wait for every module and the integrator to be live; default 10 s
	Baseline bool          // also measure the raw NATS echo

	// Owned says the pipeline is this run's own, so no one else sends it
	// requests: the integrator's count of inference requests must then equal
	// the requests sent.
	Owned bool
	// Setup says how the pipeline runs, for the report ("" when unknown).
	Setup string
}

// ErrConfig marks a Config that cannot run.
var ErrConfig = errors.New("loadbench: invalid config")

// ErrLoad marks a run that lost a request or whose counts do not add up.
var ErrLoad = errors.New("bench load")

func (cfg *Config) validate() error {
	switch {
	case cfg.URL == "":
		return fmt.Errorf("%w: no NATS URL", ErrConfig)
	case cfg.Clients < 1 || cfg.Clients > 100_000:
		return fmt.Errorf("%w: %d clients: want 1 to 100000", ErrConfig, cfg.Clients)
	case cfg.Conns < 1:
		return fmt.Errorf("%w: %d connections: want at least 1", ErrConfig, cfg.Conns)
	case cfg.Duration <= 0 || cfg.Warmup < 0 || cfg.Timeout <= 0:
		return fmt.Errorf("%w: the duration and the timeout must be positive, the warm-up not negative", ErrConfig)
	case len(cfg.Requests) == 0:
		return fmt.Errorf("%w: no requests", ErrConfig)
	}
	cfg.Conns = min(cfg.Conns, cfg.Clients)
	if cfg.Wait <= 0 {
		cfg.Wait = 10 * time.Second
	}
	if cfg.Pipeline == "" {
		cfg.Pipeline = bus.DefaultPipeline
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	from := slices.Sorted(maps.Keys(cfg.Requests[0]))
	for i, r := range cfg.Requests {
		if got := slices.Sorted(maps.Keys(r)); !slices.Equal(got, from) {
			return fmt.Errorf("%w: request %d observes %v, request 0 %v: every request must observe the same modules", ErrConfig, i, got, from)
		}
	}
	for _, name := range append(slices.Clone(from), cfg.Want...) {
		if !bus.ValidName(name) {
			return fmt.Errorf("%w: %q is not a module name", ErrConfig, name)
		}
	}
	want := slices.Sorted(slices.Values(cfg.Want))
	for i := 1; i < len(want); i++ {
		if want[i] == want[i-1] {
			return fmt.Errorf("%w: %s is wanted twice", ErrConfig, want[i])
		}
	}
	if len(from)+len(cfg.Want) == 0 {
		return fmt.Errorf("%w: the requests neither observe nor decode a module", ErrConfig)
	}
	return nil
}

// Result is what a run measured.
type Result struct {
	Target       string     `json:"target"` // the NATS URL
	Pipeline     string     `json:"pipeline"`
	Setup        string     `json:"setup,omitempty"`
	Owned        bool       `json:"owned"`
	Clients      int        `json:"clients"`
	Conns        int        `json:"conns"`
	From         []string   `json:"from"` // the modules the requests observe, sorted
	To           []string   `json:"to"`   // the modules they decode, sorted
	Items        int        `json:"items"`
	RequestBytes int        `json:"request_bytes"` // mean size of an inference request
	Warmup       Phase      `json:"warmup"`
	Inference    Phase      `json:"inference"`
	BaselineWarm *Phase     `json:"baseline_warmup,omitempty"`
	Baseline     *Phase     `json:"baseline,omitempty"`
	P50Ratio     float64    `json:"p50_ratio,omitempty"` // inference p50 / baseline p50
	Server       []Endpoint `json:"server,omitempty"`
	// ServerRequests is the integrator's inference requests over warm-up
	// and window as its own counters tell (-1: unknown), to set against the
	// requests sent.
	ServerRequests int `json:"server_requests"`
}

// Phase is the fate of every request of one phase, and its rate.
type Phase struct {
	bench.Tally
	Seconds float64       `json:"seconds"` // from the window's start to the last reply of a request sent in it
	PerSec  float64       `json:"ok_per_sec"`
	Latency bench.Latency `json:"latency"` // of the ok replies
}

// finish computes the figures once the tally is complete.
func (p *Phase) finish() {
	if p.Seconds > 0 {
		p.PerSec = float64(p.OK) / p.Seconds
	}
	p.Latency = p.Tally.Latency()
}

// Run waits until the pipeline's integrator and every module the requests
// name are live, then runs the inference phase and, with cfg.Baseline, the
// echo phase. Once ctx is done no request is sent, but those in flight
// still get their full timeout: stopping early loses no reply.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	conns, err := connect(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	ib, err := newInferBench(cfg, conns[0])
	if err != nil {
		return nil, err
	}
	if err := waitLive(ctx, cfg, conns[0], ib); err != nil {
		return nil, err
	}
	res := &Result{Target: cfg.URL, Pipeline: cfg.Pipeline, Setup: cfg.Setup, Owned: cfg.Owned, Clients: cfg.Clients, Conns: cfg.Conns,
		From: ib.from, To: ib.to, Items: len(ib.reqs), RequestBytes: ib.meanBytes(), ServerRequests: -1}
	before, _ := discover(ctx, conns[0], cfg.Pipeline)
	start := time.Now()
	cfg.Log.Info("inference", "clients", cfg.Clients, "conns", cfg.Conns, "warmup", cfg.Warmup, "duration", cfg.Duration)
	res.Warmup, res.Inference = runPhase(ctx, cfg, conns, ib.shoot)
	res.Server, res.ServerRequests = serverView(context.WithoutCancel(ctx), conns[0], cfg.Pipeline, before,
		time.Since(start), res.Warmup.Sent+res.Inference.Sent, cfg.Owned)
	if cfg.Baseline && ctx.Err() == nil {
		if err := baseline(ctx, cfg, conns, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// connect opens the clients' connections.
func connect(cfg Config) ([]*nats.Conn, error) {
	conns := make([]*nats.Conn, 0, cfg.Conns)
	for i := range cfg.Conns {
		name := fmt.Sprintf("serket-bench-load-%d", i)
		cc := bus.ConnConfig{}
		if cfg.Conn != nil {
			cc = cfg.Conn(name)
		}
		cc.URL, cc.Name = cfg.URL, name
		if cc.Logger == nil {
			cc.Logger = cfg.Log
		}
		nc, err := bus.Connect(cc)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, fmt.Errorf("loadbench: connection %s: %w", name, err)
		}
		conns = append(conns, nc)
	}
	return conns, nil
}

// waitLive waits, at most cfg.Wait, for the integrator and every module the
// requests observe or decode.
func waitLive(ctx context.Context, cfg Config, nc *nats.Conn, ib *inferBench) error {
	c, err := client.New(nc, cfg.Pipeline, "bench-load")
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, cfg.Wait)
	defer cancel()
	if _, err := c.WaitFor(wctx, true, append(slices.Clone(ib.from), ib.to...)...); err != nil {
		return fmt.Errorf("loadbench: pipeline %s on %s: %w", cfg.Pipeline, cfg.URL, err)
	}
	return nil
}

// baseline measures the raw echo of the mean request's size by the same
// clients on the same connections.
func baseline(ctx context.Context, cfg Config, conns []*nats.Conn, res *Result) error {
	cfg.Log.Info("baseline: raw NATS echo", "bytes", res.RequestBytes)
	e, err := bench.NewEcho(conns, res.RequestBytes)
	if err != nil {
		return err
	}
	defer e.Close()
	callers := make([]*bench.Caller, cfg.Clients)
	for i := range callers {
		callers[i] = e.Caller(i)
	}
	warm, base := runPhase(ctx, cfg, conns, func(ctx context.Context, nc *nats.Conn, c, seq int) (bench.Outcome, string) {
		return callers[c].Call(ctx, nc, seq)
	})
	res.BaselineWarm, res.Baseline = &warm, &base
	res.P50Ratio = bench.Ratio(res.Inference.Latency.P50, base.Latency.P50)
	return nil
}

// Check is nil when every request of every phase is accounted for, none
// was lost, and, on the run's own pipeline, the integrator counted every
// inference request sent. Its errors wrap ErrLoad.
func (r *Result) Check() error {
	phases := []struct {
		name string
		p    *Phase
	}{{"warm-up", &r.Warmup}, {"inference", &r.Inference}, {"baseline warm-up", r.BaselineWarm}, {"baseline", r.Baseline}}
	var errs []error
	for _, ph := range phases {
		if ph.p == nil {
			continue
		}
		if err := ph.p.Check(ph.name); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", ErrLoad, err))
		}
	}
	if r.Inference.Sent == 0 {
		errs = append(errs, fmt.Errorf("%w: no inference request was sent", ErrLoad))
	}
	if sent := r.Warmup.Sent + r.Inference.Sent; r.Owned && r.ServerRequests != sent {
		errs = append(errs, fmt.Errorf("%w: the integrator counted %d inference requests, %d were sent", ErrLoad, r.ServerRequests, sent))
	}
	return errors.Join(errs...)
}
