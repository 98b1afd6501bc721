package fusionbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/serket-go/serket/bench"
	"github.com/serket-go/serket/bus"
)

// Config is one run.
type Config struct {
	N        int           // round trips of each kind (serket fusion and raw echo)
	Latent   int           // latent size of the round trip (1 to 4096)
	Block    int           // round trips per interleaved block; default 200
	Timeout  time.Duration // how long a round trip may take before it counts as lost; default 5 s
	Duration time.Duration // measured time per throughput cell; 0 skips the throughput table
	Modules  []int         // module counts of the throughput table (1 to bus.MaxModules)
	Latents  []int         // latent sizes of the throughput table (1 to 4096)
	Log      *slog.Logger  // nil: nothing is logged
}

// ErrConfig marks a Config that cannot run.
var ErrConfig = errors.New("fusionbench: invalid config")

// ErrFusion marks a run in which a round trip was not matched or a
// throughput cell did not run clean.
var ErrFusion = errors.New("bench fusion")

func (cfg *Config) validate() error {
	if cfg.Block <= 0 {
		cfg.Block = 200
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.N < 1 {
		return fmt.Errorf("%w: %d round trips: want at least 1", ErrConfig, cfg.N)
	}
	for _, d := range append([]int{cfg.Latent}, cfg.Latents...) {
		if d < 1 || d > 4096 {
			return fmt.Errorf("%w: latent size %d: want 1 to 4096", ErrConfig, d)
		}
	}
	for _, m := range cfg.Modules {
		if m < 1 || m > bus.MaxModules {
			return fmt.Errorf("%w: %d modules: want 1 to %d (the most a belief may name)", ErrConfig, m, bus.MaxModules)
		}
	}
	if cfg.Duration < 0 {
		return fmt.Errorf("%w: duration %v: want a positive time per throughput cell, or 0 for none", ErrConfig, cfg.Duration)
	}
	return nil
}

// Result is what a run measured.
type Result struct {
	Server     string `json:"server"` // the embedded server's URL
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	// LoadBefore and LoadAfter are the 1, 5 and 15 minute load averages
	// (/proc/loadavg) as the run began and ended; empty where unknown.
	LoadBefore string    `json:"load_before,omitempty"`
	LoadAfter  string    `json:"load_after,omitempty"`
	RoundTrip  RoundTrip `json:"round_trip"`
	Throughput []Cell    `json:"throughput,omitempty"`
	// Slices is how many slices of Slice each cell was measured in.
	Slices int           `json:"slices,omitempty"`
	Slice  time.Duration `json:"slice_ns,omitempty"`
	Growth *Growth       `json:"growth,omitempty"`
}

// RoundTrip compares the fusion round trip with a raw request-reply.
type RoundTrip struct {
	N              int     `json:"n"`
	Latent         int     `json:"latent"`
	Block          int     `json:"block"`
	PosteriorBytes int     `json:"posterior_bytes"` // also the raw echo's payload
	BeliefBytes    int     `json:"belief_bytes"`
	Serket         Trips   `json:"serket"`
	Raw            Trips   `json:"raw"`
	P50Ratio       float64 `json:"p50_ratio"` // serket p50 / raw p50
	P99Ratio       float64 `json:"p99_ratio"`
	FirstError     string  `json:"first_error,omitempty"` // of a round trip not matched
}

// Trips are one kind's round trips: OK counts those matched (the belief
// named this round trip's posterior and carried its fusion; the echo was
// this request's), Errors those answered wrongly, Lost those unanswered
// within the timeout.
type Trips struct {
	bench.Tally
	Latency bench.Latency `json:"latency"` // of the matched ones
}

// Cell is one cell of the throughput table.
type Cell struct {
	Modules          int     `json:"modules"`
	Latent           int     `json:"latent"`
	Seconds          float64 `json:"seconds"`
	Beliefs          uint64  `json:"beliefs"`    // published by the integrator in the window
	Posteriors       uint64  `json:"posteriors"` // accepted by the integrator in the window
	BeliefsPerSec    float64 `json:"beliefs_per_sec"`
	PosteriorsPerSec float64 `json:"posteriors_per_sec"`
	PerBelief        float64 `json:"posteriors_per_belief"` // how many fresh posteriors one fusion took in, on average
	UsPerBelief      float64 `json:"us_per_belief"`
	Stalls           int     `json:"stalls"`  // a module waited longer than the timeout for its posterior to be fused
	Refused          uint64  `json:"refused"` // posteriors the integrator rejected, dropped or let expire, and undecodable beliefs (must be 0)
}

// Run measures the round trip and then every throughput cell, on one
// embedded server.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	srv, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1"})
	if err != nil {
		return nil, fmt.Errorf("fusionbench: %w", err)
	}
	defer srv.Shutdown()
	res := &Result{Server: srv.ClientURL(), CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), LoadBefore: loadAverage()}
	rt, err := roundTrips(ctx, srv, cfg)
	if err != nil {
		return nil, err
	}
	res.RoundTrip = *rt
	if cfg.Duration > 0 {
		if res.Throughput, err = table(ctx, srv, cfg); err != nil {
			return nil, err
		}
		res.Slices, res.Slice = Slices(cfg.Duration)
	}
	res.Growth = FitGrowth(res.Throughput)
	res.LoadAfter = loadAverage()
	return res, nil
}

// loadAverage is the first three fields of /proc/loadavg, "" elsewhere.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// Check is nil when every round trip was matched and the throughput cells
// ran clean. Its errors wrap ErrFusion.
func (r *Result) Check() error {
	var errs []error
	for _, k := range []struct {
		name string
		t    Trips
	}{{"fusion round trip", r.RoundTrip.Serket}, {"raw round trip", r.RoundTrip.Raw}} {
		if k.t.OK != k.t.Sent || k.t.Sent != r.RoundTrip.N {
			errs = append(errs, fmt.Errorf("%w: %s: %d of %d matched (%d lost, %d wrong)", ErrFusion, k.name, k.t.OK, r.RoundTrip.N, k.t.Lost, k.t.Errors))
		}
	}
	if len(errs) > 0 && r.RoundTrip.FirstError != "" {
		errs = append(errs, errors.New(r.RoundTrip.FirstError))
	}
	for _, c := range r.Throughput {
		if c.Beliefs == 0 || c.Stalls > 0 || c.Refused > 0 {
			errs = append(errs, fmt.Errorf("%w: %d modules × latent %d: %d beliefs, %d stalls, %d posteriors refused", ErrFusion, c.Modules, c.Latent, c.Beliefs, c.Stalls, c.Refused))
		}
	}
	return errors.Join(errs...)
}
