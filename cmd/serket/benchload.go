package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/serket-go/serket/bench/loadbench"
	"github.com/serket-go/serket/bench/samples"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/fmnist3"
	"github.com/serket-go/serket/procenv"
)

func newBenchLoadCmd(g *globals) *cobra.Command {
	o := loadOpts{}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "load [-f pipeline.yaml]",
		Short: "drive a pipeline's inference service from many concurrent clients and account for every reply",
		Long: `Send inference requests from --clients concurrent clients (each its own
goroutine, sharing --conns NATS connections) for --duration after a
--warmup that is not counted, and report throughput (ok replies/s), the
latency of the ok replies (p50, p90, p99, max) and every request's fate.

Every request sent is accounted for: replied ok (the reply decodes, every
observed module contributed, every decoded module rendered one output, and
the fused mean is the one this request gave before, so a crossed reply is
caught), answered with an error (counted by kind), or lost (no reply within
--timeout). The command fails if a request was lost or the counts do not
add up.

The pipeline is -f FILE's (its modules, name and latent), else the built-in
one: vision, language and audio. --from MODULE=TEXT or MODULE=@FILE gives a
module an input that every request carries (as serket infer takes it);
--from MODULE alone (or a comma-separated list) gives a built-in modality its
sample inputs: --items test items of the prepared dataset (--data), the
caption as text, the image as a PNG, the utterance as a WAV. Without --from,
every built-in modality of the pipeline takes its samples. --to lists the
modules to decode; without it, every module of the pipeline that --from gives
no input is decoded, so that each module is loaded; "none" decodes nothing.

With --nats URL, it loads a pipeline that is already running. Without, it
starts one of its own and stops it at the end: with -f, the file's
integrator and modules as processes, by serket up's launcher, on an
embedded NATS server on a random port (--port); without, the vision,
language and audio modules and an integrator in this process. Either way
the modules serve fresh weights unless --checkpoint DIR (the file's
train.checkpoint_dir is not read: say which model is measured), and read
their data from --data.

--baseline also measures, in the same run, a raw NATS request-reply echo of
a payload of the inference request's size, by the same clients over the
same connections, and reports the p50 ratio serket/raw. The integrator's
and modules' own counters ($SRV.STATS) give the server-side view.`,
		Example: `  serket bench load --duration 10s --clients 32
  serket bench load --checkpoint out/demo/run --from vision --to language --json
  serket bench load -f examples/custom-modality/pipeline.yaml   # touch, a module of its own, decoded
  serket bench load -f examples/custom-modality/pipeline.yaml --from touch=@reading.txt --to vision
  serket bench load --nats nats://127.0.0.1:4222 --clients 8   # a pipeline started by serket up`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.changed, o.file = cmd.Flags().Changed, g.filePath
			o.data = g.dataDir(cmd, o.data)
			ctx, cancel := signalContext()
			defer cancel()
			res, err := o.run(ctx, g, g.logger("bench-load"))
			if err != nil {
				return err
			}
			return reportBench(os.Stdout, res, asJSON, func(w io.Writer) error { return printLoad(w, res) }, res.Check)
		},
	}
	o.register(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// loadOpts are serket bench load's flags.
type loadOpts struct {
	file                      string // -f: its modules, name and latent (default: the built-in vision, language and audio)
	data, checkpoint          string
	latent, hidden, port      int
	from, to                  []string
	items                     int
	clients, conns            int
	duration, warmup, timeout time.Duration
	wait                      time.Duration
	baseline                  bool

	changed func(flag string) bool
}

func (o *loadOpts) register(f *pflag.FlagSet) {
	f.StringVar(&o.data, "data", dataset.DefaultDir(), "prepared dataset: the built-in modalities' sample inputs come from its test split")
	f.StringVar(&o.checkpoint, "checkpoint", "", "serve the checkpoints in this directory (default: fresh weights; not with --nats)")
	f.IntVar(&o.latent, "latent", 64, "latent size (default: the file's, else 64)")
	f.IntVar(&o.hidden, "hidden", 512, "hidden units per layer of the built-in model run in this process (not with -f or --nats)")
	f.IntVar(&o.port, "port", 0, "port of the embedded NATS server of -f's processes (0: random)")
	f.StringArrayVar(&o.from, "from", nil, "MODULE=TEXT, MODULE=@FILE, or built-in MODULE[,MODULE…] for its sample inputs; none: the prior (repeatable; default: every built-in modality's samples)")
	f.StringSliceVar(&o.to, "to", nil, "modules to decode, or none (default: the pipeline's modules --from gives no input)")
	f.IntVar(&o.items, "items", 32, "test items whose sample inputs the requests cycle through (their WAVs are rendered first, ~0.1 s each)")
	f.IntVar(&o.clients, "clients", 32, "concurrent clients, each a goroutine with one request in flight")
	f.IntVar(&o.conns, "conns", 4, "NATS connections the clients share (at most one per client)")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "how long to send requests (per phase)")
	f.DurationVar(&o.warmup, "warmup", time.Second, "sending before the measured window (not counted)")
	f.DurationVar(&o.timeout, "timeout", 5*time.Second, "how long a request may wait for its reply before it counts as lost")
	f.DurationVar(&o.wait, "wait", 30*time.Second, "how long to wait for the pipeline's modules and integrator to be live")
	f.BoolVar(&o.baseline, "baseline", true, "also measure a raw NATS request-reply echo of the same size, for comparison")
}

// run loads the pipeline: one already running at --nats, else one it
// starts and stops.
func (o *loadOpts) run(ctx context.Context, g *globals, log *slog.Logger) (*loadbench.Result, error) {
	p, err := o.pipeline(g)
	if err != nil {
		return nil, err
	}
	reqs, want, err := o.requests(p, log)
	if err != nil {
		return nil, err
	}
	cfg := loadbench.Config{Pipeline: p.Name, Log: log, Requests: reqs, Want: want, Clients: o.clients, Conns: o.conns,
		Duration: o.duration, Warmup: o.warmup, Timeout: o.timeout, Wait: o.wait, Baseline: o.baseline}
	switch {
	case g.natsURL != "":
		cfg.URL, cfg.Setup = g.natsURL, "a pipeline already running"
		cfg.Conn = func(name string) bus.ConnConfig { return g.conn(name, log) }
		return loadbench.Run(ctx, cfg)
	case o.file == "":
		url, stop, err := o.startBuiltins(ctx, p.Name)
		if err != nil {
			return nil, err
		}
		defer stop()
		cfg.URL, cfg.Owned, cfg.Setup = url, true, fmt.Sprintf("vision, language and audio modules and the integrator in this process, %s", o.model())
		return loadbench.Run(ctx, cfg)
	}
	return o.loadProcesses(ctx, g, p, cfg, log)
}

// pipeline is -f's pipeline or the built-in one, with the name and latent
// the flags give (a flag or $SERKET_PIPELINE wins over the file).
func (o *loadOpts) pipeline(g *globals) (*launch.Pipeline, error) {
	switch {
	case o.changed("hidden") && (o.file != "" || g.natsURL != ""):
		return nil, usagef("--hidden sizes the built-in model run in this process; a pipeline file's modules take theirs from their args")
	case o.checkpoint != "" && g.natsURL != "":
		return nil, usagef("--checkpoint serves a model this command starts; with --nats %s the pipeline is already running", g.natsURL)
	}
	p := launch.Default()
	if o.file != "" {
		var err error
		if p, err = launch.Load(o.file); err != nil {
			return nil, err
		}
	}
	if o.file == "" || o.changed("pipeline") || os.Getenv(procenv.EnvPipeline) != "" {
		p.Name = g.pipeline
	}
	if o.file == "" || o.changed("latent") {
		p.Latent = o.latent
	}
	return p, nil
}

// requests reads --from and --to against the pipeline's modules: the
// observations of each request and the modules to decode.
func (o *loadOpts) requests(p *launch.Pipeline, log *slog.Logger) ([]map[string]bus.Payload, []string, error) {
	sampled, given, want, err := planLoad(p, o.from, o.to)
	if err != nil {
		return nil, nil, err
	}
	reqs := []map[string]bus.Payload{{}}
	if len(sampled) > 0 {
		t0 := time.Now()
		if reqs, err = samples.Read(o.data, sampled, o.items); err != nil {
			return nil, nil, err
		}
		log.Info("sample inputs ready", "items", len(reqs), "modules", sampled, "took", time.Since(t0).Round(time.Millisecond))
	}
	for _, r := range reqs {
		maps.Copy(r, given)
	}
	return reqs, want, nil
}

// planLoad says which of the pipeline's modules take their sample inputs,
// which an input given by --from, and which are decoded. Without --from,
// every built-in modality takes its samples; without --to, every module
// with no input is decoded, so that each one is loaded.
func planLoad(p *launch.Pipeline, from, to []string) (sampled []string, given map[string]bus.Payload, want []string, err error) {
	var modules []string
	for _, m := range p.Modules {
		modules = append(modules, m.Name)
	}
	if sampled, given, err = parseLoadFrom(from, modules); err != nil {
		return nil, nil, nil, err
	}
	if from == nil {
		sampled = slices.DeleteFunc(slices.Clone(modules), func(m string) bool { return !samples.Has(m) })
	}
	if want, err = moduleList("to", to, modules); err != nil {
		return nil, nil, nil, err
	}
	if to == nil {
		want = slices.DeleteFunc(slices.Clone(modules), func(m string) bool { _, ok := given[m]; return ok || slices.Contains(sampled, m) })
	}
	return sampled, given, want, nil
}

// parseLoadFrom reads --from: MODULE=TEXT and MODULE=@FILE are given
// inputs; a bare name, or a comma-separated list of them, takes the
// built-in modality's samples; "none" is nothing.
func parseLoadFrom(from, modules []string) (sampled []string, given map[string]bus.Payload, err error) {
	given = map[string]bus.Payload{}
	for _, entry := range from {
		name, value, ok := strings.Cut(entry, "=")
		if !ok {
			names, err := moduleList("from", strings.Split(entry, ","), modules)
			if err != nil {
				return nil, nil, err
			}
			for _, n := range names {
				if !samples.Has(n) {
					return nil, nil, usagef("--from %s: it has no sample inputs (only %s do): give it one, --from %s=TEXT or --from %s=@FILE", n, strings.Join(samples.Names(), ", "), n, n)
				}
			}
			sampled = append(sampled, names...)
			continue
		}
		if _, err := moduleList("from", []string{name}, modules); err != nil {
			return nil, nil, err
		}
		p := bus.Payload{Type: "text/plain; charset=utf-8", Data: []byte(value)}
		if path, ok := strings.CutPrefix(value, "@"); ok {
			if p, err = client.ReadObservation(path); err != nil {
				return nil, nil, usagef("--from %s=@%s: %v", name, path, err)
			}
		}
		given[name] = p
	}
	for i, n := range sampled {
		if _, ok := given[n]; ok || slices.Contains(sampled[:i], n) {
			return nil, nil, usagef("--from names %s twice", n)
		}
	}
	return sampled, given, client.CheckObservations(given)
}

// moduleList refuses names that are not modules of the pipeline; "none"
// is the empty list.
func moduleList(flag string, names, modules []string) ([]string, error) {
	if len(names) == 1 && names[0] == "none" {
		return []string{}, nil
	}
	for _, n := range names {
		if !slices.Contains(modules, n) {
			return nil, usagef("--%s %q: the pipeline's modules are %s (another pipeline's file: -f)", flag, n, strings.Join(modules, ", "))
		}
	}
	return names, nil
}

func (o *loadOpts) model() string {
	if o.checkpoint == "" {
		return "fresh weights"
	}
	return "checkpoints in " + o.checkpoint
}

// startBuiltins serves the built-in model in this process on an embedded
// server, until stop.
func (o *loadOpts) startBuiltins(ctx context.Context, pipeline string) (url string, stop func(), err error) {
	m, err := fmnist3.Open(o.data, o.latent, o.hidden)
	if err != nil {
		return "", nil, err
	}
	if o.checkpoint != "" {
		if err := m.Restore(o.checkpoint); err != nil {
			return "", nil, err
		}
	}
	srv, err := bus.StartServer(bus.ServerConfig{Host: "127.0.0.1"})
	if err != nil {
		return "", nil, err
	}
	opts := map[string]module.Options{}
	for _, name := range m.Names() {
		opts[name] = module.Options{Pipeline: pipeline}
	}
	// The pipeline outlives an interrupt until the requests in flight are
	// answered: only stop ends it.
	stopM, err := m.Serve(context.WithoutCancel(ctx), srv.ClientURL(), opts, &integrator.Config{Pipeline: pipeline})
	if err != nil {
		srv.Shutdown()
		return "", nil, fmt.Errorf("the in-process pipeline: %w", err)
	}
	return srv.ClientURL(), func() { stopM(); srv.Shutdown() }, nil
}

// loadProcesses starts the file's processes as serket up does (on an
// embedded server unless the file names one), loads them, and stops them.
// A process that fails to start ends the run with its reason.
func (o *loadOpts) loadProcesses(ctx context.Context, g *globals, p *launch.Pipeline, cfg loadbench.Config, log *slog.Logger) (*loadbench.Result, error) {
	data, err := filepath.Abs(o.data)
	if err != nil {
		return nil, err
	}
	env := []string{procenv.EnvData + "=" + data}
	if o.checkpoint != "" {
		dir, err := filepath.Abs(o.checkpoint)
		if err != nil {
			return nil, err
		}
		env = append(env, procenv.EnvCheckpointDir+"="+dir)
	}
	p.NATS.Port = o.port
	// As with the in-process pipeline, an interrupt stops the sending, not
	// the pipeline that answers what is in flight.
	pctx, stopPipeline := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPipeline()
	run, err := launchPipeline(pctx, g, p, log, launchOptions{grace: 5 * time.Second, env: env})
	if err != nil {
		return nil, err
	}
	defer func() { stopPipeline(); run.wait() }()
	wctx, failed := run.watch(ctx)
	cfg.URL, cfg.Owned = run.URL, true
	cfg.Setup = fmt.Sprintf("the processes of %s (%d modules and the integrator), %s", o.file, len(p.Modules), o.model())
	res, err := loadbench.Run(wctx, cfg)
	if err == nil && wctx.Err() != nil && ctx.Err() == nil {
		err = context.Cause(wctx) // the pipeline stopped during the run
	}
	return res, failed(err)
}
