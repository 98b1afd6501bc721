package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/integrator"
)

func newBenchFusionCmd(g *globals) *cobra.Command {
	cfg := fusionConfig{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "fusion",
		Short: "streaming fusion's round trip next to a raw NATS request-reply, and its throughput",
		Long: `Measure streaming fusion (DESIGN.md section 5) on an embedded nats-server on
127.0.0.1 (TCP, a random port), with the integrator, every module and the two
parties of the raw echo each on their own connection, as separate processes
would be (they share this process and its CPUs, which the output states).
It always runs its own server: --nats is not used.

Round trip: a module publishes a timestamped 1×--latent posterior on its
obs.post subject, as module/stream.go does; the integrator (integrator.Run,
MinPeriod 0) fuses it and publishes a belief; the module decodes beliefs
until one names its posterior (belief time − source age = posterior time)
and carries its fusion with the prior. --n round trips, one in flight at a
time, timed from before the posterior is encoded to after the belief is
decoded. Next to it, in the same run and on the same server, --n raw NATS
request-replies of the posterior's size to a plain echo responder on
another connection. The two are interleaved in blocks of 200 (after a
block of each that is not counted), so that noise on the machine hits both
alike; the p50 and p99 ratios serket/raw are printed.

Throughput: for every --modules × --latents cell, a fresh integrator and
that many synthetic modules, each on its own connection and each in a
closed loop: publish a posterior, wait until a belief includes it, publish
the next. One listener connection decodes each belief once and tells the
modules whose posteriors it names (so the bench's own decoding does not
grow with the number of modules). A closed loop keeps at most one posterior
per module in flight, so nothing queues anywhere and the integrator is
always offered a fresh posterior from every module it has caught up with:
it, not a publisher's rate, sets the pace. Rates are the integrator's own
counters over --duration per cell, measured in slices of at most 0.5 s
(each with a fresh integrator and modules and a short warm-up) taken
round-robin over the cells, so that a change in the machine's load falls
on every cell alike. A least-squares fit of the time per belief and per
posterior against the number of modules and the latent size says how the
cost grows per doubling of each.`,
		Example: `  serket bench fusion
  serket bench fusion --n 5000 --latent 128 --modules 3,16 --latents 64,256 --duration 5s
  serket bench fusion --json`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg.Log = g.logger("bench-fusion")
			ctx, cancel := signalContext()
			defer cancel()
			res, err := runFusion(ctx, cfg)
			if err != nil {
				return err
			}
			return reportBench(os.Stdout, res, asJSON)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.N, "n", 2000, "round trips of each kind (serket fusion and raw echo)")
	f.IntVar(&cfg.Latent, "latent", 64, "latent size of the round trip")
	f.DurationVar(&cfg.Duration, "duration", 2*time.Second, "measured time per throughput cell (0: no throughput table)")
	f.IntSliceVar(&cfg.Modules, "modules", []int{3, 8, 16}, "module counts of the throughput table")
	f.IntSliceVar(&cfg.Latents, "latents", []int{16, 64, 128, 256}, "latent sizes of the throughput table")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// fusionConfig is one run of serket bench fusion.
type fusionConfig struct {
	N        int           // round trips of each kind
	Latent   int           // latent size of the round trip
	Block    int           // round trips per interleaved block; default 200
	Timeout  time.Duration // how long a round trip may take before it counts as lost; default 5 s
	Duration time.Duration // measured time per throughput cell; 0 skips the throughput table
	Modules  []int         // module counts of the throughput table
	Latents  []int         // latent sizes of the throughput table
	Log      *slog.Logger
}

func (cfg *fusionConfig) validate() error {
	if cfg.Block <= 0 {
		cfg.Block = 200
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.N < 1 {
		return usagef("--n %d: want at least 1 round trip", cfg.N)
	}
	if cfg.Latent < 1 || cfg.Latent > 4096 {
		return usagef("--latent %d: want 1 to 4096", cfg.Latent)
	}
	for _, d := range cfg.Latents {
		if d < 1 || d > 4096 {
			return usagef("--latents: %d: want 1 to 4096", d)
		}
	}
	for _, m := range cfg.Modules {
		if m < 1 || m > bus.MaxModules {
			return usagef("--modules: %d: want 1 to %d (the most a belief may name)", m, bus.MaxModules)
		}
	}
	if cfg.Duration < 0 {
		return usagef("--duration %v: want a positive time per throughput cell, or 0 for none", cfg.Duration)
	}
	return nil
}

// fusionResult is what a run measured. Latencies are in microseconds.
type fusionResult struct {
	Server     string `json:"server"` // the embedded server's URL
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	// LoadBefore and LoadAfter are the 1, 5 and 15 minute load averages
	// (/proc/loadavg) as the run began and ended; empty where unknown.
	LoadBefore string          `json:"load_before,omitempty"`
	LoadAfter  string          `json:"load_after,omitempty"`
	RoundTrip  fusionRoundTrip `json:"round_trip"`
	Throughput []fusionCell    `json:"throughput,omitempty"`
	// Slices is how many slices of Slice each cell was measured in.
	Slices int           `json:"slices,omitempty"`
	Slice  time.Duration `json:"slice_ns,omitempty"`
	Growth *fusionGrowth `json:"growth,omitempty"`
}

// fusionRoundTrip compares the fusion round trip with a raw request-reply.
type fusionRoundTrip struct {
	N              int           `json:"n"`
	Latent         int           `json:"latent"`
	Block          int           `json:"block"`
	PosteriorBytes int           `json:"posterior_bytes"` // also the raw echo's payload
	BeliefBytes    int           `json:"belief_bytes"`
	Serket         fusionLatency `json:"serket"`
	Raw            fusionLatency `json:"raw"`
	P50Ratio       float64       `json:"p50_ratio"` // serket p50 / raw p50
	P99Ratio       float64       `json:"p99_ratio"`
	FirstError     string        `json:"first_error,omitempty"` // of a round trip not matched
}

// fusionLatency is one kind's round trips: how many were matched and
// their nearest-rank percentiles in microseconds.
type fusionLatency struct {
	Sent    int     `json:"sent"`
	Matched int     `json:"matched"` // the belief named this round trip's posterior (raw: the echo was this request's)
	Lost    int     `json:"lost"`    // no answer within the timeout
	Wrong   int     `json:"wrong"`   // an answer that was not right (a fused mean that is not this posterior's, a crossed echo)
	P50     float64 `json:"p50_us"`
	P90     float64 `json:"p90_us"`
	P99     float64 `json:"p99_us"`
	Max     float64 `json:"max_us"`
	Mean    float64 `json:"mean_us"`

	lat []time.Duration
}

// fusionCell is one cell of the throughput table.
type fusionCell struct {
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
	Refused          uint64  `json:"refused"` // posteriors the integrator rejected, dropped or let expire (must be 0)
}

// fusionGrowth is a least-squares fit of the throughput table's cost per
// belief and per posterior, c · modules^M · latent^L: how the cost grows
// per doubling of each.
type fusionGrowth struct {
	BeliefLatentExp     float64 `json:"belief_latent_exp"`
	BeliefModulesExp    float64 `json:"belief_modules_exp"`
	PosteriorLatentExp  float64 `json:"posterior_latent_exp"`
	PosteriorModulesExp float64 `json:"posterior_modules_exp"`
	Latents, Modules    bool    `json:"-"` // whether the table varies them
}

var errFusion = errors.New("bench fusion")

// runFusion measures the round trip and then every throughput cell, on one
// embedded server.
func runFusion(ctx context.Context, cfg fusionConfig) (*fusionResult, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	srv, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1"})
	if err != nil {
		return nil, err
	}
	defer srv.Shutdown()
	res := &fusionResult{Server: srv.ClientURL(), CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), LoadBefore: loadAverage()}
	rt, err := fusionRoundTrips(ctx, srv, cfg)
	if err != nil {
		return nil, err
	}
	res.RoundTrip = *rt
	if cfg.Duration > 0 {
		if res.Throughput, err = fusionTable(ctx, srv, cfg); err != nil {
			return nil, err
		}
		res.Slices, res.Slice = fusionSlices(cfg.Duration)
	}
	res.Growth = fitGrowth(res.Throughput)
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

// fusionConnect is one party's own connection, named as its process would be.
func fusionConnect(srv *bus.Server, name string, log *slog.Logger) (*nats.Conn, error) {
	return bus.Connect(bus.ConnConfig{URL: srv.ClientURL(), Name: name, Logger: log})
}

// benchIntegrator runs a real integrator of latent size d on its own
// connection until the returned stop is called.
func benchIntegrator(srv *bus.Server, pipeline string, d int, log *slog.Logger) (*integrator.Integrator, func(), error) {
	nc, err := fusionConnect(srv, bus.ServiceName(integrator.Name), log)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *integrator.Integrator, 1)
	done := make(chan error, 1)
	go func() {
		done <- integrator.Run(ctx, integrator.Config{
			Pipeline: pipeline, Latent: d, Conn: nc, Logger: slog.New(warnings{log.Handler()}),
			Stream: integrator.StreamConfig{MinPeriod: 0},
			Ready:  func(ig *integrator.Integrator) { ready <- ig },
		})
	}()
	stop := func() { cancel(); <-done; nc.Close() }
	select {
	case ig := <-ready:
		return ig, stop, nil
	case err := <-done:
		nc.Close()
		cancel()
		return nil, nil, fmt.Errorf("the integrator: %w", err)
	}
}

// warnings passes on only warnings and errors: a bench starts an
// integrator per cell, and their start-up lines would bury its own.
type warnings struct{ slog.Handler }

func (h warnings) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.Handler.Enabled(ctx, l)
}
func (h warnings) WithAttrs(as []slog.Attr) slog.Handler { return warnings{h.Handler.WithAttrs(as)} }
func (h warnings) WithGroup(name string) slog.Handler    { return warnings{h.Handler.WithGroup(name)} }

// probe is the round trip's module: it publishes posteriors as
// module/stream.go does and reads beliefs on its own connection.
type probe struct {
	name    string
	d       int
	nc      *nats.Conn
	subj    bus.Subjects
	beliefs chan *nats.Msg
	mu, lv  []float32
	last    int64 // the latest posterior's time, so that every one is newer

	postBytes, beliefBytes int // sizes of the latest posterior and belief
}

// roundTrip publishes posterior seq and waits for the belief that names
// it. It returns how long that took, or whether it was lost or wrong.
func (p *probe) roundTrip(seq int, timeout time.Duration) (time.Duration, outcome, string) {
	start := time.Now()
	t := max(start.UnixNano(), p.last+1)
	p.last = t
	// A mean that changes with seq, so that a belief of an earlier
	// posterior cannot pass for this one's.
	p.mu[0] = float32(seq%1000) / 100
	post := &bus.Posterior{Time: t, Mu: bus.Matrix(1, p.d, p.mu), LogVar: bus.Matrix(1, p.d, p.lv)}
	post.SetSender(p.name)
	b, err := bus.Marshal(post)
	if err == nil {
		err = p.nc.Publish(p.subj.ObsPost(p.name), b)
	}
	if err != nil {
		return 0, answeredError, err.Error()
	}
	p.postBytes = len(b)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case m := <-p.beliefs:
			var bel bus.Belief
			if err := bus.UnmarshalFrom(m.Subject, m.Data, &bel, bus.Expect{Latent: p.d}); err != nil {
				return 0, answeredError, err.Error()
			}
			if !names(&bel, p.name, t) {
				continue // a belief of an earlier posterior
			}
			took := time.Since(start)
			p.beliefBytes = len(m.Data)
			// The only expert: its precision exp(−lv) = 1 against the prior's 1.
			if want := p.mu[0] / 2; math.Abs(float64(bel.Mu.Data[0]-want)) > 1e-5 {
				return took, answeredError, fmt.Sprintf("belief mean %v, want %v", bel.Mu.Data[0], want)
			}
			return took, replied, ""
		case <-deadline.C:
			return 0, lost, "no belief named the posterior"
		}
	}
}

// names reports whether belief b fused module's posterior of time t.
func names(b *bus.Belief, module string, t int64) bool {
	for _, s := range b.Sources {
		if s.Module == module && b.Time-s.AgeNs == t {
			return true
		}
	}
	return false
}

// echoer is the raw baseline: request-reply to an echo responder.
type echoer struct {
	nc      *nats.Conn
	subject string
	buf     []byte
}

func (e *echoer) roundTrip(seq int, timeout time.Duration) (time.Duration, outcome, string) {
	binary.LittleEndian.PutUint64(e.buf, uint64(seq))
	start := time.Now()
	m, err := e.nc.Request(e.subject, e.buf, timeout)
	took := time.Since(start)
	if err != nil {
		if errors.Is(err, nats.ErrTimeout) {
			return 0, lost, err.Error()
		}
		return 0, answeredError, err.Error()
	}
	if !bytes.Equal(m.Data, e.buf) {
		return took, answeredError, "the echo is not this request's"
	}
	return took, replied, ""
}

func (l *fusionLatency) add(d time.Duration, o outcome) {
	l.Sent++
	switch o {
	case replied:
		l.Matched++
		l.lat = append(l.lat, d)
	case lost:
		l.Lost++
	default:
		l.Wrong++
	}
}

func (l *fusionLatency) finish() {
	slices.Sort(l.lat)
	n := len(l.lat)
	if n == 0 {
		return
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	rank := func(q float64) float64 { return us(l.lat[min(max(int(math.Ceil(q*float64(n)))-1, 0), n-1)]) }
	var sum time.Duration
	for _, d := range l.lat {
		sum += d
	}
	l.P50, l.P90, l.P99, l.Max, l.Mean = rank(0.5), rank(0.9), rank(0.99), us(l.lat[n-1]), us(sum/time.Duration(n))
}

// fusionRoundTrips measures cfg.N fusion round trips and cfg.N raw ones,
// in alternating blocks.
func fusionRoundTrips(ctx context.Context, srv *bus.Server, cfg fusionConfig) (*fusionRoundTrip, error) {
	const pipeline = "bench-rt"
	_, stopIG, err := benchIntegrator(srv, pipeline, cfg.Latent, cfg.Log)
	if err != nil {
		return nil, err
	}
	defer stopIG()
	subj, _ := bus.NewSubjects(pipeline)
	p := &probe{name: "probe", d: cfg.Latent, subj: subj, beliefs: make(chan *nats.Msg, 64),
		mu: make([]float32, cfg.Latent), lv: make([]float32, cfg.Latent)}
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	connect := func(name string) (*nats.Conn, error) {
		nc, err := fusionConnect(srv, name, cfg.Log)
		if err == nil {
			conns = append(conns, nc)
		}
		return nc, err
	}
	if p.nc, err = connect("serket-probe"); err != nil {
		return nil, err
	}
	// As module/stream.go hears beliefs: a callback hands each message on.
	if _, err := p.nc.Subscribe(subj.Belief(), func(m *nats.Msg) { p.beliefs <- m }); err != nil {
		return nil, fmt.Errorf("subscribe to beliefs: %w", err)
	}
	if err := p.nc.Flush(); err != nil {
		return nil, err
	}
	// The posterior's size, for the raw payload.
	probeBytes, err := bus.Marshal(&bus.Posterior{Header: bus.Header{Sender: p.name}, Time: time.Now().UnixNano(),
		Mu: bus.Matrix(1, cfg.Latent, p.mu), LogVar: bus.Matrix(1, cfg.Latent, p.lv)})
	if err != nil {
		return nil, err
	}
	responder, err := connect("echo-responder")
	if err != nil {
		return nil, err
	}
	e := &echoer{subject: "_serket.bench.echo." + nuid.Next(), buf: make([]byte, max(len(probeBytes), 8))}
	if _, err := responder.Subscribe(e.subject, func(m *nats.Msg) { m.Respond(m.Data) }); err != nil {
		return nil, fmt.Errorf("echo responder: %w", err)
	}
	if err := responder.Flush(); err != nil {
		return nil, err
	}
	if e.nc, err = connect("echo-requester"); err != nil {
		return nil, err
	}
	rt := &fusionRoundTrip{N: cfg.N, Latent: cfg.Latent, Block: cfg.Block}
	type party func(seq int, timeout time.Duration) (time.Duration, outcome, string)
	var firstErr error
	block := func(f party, l *fusionLatency, seq0, n int) {
		for i := range n {
			d, o, why := f(seq0+i, cfg.Timeout)
			if l != nil {
				l.add(d, o)
			}
			if o != replied && firstErr == nil {
				firstErr = fmt.Errorf("%w: round trip %d: %s", errFusion, seq0+i, why)
			}
		}
	}
	// A block of each to warm up connections, caches and the scheduler.
	block(p.roundTrip, nil, 0, min(cfg.Block, cfg.N))
	block(e.roundTrip, nil, 0, min(cfg.Block, cfg.N))
	firstErr = nil
	for done := 0; done < cfg.N; {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		n := min(cfg.Block, cfg.N-done)
		block(p.roundTrip, &rt.Serket, cfg.Block+done, n)
		block(e.roundTrip, &rt.Raw, cfg.Block+done, n)
		done += n
	}
	if firstErr != nil {
		rt.FirstError = firstErr.Error()
	}
	rt.Serket.finish()
	rt.Raw.finish()
	rt.PosteriorBytes, rt.BeliefBytes = p.postBytes, p.beliefBytes
	if rt.Raw.P50 > 0 {
		rt.P50Ratio = rt.Serket.P50 / rt.Raw.P50
	}
	if rt.Raw.P99 > 0 {
		rt.P99Ratio = rt.Serket.P99 / rt.Raw.P99
	}
	return rt, nil
}

// fusionSlices splits a cell's measured time into slices of at most half
// a second.
func fusionSlices(total time.Duration) (int, time.Duration) {
	n := max(1, int((total+fusionSliceMax-1)/fusionSliceMax))
	return n, total / time.Duration(n)
}

const fusionSliceMax = 500 * time.Millisecond

// fusionWarmup is how long a slice runs before it is measured.
func fusionWarmup(slice time.Duration) time.Duration { return min(slice/4, 100*time.Millisecond) }

// fusionTable measures every cell of the throughput table for cfg.Duration
// in all, in slices taken round-robin over the cells, so that a change in
// the machine's load falls on every cell alike rather than on whichever
// ran then.
func fusionTable(ctx context.Context, srv *bus.Server, cfg fusionConfig) ([]fusionCell, error) {
	var cells []fusionCell
	for _, m := range cfg.Modules {
		for _, d := range cfg.Latents {
			cells = append(cells, fusionCell{Modules: m, Latent: d})
		}
	}
	n, slice := fusionSlices(cfg.Duration)
	for range n {
		for i := range cells {
			c := &cells[i]
			s, err := fusionThroughput(ctx, srv, cfg, c.Modules, c.Latent, slice)
			if err != nil {
				return nil, err
			}
			cfg.Log.Debug("throughput slice", "modules", c.Modules, "latent", c.Latent, "beliefs", s.Beliefs, "posteriors", s.Posteriors, "seconds", s.Seconds)
			c.Seconds += s.Seconds
			c.Beliefs += s.Beliefs
			c.Posteriors += s.Posteriors
			c.Stalls += s.Stalls
			c.Refused += s.Refused
		}
	}
	for i := range cells {
		c := &cells[i]
		c.BeliefsPerSec = float64(c.Beliefs) / c.Seconds
		c.PosteriorsPerSec = float64(c.Posteriors) / c.Seconds
		if c.Beliefs > 0 {
			c.PerBelief = float64(c.Posteriors) / float64(c.Beliefs)
			c.UsPerBelief = 1e6 * c.Seconds / float64(c.Beliefs)
		}
	}
	return cells, nil
}

// fusionThroughput runs one slice of a cell: m modules of latent size d in
// closed loops against a fresh integrator, measured for dur after a
// warm-up. It fills in the counts and the seconds.
func fusionThroughput(ctx context.Context, srv *bus.Server, cfg fusionConfig, m, d int, dur time.Duration) (*fusionCell, error) {
	pipeline := fmt.Sprintf("bench-m%d-d%d", m, d)
	ig, stopIG, err := benchIntegrator(srv, pipeline, d, cfg.Log)
	if err != nil {
		return nil, err
	}
	defer stopIG()
	subj, _ := bus.NewSubjects(pipeline)
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	names := make([]string, m)
	index := make(map[string]int, m)
	pending := make([]atomic.Int64, m) // each module's posterior awaiting a belief (0: none)
	acks := make([]chan struct{}, m)
	for i := range names {
		names[i] = fmt.Sprintf("m%02d", i)
		index[names[i]] = i
		acks[i] = make(chan struct{}, 1)
	}
	listener, err := fusionConnect(srv, "belief-listener", cfg.Log)
	if err != nil {
		return nil, err
	}
	conns = append(conns, listener)
	var badBeliefs atomic.Int64
	sub, err := listener.Subscribe(subj.Belief(), func(msg *nats.Msg) {
		var b bus.Belief
		if bus.UnmarshalFrom(msg.Subject, msg.Data, &b, bus.Expect{Latent: d}) != nil {
			badBeliefs.Add(1)
			return
		}
		for _, s := range b.Sources {
			i, ok := index[s.Module]
			// Once only: later beliefs name the same posterior until the
			// module's next one replaces it.
			if ok && pending[i].CompareAndSwap(b.Time-s.AgeNs, 0) {
				select {
				case acks[i] <- struct{}{}:
				default: // the module gave up on an earlier one: it is not waiting for this
				}
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to beliefs: %w", err)
	}
	sub.SetPendingLimits(-1, -1)
	if err := listener.Flush(); err != nil {
		return nil, err
	}
	mods := make([]*nats.Conn, m)
	for i := range mods {
		if mods[i], err = fusionConnect(srv, "serket-"+names[i], cfg.Log); err != nil {
			return nil, err
		}
		conns = append(conns, mods[i])
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	var stalls atomic.Int64
	var firstErr atomic.Pointer[error]
	for i := range mods {
		wg.Go(func() {
			mu, lv := make([]float32, d), make([]float32, d)
			for j := range mu {
				mu[j], lv[j] = float32(i)/float32(m), -float32(j%4)
			}
			subject := subj.ObsPost(names[i])
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			var last int64
			for runCtx.Err() == nil {
				t := max(time.Now().UnixNano(), last+1)
				last = t
				pending[i].Store(t)
				post := &bus.Posterior{Time: t, Mu: bus.Matrix(1, d, mu), LogVar: bus.Matrix(1, d, lv)}
				post.SetSender(names[i])
				b, err := bus.Marshal(post)
				if err == nil {
					err = mods[i].Publish(subject, b)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				timer.Reset(cfg.Timeout)
				select {
				case <-acks[i]:
				case <-timer.C:
					stalls.Add(1)
				case <-runCtx.Done():
					return
				}
			}
		})
	}
	warm := fusionWarmup(dur)
	sleep := func(dur time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(dur):
			return true
		}
	}
	if !sleep(warm) {
		stop()
		wg.Wait()
		return nil, ctx.Err()
	}
	s0, t0 := ig.StreamStats(), time.Now()
	stalls.Store(0)
	ok := sleep(dur)
	s1, t1 := ig.StreamStats(), time.Now()
	stop()
	wg.Wait()
	if !ok {
		return nil, ctx.Err()
	}
	if p := firstErr.Load(); p != nil {
		return nil, fmt.Errorf("%w: a module of the %d×%d cell: %v", errFusion, m, d, *p)
	}
	c := &fusionCell{Modules: m, Latent: d, Seconds: t1.Sub(t0).Seconds(),
		Beliefs: s1.Beliefs - s0.Beliefs, Posteriors: s1.Posteriors - s0.Posteriors, Stalls: int(stalls.Load())}
	for _, counts := range []map[string]uint64{s1.Rejected, s1.OutOfOrder, s1.Future, s1.Expired} {
		for _, n := range counts {
			c.Refused += n
		}
	}
	c.Refused += uint64(badBeliefs.Load())
	return c, nil
}

// fitGrowth fits log2 cost = a + M·log2 modules + L·log2 latent over the
// cells by least squares, for the wall time per belief and per posterior.
func fitGrowth(cells []fusionCell) *fusionGrowth {
	var xs [][2]float64
	var yb, yp []float64
	ms, ds := map[int]bool{}, map[int]bool{}
	for _, c := range cells {
		if c.Beliefs == 0 || c.Posteriors == 0 {
			continue
		}
		xs = append(xs, [2]float64{math.Log2(float64(c.Modules)), math.Log2(float64(c.Latent))})
		yb = append(yb, math.Log2(c.Seconds/float64(c.Beliefs)))
		yp = append(yp, math.Log2(c.Seconds/float64(c.Posteriors)))
		ms[c.Modules], ds[c.Latent] = true, true
	}
	if len(ms) < 2 && len(ds) < 2 {
		return nil
	}
	g := &fusionGrowth{Modules: len(ms) > 1, Latents: len(ds) > 1}
	g.BeliefModulesExp, g.BeliefLatentExp = fit2(xs, yb, g.Modules, g.Latents)
	g.PosteriorModulesExp, g.PosteriorLatentExp = fit2(xs, yp, g.Modules, g.Latents)
	return g
}

// fit2 is the least-squares fit y = a + b0·x0 + b1·x1, with a variable
// that does not vary left out (its coefficient 0).
func fit2(xs [][2]float64, y []float64, use0, use1 bool) (b0, b1 float64) {
	n := float64(len(y))
	var m0, m1, my float64
	for i := range y {
		m0 += xs[i][0] / n
		m1 += xs[i][1] / n
		my += y[i] / n
	}
	var s00, s01, s11, s0y, s1y float64
	for i := range y {
		a, b, c := xs[i][0]-m0, xs[i][1]-m1, y[i]-my
		s00, s01, s11, s0y, s1y = s00+a*a, s01+a*b, s11+b*b, s0y+a*c, s1y+b*c
	}
	switch {
	case use0 && use1:
		det := s00*s11 - s01*s01
		if det == 0 {
			return 0, 0
		}
		return (s11*s0y - s01*s1y) / det, (s00*s1y - s01*s0y) / det
	case use0:
		return s0y / s00, 0
	case use1:
		return 0, s1y / s11
	}
	return 0, 0
}

// check is nil when every round trip was matched and the throughput cells
// ran clean.
func (r *fusionResult) check() error {
	var errs []error
	for _, k := range []struct {
		name string
		l    fusionLatency
	}{{"fusion round trip", r.RoundTrip.Serket}, {"raw round trip", r.RoundTrip.Raw}} {
		if k.l.Matched != k.l.Sent || k.l.Sent != r.RoundTrip.N {
			errs = append(errs, fmt.Errorf("%w: %s: %d of %d matched (%d lost, %d wrong)", errFusion, k.name, k.l.Matched, r.RoundTrip.N, k.l.Lost, k.l.Wrong))
		}
	}
	if len(errs) > 0 && r.RoundTrip.FirstError != "" {
		errs = append(errs, errors.New(r.RoundTrip.FirstError))
	}
	for _, c := range r.Throughput {
		if c.Beliefs == 0 || c.Stalls > 0 || c.Refused > 0 {
			errs = append(errs, fmt.Errorf("%w: %d modules × latent %d: %d beliefs, %d stalls, %d posteriors refused", errFusion, c.Modules, c.Latent, c.Beliefs, c.Stalls, c.Refused))
		}
	}
	return errors.Join(errs...)
}

func (r *fusionResult) print(w io.Writer) error {
	fmt.Fprintf(w, "serket bench fusion: embedded nats-server on %s (TCP loopback); the integrator, each module and each side of the raw echo on its own connection, as separate processes would be (all in this one process: %d CPUs, GOMAXPROCS %d)\n", r.Server, r.CPUs, r.GOMAXPROCS)
	if r.LoadBefore != "" {
		fmt.Fprintf(w, "load average (1, 5, 15 min): %s at the start, %s at the end\n", r.LoadBefore, r.LoadAfter)
	}
	rt := r.RoundTrip
	fmt.Fprintf(w, "\nround trip, latent %d: posterior (%d bytes) → integrator fuses (MinPeriod 0) → belief (%d bytes) → the module decodes the one naming its posterior;\n", rt.Latent, rt.PosteriorBytes, rt.BeliefBytes)
	fmt.Fprintf(w, "raw: NATS request-reply of %d bytes to an echo responder; %d of each, one in flight, interleaved in blocks of %d after one block of each not counted\n\n", rt.PosteriorBytes, rt.N, rt.Block)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tserket fusion\traw NATS\tserket/raw\t")
	fmt.Fprintf(tw, "matched\t%d/%d\t%d/%d\t\t\n", rt.Serket.Matched, rt.Serket.Sent, rt.Raw.Matched, rt.Raw.Sent)
	row := func(label string, a, b float64, ratio bool) {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t", label, a, b)
		if ratio && b > 0 {
			fmt.Fprintf(tw, "%.2f×", a/b)
		}
		fmt.Fprintln(tw, "\t")
	}
	row("p50 (µs)", rt.Serket.P50, rt.Raw.P50, true)
	row("p90 (µs)", rt.Serket.P90, rt.Raw.P90, true)
	row("p99 (µs)", rt.Serket.P99, rt.Raw.P99, true)
	row("max (µs)", rt.Serket.Max, rt.Raw.Max, true)
	row("mean (µs)", rt.Serket.Mean, rt.Raw.Mean, true)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "p50 ratio serket/raw %.2f×, p99 ratio %.2f×\n", rt.P50Ratio, rt.P99Ratio)
	if len(r.Throughput) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nstreaming fusion throughput: each module in a closed loop (publish a posterior, wait for a belief naming it, publish the next),\n")
	fmt.Fprintf(w, "so at most one posterior per module is in flight, nothing queues, and the integrator sets the pace; rates are its own counters,\n")
	fmt.Fprintf(w, "each cell over %d slices of %v (a fresh integrator and modules each, after %v of warm-up) taken round-robin over the cells\n\n", r.Slices, r.Slice, fusionWarmup(r.Slice))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "modules\tlatent\tbeliefs/s\tposteriors/s\tposteriors/belief\tµs/belief\tstalls\trefused\t")
	for _, c := range r.Throughput {
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.0f\t%.2f\t%.1f\t%d\t%d\t\n", c.Modules, c.Latent, c.BeliefsPerSec, c.PosteriorsPerSec, c.PerBelief, c.UsPerBelief, c.Stalls, c.Refused)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if g := r.Growth; g != nil {
		per := func(exp float64) string { return fmt.Sprintf("×%.2f", math.Exp2(exp)) }
		var parts []string
		if g.Latents {
			parts = append(parts, fmt.Sprintf("per doubling of the latent, time per belief %s and per posterior %s (latent^%.2f, ^%.2f)",
				per(g.BeliefLatentExp), per(g.PosteriorLatentExp), g.BeliefLatentExp, g.PosteriorLatentExp))
		}
		if g.Modules {
			parts = append(parts, fmt.Sprintf("per doubling of the modules, time per belief %s and per posterior %s (modules^%.2f, ^%.2f)",
				per(g.BeliefModulesExp), per(g.PosteriorModulesExp), g.BeliefModulesExp, g.PosteriorModulesExp))
		}
		fmt.Fprintf(w, "cost growth (least-squares fit over the table): %s\n", strings.Join(parts, ";\n  "))
	}
	return nil
}
