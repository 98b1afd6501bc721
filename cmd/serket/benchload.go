package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"image"
	"image/png"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"
	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/eval"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/audio"
	"github.com/serket-go/serket/modules/language"
	"github.com/serket-go/serket/modules/vision"
)

func newBenchLoadCmd(g *globals) *cobra.Command {
	cfg := loadConfig{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "load",
		Short: "drive the inference service from many concurrent clients and account for every reply",
		Long: `Send inference requests from --clients concurrent clients (each its own
goroutine, sharing --conns NATS connections) for --duration after a
--warmup that is not counted, and report throughput (ok replies/s), the
latency of the ok replies (p50, p90, p99, max) and every request's fate.

Every request sent is accounted for: replied ok (the reply decodes, every
--from module contributed, every --to module rendered one output, and the
fused mean is the one this request's item gave before, so a crossed reply
is caught), answered with an error (counted by kind), or lost (no reply
within --timeout). The command fails if a request was lost or the counts do
not add up.

The requests carry real test-split items of the prepared dataset (--data):
the caption as text, the image as a PNG, the utterance as a WAV (its
log-mel features inverted by Griffin-Lim, as the audio module renders).

With no --nats, the whole pipeline runs in this process on an embedded
NATS server on a random loopback port: the vision, language and audio
modules with fresh weights (or --checkpoint DIR) and an integrator. With
--nats URL, it drives a pipeline that is already running (serket up).

--baseline also measures, in the same run, a raw NATS request-reply echo of
a payload of the inference request's size, by the same clients over the
same connections, and reports the p50 ratio serket/raw. The integrator's
and modules' own counters ($SRV.STATS) give the server-side view.`,
		Example: `  serket bench load --duration 10s --clients 32
  serket bench load --checkpoint out/demo/run --from vision --to language --json
  serket bench load --nats nats://127.0.0.1:4222 --clients 8   # a pipeline started by serket up`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg.Log = g.logger("bench-load")
			cfg.URL, cfg.Pipeline = g.natsURL, g.pipeline
			cfg.Conn = func(name string) bus.ConnConfig { return g.conn(name, cfg.Log) }
			ctx, cancel := signalContext()
			defer cancel()
			res, err := runLoad(ctx, cfg)
			if err != nil {
				return err
			}
			return reportBench(os.Stdout, res, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Data, "data", dataset.DefaultDir(), "prepared dataset (the request payloads come from its test split)")
	f.StringVar(&cfg.Checkpoint, "checkpoint", "", "serve the checkpoints in this directory (default: fresh weights; not with --nats)")
	f.IntVar(&cfg.Latent, "latent", 64, "latent size of the model")
	f.IntVar(&cfg.Hidden, "hidden", 512, "hidden units per layer of the model")
	f.IntVar(&cfg.Clients, "clients", 32, "concurrent clients, each a goroutine with one request in flight")
	f.IntVar(&cfg.Conns, "conns", 4, "NATS connections the clients share (at most one per client)")
	f.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send requests (per phase)")
	f.DurationVar(&cfg.Warmup, "warmup", time.Second, "sending before the measured window (not counted)")
	f.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "how long a request may wait for its reply before it counts as lost")
	f.StringSliceVar(&cfg.From, "from", dataset.Modalities(), "modalities whose observations the requests carry (none: the prior)")
	f.StringSliceVar(&cfg.To, "to", nil, "modalities to decode (default none: fusion only)")
	f.IntVar(&cfg.Items, "items", 32, "test items the requests cycle through (their WAVs are rendered first, ~0.1 s each)")
	f.BoolVar(&cfg.Baseline, "baseline", true, "also measure a raw NATS request-reply echo of the same size, for comparison")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// loadConfig is one run of serket bench load.
type loadConfig struct {
	URL      string // the NATS server of a running pipeline; "" runs one in this process
	Pipeline string
	Conn     func(name string) bus.ConnConfig // the connection settings for URL (nil: the defaults)
	Log      *slog.Logger

	Data, Checkpoint string
	Latent, Hidden   int

	Clients, Conns            int
	Duration, Warmup, Timeout time.Duration
	From, To                  []string
	Items                     int
	Baseline                  bool
}

// loadResult is what a run measured. Latencies are in milliseconds.
type loadResult struct {
	Target       string         `json:"target"` // the NATS URL, and whether the pipeline ran in this process
	Embedded     bool           `json:"embedded"`
	Checkpoint   string         `json:"checkpoint,omitempty"`
	Clients      int            `json:"clients"`
	Conns        int            `json:"conns"`
	From         []string       `json:"from"`
	To           []string       `json:"to"`
	Items        int            `json:"items"`
	RequestBytes int            `json:"request_bytes"` // mean size of an inference request
	Warmup       loadPhase      `json:"warmup"`
	Inference    loadPhase      `json:"inference"`
	BaselineWarm *loadPhase     `json:"baseline_warmup,omitempty"`
	Baseline     *loadPhase     `json:"baseline,omitempty"`
	P50Ratio     float64        `json:"p50_ratio,omitempty"` // inference p50 / baseline p50
	Server       []endpointLoad `json:"server,omitempty"`
	// ServerRequests is the integrator's infer requests over warm-up and
	// window as its own counters tell (-1: unknown), to set against the
	// requests sent.
	ServerRequests int `json:"server_requests"`
}

// loadPhase is the fate of every request of one phase.
type loadPhase struct {
	Sent       int            `json:"sent"`
	OK         int            `json:"ok"`
	Errors     int            `json:"errors"` // answered with an error, or with a reply that is not this request's
	Lost       int            `json:"lost"`   // no reply within the timeout
	ErrorKinds map[string]int `json:"error_kinds,omitempty"`
	LostKinds  map[string]int `json:"lost_kinds,omitempty"`
	Seconds    float64        `json:"seconds"` // from the window's start to the last reply of a request sent in it
	PerSec     float64        `json:"ok_per_sec"`
	Latency    latencyMs      `json:"latency_ms"` // of the ok replies

	lat []time.Duration
}

// latencyMs are nearest-rank percentiles in milliseconds.
type latencyMs struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// endpointLoad is one endpoint's own counters over warm-up and window.
type endpointLoad struct {
	Service  string  `json:"service"`
	Endpoint string  `json:"endpoint"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	MeanMs   float64 `json:"mean_ms"` // mean time in the handler
	Busy     float64 `json:"busy"`    // time in the handler over the wall time (1: always busy)
}

// outcome is the fate of one request.
type outcome uint8

const (
	replied outcome = iota
	answeredError
	lost
)

// shot sends one request of client c (its seq-th) and waits for the reply.
type shot func(ctx context.Context, nc *nats.Conn, c, seq int) (outcome, string)

// errLoad marks a run that lost a request or whose counts do not add up.
var errLoad = errors.New("bench load")

func (cfg *loadConfig) validate() error {
	switch {
	case cfg.Clients < 1 || cfg.Clients > 100_000:
		return usagef("--clients %d: want 1 to 100000", cfg.Clients)
	case cfg.Conns < 1:
		return usagef("--conns %d: want at least 1", cfg.Conns)
	case cfg.Duration <= 0 || cfg.Warmup < 0 || cfg.Timeout <= 0:
		return usagef("--duration and --timeout must be positive, --warmup not negative")
	case cfg.URL != "" && cfg.Checkpoint != "":
		return usagef("--checkpoint serves a model in this process; with --nats %s the pipeline is already running", cfg.URL)
	case cfg.Items < 1:
		return usagef("--items %d: want at least 1", cfg.Items)
	}
	cfg.Conns = min(cfg.Conns, cfg.Clients)
	var err error
	if cfg.From, err = modalityList("from", cfg.From); err != nil {
		return err
	}
	cfg.To, err = modalityList("to", cfg.To)
	return err
}

// modalityList sorts a --from or --to list, refusing names that are not
// the dataset's modalities; "none" is the empty list.
func modalityList(flag string, names []string) ([]string, error) {
	if len(names) == 1 && names[0] == "none" {
		return nil, nil
	}
	out := slices.Clone(names)
	slices.Sort(out)
	for i, n := range out {
		if !slices.Contains(dataset.Modalities(), n) {
			return nil, usagef("--%s %q: want some of %s, or none", flag, n, strings.Join(dataset.Modalities(), ", "))
		}
		if i > 0 && out[i-1] == n {
			return nil, usagef("--%s names %s twice", flag, n)
		}
	}
	return out, nil
}

// runLoad runs the inference phase and, with cfg.Baseline, the echo phase.
func runLoad(ctx context.Context, cfg loadConfig) (*loadResult, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t0 := time.Now()
	m, err := eval.Open(cfg.Data, cfg.Latent, cfg.Hidden)
	if err != nil {
		return nil, err
	}
	log.Debug("dataset and model open", "took", time.Since(t0).Round(time.Millisecond))
	res := &loadResult{Clients: cfg.Clients, Conns: cfg.Conns, From: cfg.From, To: cfg.To, ServerRequests: -1}
	// The payloads first: the modalities are not yet serving.
	t0 = time.Now()
	items, err := loadItems(m, cfg.From, cfg.Items)
	if err != nil {
		return nil, err
	}
	res.Items = len(items)
	log.Info("request payloads ready", "items", len(items), "from", cfg.From, "took", time.Since(t0).Round(time.Millisecond))
	url := cfg.URL
	if url == "" {
		if cfg.Checkpoint != "" {
			if err := m.Restore(cfg.Checkpoint); err != nil {
				return nil, err
			}
			res.Checkpoint = cfg.Checkpoint
		}
		srv, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1"})
		if err != nil {
			return nil, err
		}
		defer srv.Shutdown()
		url = srv.ClientURL()
		opts := map[string]module.Options{}
		for _, name := range m.Names() {
			opts[name] = module.Options{Pipeline: cfg.Pipeline}
		}
		// The pipeline outlives an interrupt until the requests in flight
		// are answered: only the deferred stop ends it.
		stop, err := m.Serve(context.WithoutCancel(ctx), url, opts, &integrator.Config{Pipeline: cfg.Pipeline})
		if err != nil {
			return nil, fmt.Errorf("the in-process pipeline: %w", err)
		}
		defer stop()
		res.Embedded = true
	}
	res.Target = url

	conns := make([]*nats.Conn, cfg.Conns)
	for i := range conns {
		cc := bus.ConnConfig{}
		if cfg.Conn != nil && !res.Embedded {
			cc = cfg.Conn(fmt.Sprintf("serket-bench-load-%d", i))
		}
		cc.URL, cc.Name = url, fmt.Sprintf("serket-bench-load-%d", i)
		if cc.Logger == nil {
			cc.Logger = log
		}
		nc, err := bus.Connect(cc)
		if err != nil {
			return nil, err
		}
		defer nc.Close()
		conns[i] = nc
	}
	c, err := client.New(conns[0], cfg.Pipeline, "bench-load")
	if err != nil {
		return nil, err
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = c.WaitFor(wctx, true, append(slices.Clone(cfg.From), cfg.To...)...)
	wcancel()
	if err != nil {
		return nil, err
	}

	ib, err := newInferBench(cfg, items, c.Subjects().Infer(), conns[0].MaxPayload())
	if err != nil {
		return nil, err
	}
	res.RequestBytes = ib.meanBytes()
	pipeline := cfg.Pipeline
	if pipeline == "" {
		pipeline = bus.DefaultPipeline
	}
	before, _ := bus.Discover(ctx, conns[0], bus.DiscoverConfig{Pipeline: pipeline, Window: 200 * time.Millisecond, Stats: true})
	start := time.Now()
	log.Info("inference", "clients", cfg.Clients, "conns", cfg.Conns, "warmup", cfg.Warmup, "duration", cfg.Duration)
	res.Warmup, res.Inference = runPhase(ctx, cfg, conns, ib.shoot)
	res.Server, res.ServerRequests = serverView(context.WithoutCancel(ctx), conns[0], pipeline, before, time.Since(start), res.Warmup.Sent+res.Inference.Sent, res.Embedded)

	if cfg.Baseline && ctx.Err() == nil {
		log.Info("baseline: raw NATS echo", "bytes", res.RequestBytes)
		eb, err := newEchoBench(conns, cfg.Clients, res.RequestBytes)
		if err != nil {
			return nil, err
		}
		warm, base := runPhase(ctx, cfg, conns, eb.shoot)
		eb.stop()
		res.BaselineWarm, res.Baseline = &warm, &base
		if base.Latency.P50 > 0 {
			res.P50Ratio = res.Inference.Latency.P50 / base.Latency.P50
		}
	}
	return res, nil
}

// runPhase drives shoot from cfg.Clients goroutines, client i on
// conns[i%len(conns)], for cfg.Warmup then cfg.Duration, and waits for every
// request in flight. Once ctx is done no request is sent, but those in
// flight still get their full timeout: stopping early loses no reply.
func runPhase(ctx context.Context, cfg loadConfig, conns []*nats.Conn, shoot shot) (warm, window loadPhase) {
	begin := time.Now()
	from := begin.Add(cfg.Warmup)
	end := from.Add(cfg.Duration)
	type tally struct {
		warm, window loadPhase
		last         time.Time // the last reply of a request sent in the window
	}
	tallies := make([]tally, cfg.Clients)
	var wg sync.WaitGroup
	for i := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := &tallies[i]
			nc := conns[i%len(conns)]
			for seq := 0; ctx.Err() == nil; seq++ {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				p := &t.warm
				if !t0.Before(from) {
					p = &t.window
				}
				p.Sent++
				rctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
				o, kind := shoot(rctx, nc, i, seq)
				cancel()
				done := time.Now()
				p.add(o, kind, done.Sub(t0))
				if p == &t.window {
					t.last = done
				}
			}
		}()
	}
	wg.Wait()
	var last time.Time
	for i := range tallies {
		warm.merge(&tallies[i].warm)
		window.merge(&tallies[i].window)
		if tallies[i].last.After(last) {
			last = tallies[i].last
		}
	}
	if last.After(from) {
		window.Seconds = last.Sub(from).Seconds()
	}
	warm.Seconds = min(time.Since(begin), cfg.Warmup).Seconds()
	warm.finish()
	window.finish()
	return warm, window
}

func (p *loadPhase) add(o outcome, kind string, d time.Duration) {
	switch o {
	case replied:
		p.OK++
		p.lat = append(p.lat, d)
	case answeredError:
		p.Errors++
		p.ErrorKinds = inc(p.ErrorKinds, kind, 1)
	case lost:
		p.Lost++
		p.LostKinds = inc(p.LostKinds, kind, 1)
	}
}

func inc(m map[string]int, k string, n int) map[string]int {
	if m == nil {
		m = map[string]int{}
	}
	m[k] += n
	return m
}

func (p *loadPhase) merge(q *loadPhase) {
	p.Sent += q.Sent
	p.OK += q.OK
	p.Errors += q.Errors
	p.Lost += q.Lost
	for k, n := range q.ErrorKinds {
		p.ErrorKinds = inc(p.ErrorKinds, k, n)
	}
	for k, n := range q.LostKinds {
		p.LostKinds = inc(p.LostKinds, k, n)
	}
	p.lat = append(p.lat, q.lat...)
}

// finish sorts the latencies and computes the figures.
func (p *loadPhase) finish() {
	if p.Seconds > 0 {
		p.PerSec = float64(p.OK) / p.Seconds
	}
	slices.Sort(p.lat)
	n := len(p.lat)
	if n == 0 {
		return
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	rank := func(q float64) float64 { return ms(p.lat[min(max(int(math.Ceil(q*float64(n)))-1, 0), n-1)]) }
	var sum time.Duration
	for _, d := range p.lat {
		sum += d
	}
	p.Latency = latencyMs{P50: rank(0.5), P90: rank(0.9), P99: rank(0.99), Max: ms(p.lat[n-1]), Mean: ms(sum / time.Duration(n))}
}

// check is nil when every request of every phase is accounted for and none
// was lost.
func (r *loadResult) check() error {
	phases := []struct {
		name string
		p    *loadPhase
	}{{"warm-up", &r.Warmup}, {"inference", &r.Inference}, {"baseline warm-up", r.BaselineWarm}, {"baseline", r.Baseline}}
	var errs []error
	for _, ph := range phases {
		p := ph.p
		if p == nil {
			continue
		}
		if p.Sent != p.OK+p.Errors+p.Lost {
			errs = append(errs, fmt.Errorf("%w: %s: sent %d ≠ ok %d + errors %d + lost %d", errLoad, ph.name, p.Sent, p.OK, p.Errors, p.Lost))
		}
		if p.Lost > 0 {
			errs = append(errs, fmt.Errorf("%w: %s: %d of %d requests lost (%s)", errLoad, ph.name, p.Lost, p.Sent, kinds(p.LostKinds)))
		}
	}
	if r.Inference.Sent == 0 {
		errs = append(errs, fmt.Errorf("%w: no inference request was sent", errLoad))
	}
	if sent := r.Warmup.Sent + r.Inference.Sent; r.Embedded && r.ServerRequests != sent {
		errs = append(errs, fmt.Errorf("%w: the integrator counted %d inference requests, %d were sent", errLoad, r.ServerRequests, sent))
	}
	return errors.Join(errs...)
}

func kinds(m map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%d× %s", m[k], k))
	}
	return strings.Join(parts, "; ")
}

// item is one test item's request, marshalled once.
type item struct {
	id  uint64
	obs map[string]bus.Payload
}

// loadItems reads n test items spread over the test split and turns their
// observations into what a person would send: text, a PNG, a WAV.
func loadItems(m *eval.Model, from []string, n int) ([]item, error) {
	test := m.Manifest.InSplit(dataset.Test)
	if len(test) == 0 {
		return nil, fmt.Errorf("%s: no test items", m.Data)
	}
	n = min(n, len(test))
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = test[i*len(test)/n].ID
	}
	items := make([]item, n)
	for i, id := range ids {
		items[i] = item{id: id, obs: map[string]bus.Payload{}}
	}
	for _, name := range from {
		x, _, err := m.Modality(name).(module.Loader).LoadBatch(ids)
		if err != nil {
			return nil, err
		}
		var p []bus.Payload
		switch x := x.(type) {
		case *vision.Images:
			p, err = pngs(x)
		case *language.Captions:
			p = captions(m.Language.Vocab(), x)
		case *audio.Features:
			p, err = wavs(m.Audio, x)
		default:
			err = fmt.Errorf("%s: a batch of %T", name, x)
		}
		if err != nil {
			return nil, fmt.Errorf("%s observations: %w", name, err)
		}
		for i := range items {
			items[i].obs[name] = p[i]
		}
	}
	return items, nil
}

// pngs encodes each image as a grey PNG, as a camera would send it.
func pngs(x *vision.Images) ([]bus.Payload, error) {
	out := make([]bus.Payload, x.N)
	for i := range out {
		img := image.NewGray(image.Rect(0, 0, vision.Side, vision.Side))
		for j, v := range x.Pix[i*vision.Pixels : (i+1)*vision.Pixels] {
			img.Pix[j] = uint8(255*v + 0.5)
		}
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			return nil, err
		}
		out[i] = bus.Payload{Type: "image/png", Data: b.Bytes()}
	}
	return out, nil
}

// captions turns token ids back into the caption text.
func captions(v *dataset.Vocab, x *language.Captions) []bus.Payload {
	t := len(x.IDs) / x.N
	out := make([]bus.Payload, x.N)
	for i := range out {
		out[i] = bus.Payload{Type: "text/plain; charset=utf-8", Data: []byte(v.Decode(x.IDs[i*t : (i+1)*t]))}
	}
	return out
}

// wavs renders each item's utterance as a WAV from its log-mel features
// (Griffin-Lim, as the audio module renders speech). Items share
// utterances, so each distinct one is rendered once, in parallel.
func wavs(a *audio.Audio, x *audio.Features) ([]bus.Payload, error) {
	f := len(x.X) / x.N
	first := map[uint64]int{} // utterance → the first item that has it
	of := make([]int, x.N)
	for i := range of {
		h := fnv.New64a()
		var b [4]byte
		for _, v := range x.X[i*f : (i+1)*f] {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			h.Write(b[:])
		}
		k := h.Sum64()
		if j, ok := first[k]; ok {
			of[i] = j
			continue
		}
		first[k], of[i] = i, i
	}
	out := make([]bus.Payload, x.N)
	errs := make([]error, x.N)
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for _, i := range first {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			wav, err := a.SpeechWAV(a.Denormalise(nil, x.X[i*f:(i+1)*f]))
			out[i], errs[i] = bus.Payload{Type: "audio/wav", Data: wav}, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i, j := range of {
		out[i] = out[j]
	}
	return out, nil
}

// inferBench sends inference requests and checks their replies.
type inferBench struct {
	subject string
	from    []string
	to      []string
	reqs    [][]byte // one per item

	mu  sync.Mutex
	ref map[int][]float32 // item → the fused mean of its first ok reply
}

func newInferBench(cfg loadConfig, items []item, subject string, maxPayload int64) (*inferBench, error) {
	b := &inferBench{subject: subject, from: cfg.From, to: cfg.To, ref: map[int][]float32{}}
	for _, it := range items {
		req := &bus.InferRequest{Observations: it.obs, Want: cfg.To}
		req.SetSender("bench-load")
		data, err := bus.Marshal(req)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", it.id, err)
		}
		if int64(len(data)) > maxPayload {
			return nil, fmt.Errorf("item %d: a request of %d bytes, the server takes at most %d", it.id, len(data), maxPayload)
		}
		b.reqs = append(b.reqs, data)
	}
	return b, nil
}

func (b *inferBench) meanBytes() int {
	sum := 0
	for _, r := range b.reqs {
		sum += len(r)
	}
	return sum / len(b.reqs)
}

// shoot sends client c's seq-th request: the clients walk the items in
// step, each from its own offset.
func (b *inferBench) shoot(ctx context.Context, nc *nats.Conn, c, seq int) (outcome, string) {
	k := (c + seq) % len(b.reqs)
	msg, err := nc.RequestWithContext(ctx, b.subject, b.reqs[k])
	if o, kind, done := transport(err); done {
		return o, kind
	}
	if desc := msg.Header.Get(micro.ErrorHeader); desc != "" {
		return answeredError, clip(fmt.Sprintf("error reply %s: %s", msg.Header.Get(micro.ErrorCodeHeader), desc))
	}
	var rep bus.InferReply
	if err := bus.UnmarshalFrom(msg.Subject, msg.Data, &rep, bus.Expect{}); err != nil {
		return answeredError, clip("undecodable reply: " + err.Error())
	}
	if kind := b.verify(k, &rep); kind != "" {
		return answeredError, kind
	}
	return replied, ""
}

// verify says what is wrong with a reply to a request of item k ("" if
// nothing): a module that did not take part, outputs that are not the
// ones asked for, or a fused mean other than the one the item gave before
// (a reply meant for another request).
func (b *inferBench) verify(k int, rep *bus.InferReply) string {
	for _, name := range sortedKeys(rep.Missing) {
		return clip(fmt.Sprintf("degraded: %s missing: %s", name, rep.Missing[name]))
	}
	if !slices.Equal(rep.Contributors, b.from) {
		return fmt.Sprintf("mismatch: contributors %v for a request from %v", rep.Contributors, b.from)
	}
	if got := sortedKeys(rep.Outputs); !slices.Equal(got, b.to) && len(got)+len(b.to) > 0 {
		return fmt.Sprintf("mismatch: outputs of %v for a request of %v", got, b.to)
	}
	for _, name := range b.to {
		if n := len(rep.Outputs[name]); n != 1 {
			return fmt.Sprintf("mismatch: %d %s outputs, want 1", n, name)
		}
	}
	if rep.Z.Rows() != 1 {
		return fmt.Sprintf("mismatch: %d latents, want 1", rep.Z.Rows())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ref, ok := b.ref[k]
	if !ok {
		b.ref[k] = slices.Clone(rep.Mu.Data)
		return ""
	}
	if len(ref) != len(rep.Mu.Data) {
		return "mismatch: the fused mean is not this item's"
	}
	for i, v := range ref {
		if d := math.Abs(float64(rep.Mu.Data[i] - v)); d > 1e-4*(1+math.Abs(float64(v))) {
			return "mismatch: the fused mean is not this item's"
		}
	}
	return ""
}

// transport sorts a request's error: done is false when there is a reply
// to look at.
func transport(err error) (o outcome, kind string, done bool) {
	switch {
	case err == nil:
		return replied, "", false
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return lost, "timed out", true
	case errors.Is(err, nats.ErrNoResponders):
		return answeredError, "no responders (no integrator on the subject)", true
	}
	return lost, clip(err.Error()), true
}

// clip keeps error kinds short enough to count and print.
func clip(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 120 {
		return string(r[:119]) + "…"
	}
	return s
}

// echoBench is the baseline: a raw request-reply echo on the same
// connections, one queue-subscribed responder on each.
type echoBench struct {
	subject string
	subs    []*nats.Subscription
	bufs    [][]byte // one per client: its request, stamped with client and seq
}

func newEchoBench(conns []*nats.Conn, clients, size int) (*echoBench, error) {
	e := &echoBench{subject: "_serket.bench.echo." + nuid.Next()}
	for _, nc := range conns {
		sub, err := nc.QueueSubscribe(e.subject, "echo", func(m *nats.Msg) { m.Respond(m.Data) })
		if err != nil {
			e.stop()
			return nil, fmt.Errorf("echo responder: %w", err)
		}
		e.subs = append(e.subs, sub)
	}
	for _, nc := range conns {
		if err := nc.Flush(); err != nil {
			e.stop()
			return nil, err
		}
	}
	size = max(size, 16)
	for i := range clients {
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(i + j)
		}
		e.bufs = append(e.bufs, b)
	}
	return e, nil
}

func (e *echoBench) stop() {
	for _, s := range e.subs {
		s.Unsubscribe()
	}
}

func (e *echoBench) shoot(ctx context.Context, nc *nats.Conn, c, seq int) (outcome, string) {
	b := e.bufs[c]
	binary.LittleEndian.PutUint64(b[0:], uint64(c))
	binary.LittleEndian.PutUint64(b[8:], uint64(seq))
	msg, err := nc.RequestWithContext(ctx, e.subject, b)
	if o, kind, done := transport(err); done {
		return o, kind
	}
	if !bytes.Equal(msg.Data, b) {
		return answeredError, "mismatch: the echo is not this request's"
	}
	return replied, ""
}

// serverView reads the pipeline's endpoint counters again and returns what
// changed since before, over wall, and the integrator's infer requests.
// In this process's own pipeline every request sent must be among them;
// the integrator counts a request once its reply is out, so a reply can
// arrive a moment before its count: it asks again until the counts agree.
func serverView(ctx context.Context, nc *nats.Conn, pipeline string, before []bus.Service, wall time.Duration, sent int, strict bool) ([]endpointLoad, int) {
	if before == nil {
		return nil, -1
	}
	var out []endpointLoad
	infer := -1
	for try := 0; try < 5; try++ {
		after, err := bus.Discover(ctx, nc, bus.DiscoverConfig{Pipeline: pipeline, Window: 200 * time.Millisecond, Stats: true})
		if err != nil {
			return nil, -1
		}
		out, infer = endpointDeltas(before, after, wall)
		if !strict || infer == sent {
			break
		}
	}
	return out, infer
}

func endpointDeltas(before, after []bus.Service, wall time.Duration) ([]endpointLoad, int) {
	type key struct{ id, ep string }
	prev := map[key]*micro.EndpointStats{}
	for _, s := range before {
		if s.Stats == nil {
			continue
		}
		for _, e := range s.Stats.Endpoints {
			prev[key{s.ID, e.Name}] = e
		}
	}
	type agg struct {
		n, errs int
		busy    time.Duration
	}
	sum := map[[2]string]*agg{}
	infer := -1
	for _, s := range after {
		if s.Stats == nil {
			continue
		}
		for _, e := range s.Stats.Endpoints {
			n, errs, busy := e.NumRequests, e.NumErrors, e.ProcessingTime
			if p := prev[key{s.ID, e.Name}]; p != nil {
				n, errs, busy = n-p.NumRequests, errs-p.NumErrors, busy-p.ProcessingTime
			}
			name := e.Name
			if s.Role() == "integrator" && strings.HasPrefix(name, "infer") {
				name = "infer" // one endpoint; older integrators had infer, infer-2, …
			}
			k := [2]string{s.Name, name}
			a := sum[k]
			if a == nil {
				a = &agg{}
				sum[k] = a
			}
			a.n, a.errs, a.busy = a.n+n, a.errs+errs, a.busy+busy
			if s.Role() == "integrator" && name == "infer" {
				infer = max(infer, 0) + n
			}
		}
	}
	var out []endpointLoad
	for k, a := range sum {
		if a.n == 0 {
			continue
		}
		out = append(out, endpointLoad{
			Service: k[0], Endpoint: k[1], Requests: a.n, Errors: a.errs,
			MeanMs: float64(a.busy) / float64(a.n) / float64(time.Millisecond),
			Busy:   a.busy.Seconds() / wall.Seconds(),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Endpoint < out[j].Endpoint
	})
	return out, infer
}

// print writes the result as a table.
func (r *loadResult) print(w io.Writer) error {
	where := r.Target + " (a pipeline already running)"
	if r.Embedded {
		model := "fresh weights"
		if r.Checkpoint != "" {
			model = r.Checkpoint
		}
		where = fmt.Sprintf("embedded NATS on %s, vision, language and audio modules and the integrator in this process, model %s", r.Target, model)
	}
	fmt.Fprintf(w, "serket bench load: %d clients on %d connections, %s\n", r.Clients, r.Conns, where)
	to := strings.Join(r.To, "+")
	if to == "" {
		to = "nothing decoded (fusion only)"
	}
	from := strings.Join(r.From, "+")
	if from == "" {
		from = "no observations (the prior)"
	}
	fmt.Fprintf(w, "requests: %s → %s; %d test items, %d bytes per request (mean)\n", from, to, r.Items, r.RequestBytes)
	fmt.Fprintf(w, "warm-up: %.1f s, %d sent, %d ok, %d errors, %d lost (not counted below)\n\n", r.Warmup.Seconds, r.Warmup.Sent, r.Warmup.OK, r.Warmup.Errors, r.Warmup.Lost)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	cols := []*loadPhase{&r.Inference}
	fmt.Fprint(tw, "\tinference\t")
	if r.Baseline != nil {
		cols = append(cols, r.Baseline)
		fmt.Fprint(tw, "raw NATS echo\t")
	}
	fmt.Fprintln(tw)
	row := func(label string, f func(p *loadPhase) string) {
		fmt.Fprintf(tw, "%s\t", label)
		for _, p := range cols {
			fmt.Fprintf(tw, "%s\t", f(p))
		}
		fmt.Fprintln(tw)
	}
	row("window (s)", func(p *loadPhase) string { return fmt.Sprintf("%.2f", p.Seconds) })
	row("sent", func(p *loadPhase) string { return fmt.Sprint(p.Sent) })
	row("replied ok", func(p *loadPhase) string { return fmt.Sprint(p.OK) })
	row("error replies", func(p *loadPhase) string { return fmt.Sprint(p.Errors) })
	row("lost (timed out)", func(p *loadPhase) string { return fmt.Sprint(p.Lost) })
	row("throughput (ok/s)", func(p *loadPhase) string { return fmt.Sprintf("%.1f", p.PerSec) })
	row("latency p50 (ms)", func(p *loadPhase) string { return fmt.Sprintf("%.3f", p.Latency.P50) })
	row("latency p90 (ms)", func(p *loadPhase) string { return fmt.Sprintf("%.3f", p.Latency.P90) })
	row("latency p99 (ms)", func(p *loadPhase) string { return fmt.Sprintf("%.3f", p.Latency.P99) })
	row("latency max (ms)", func(p *loadPhase) string { return fmt.Sprintf("%.3f", p.Latency.Max) })
	row("latency mean (ms)", func(p *loadPhase) string { return fmt.Sprintf("%.3f", p.Latency.Mean) })
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.P50Ratio > 0 {
		fmt.Fprintf(w, "p50 serket/raw: %.1f×\n", r.P50Ratio)
	}
	for _, ph := range []struct {
		name string
		p    *loadPhase
	}{{"warm-up", &r.Warmup}, {"inference", &r.Inference}, {"baseline", r.Baseline}} {
		if ph.p == nil {
			continue
		}
		for _, k := range sortedKeys(ph.p.ErrorKinds) {
			fmt.Fprintf(w, "%s error: %d× %s\n", ph.name, ph.p.ErrorKinds[k], k)
		}
		for _, k := range sortedKeys(ph.p.LostKinds) {
			fmt.Fprintf(w, "%s lost: %d× %s\n", ph.name, ph.p.LostKinds[k], k)
		}
	}
	if len(r.Server) > 0 {
		fmt.Fprintln(w, "\nserver side, warm-up and inference window ($SRV.STATS):")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "service\tendpoint\trequests\terrors\tmean (ms)\tbusy\t")
		for _, e := range r.Server {
			if e.Service == bus.ServiceName(integrator.Name) {
				// Its endpoint only decodes a request and hands it to a
				// worker: its time says nothing of the inference.
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t(on workers)\t\t\n", e.Service, e.Endpoint, e.Requests, e.Errors)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.3f\t%.0f%%\t\n", e.Service, e.Endpoint, e.Requests, e.Errors, e.MeanMs, 100*e.Busy)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if err := r.check(); err != nil {
		fmt.Fprintf(w, "\naccounting: FAILED\n")
		return nil
	}
	fmt.Fprintf(w, "\naccounting: every request sent was answered (sent = ok + errors + lost, lost = 0)")
	if r.ServerRequests >= 0 {
		fmt.Fprintf(w, "; the integrator counted %d requests, %d sent", r.ServerRequests, r.Warmup.Sent+r.Inference.Sent)
	}
	fmt.Fprintln(w)
	return nil
}
