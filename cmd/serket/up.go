package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/placement"
	"github.com/serket-go/serket/procenv"
)

func newUpCmd(g *globals) *cobra.Command {
	var (
		port      int
		grace     time.Duration
		jetstream bool
		storeDir  string
		print     bool
		secure    bool
		keyDir    string
		ckptDir   string
		data      string
		webAddr   string
		pinCPUs   bool
	)
	cmd := &cobra.Command{
		Use:   "up [pipeline.yaml]",
		Short: "start a pipeline: NATS (embedded unless --nats), the integrator and every module",
		Long: `Start a pipeline from a pipeline file, or the built-in default pipeline.

Unless --nats (or NATS_URL, or the file's nats.url) names a server, serket up
starts an embedded nats-server. Then it starts the integrator and every module
as child processes, prefixes their log lines with their names, restarts them
according to their restart policies, and on Ctrl-C or SIGTERM stops them all
(SIGTERM, then SIGKILL after --grace).

--secure locks the embedded server: every process signs in with an nkey of
its own (seeds written 0600 in --key-dir, a fresh temporary directory by
default) and may use only its subjects: a module publishes only its own
posteriors, gradients and sayings, only the integrator publishes steps,
latents, expert gradients and beliefs. Keys for others are made too:
client.nk (inference only: serket infer --nkey DIR/client.nk), sensor.nk
(publish on the pipeline's sensor subjects) and admin.nk (serket ls, echo,
record). Anyone without a key is refused. See docs/security.md.

The modules restore their checkpoints from --checkpoint-dir (else
$SERKET_CHECKPOINT_DIR, the file's train.checkpoint_dir, runs/latest): a
module with no <name>.ckpt there starts with fresh weights and says so. They
serve those weights and never change them, unless the file's integrator
trains (its args hold --train). See serket --help for where every setting
comes from.`,
		Args:        cobra.MaximumNArgs(1),
		Annotations: map[string]string{annFileArg: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := g.loadPipeline(cmd)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("port") {
				p.NATS.Port = port
			}
			if jetstream {
				p.NATS.JetStream = true
			}
			if storeDir != "" {
				if p.NATS.StoreDir, err = filepath.Abs(storeDir); err != nil {
					return err
				}
			}
			if print {
				return yaml.NewEncoder(os.Stdout).Encode(p)
			}
			log := g.logger("up")
			ctx, cancel := signalContext()
			defer cancel()
			ckpt := g.checkpointDir(cmd, "checkpoint-dir", ckptDir, "runs/latest")
			env, err := childPaths(g.filePath, ckpt, g.dataDir(cmd, data))
			if err != nil {
				return err
			}
			log.Info("the modules restore their checkpoints from", "dir", ckpt)
			if integratorTrains(p) {
				// Only a pipeline whose integrator trains lets its modules
				// learn; any other serves, and its weights never change.
				env = append(env, procenv.EnvTrain+"=1")
			}
			events := &viewEvents{}
			o := launchOptions{grace: grace, env: env, onEvent: events.on, freeCPUs: !pinCPUs}
			if secure {
				cleanup, err := secureLaunch(g, p, keyDir, &o, log)
				if err != nil {
					return err
				}
				defer cleanup()
			}
			run, err := launchPipeline(ctx, g, p, log, o)
			if err != nil {
				return err
			}
			if webAddr != "" {
				v, err := run.startView(ctx, g, p, webAddr, o.keys[adminIdentity], log)
				if err != nil {
					cancel()
					run.wait()
					return err
				}
				events.hub.Store(v.Hub)
				defer v.Close()
			}
			return run.wait()
		},
	}
	cmd.Flags().IntVar(&port, "port", bus.DefaultPort, "embedded NATS server port (0: random); default from the pipeline file")
	cmd.Flags().DurationVar(&grace, "grace", 5*time.Second, "how long children get to stop after SIGTERM before SIGKILL")
	cmd.Flags().BoolVar(&jetstream, "jetstream", false, "enable JetStream on the embedded server")
	cmd.Flags().StringVar(&storeDir, "store-dir", "", "JetStream store directory (default: a temporary one)")
	cmd.Flags().BoolVar(&print, "print", false, "print the pipeline with every default filled in, and exit")
	cmd.Flags().BoolVar(&secure, "secure", false, "an nkey and a permission set per process on the embedded server; no one else gets in")
	cmd.Flags().StringVar(&ckptDir, "checkpoint-dir", "runs/latest", "the run whose checkpoints the modules restore (<module>.ckpt; see the text above)")
	cmd.Flags().StringVar(&data, "data", dataset.DefaultDir(), "prepared dataset the built-in modules read (default $"+procenv.EnvData+", else the file's data:, else "+procenv.DefaultData+")")
	cmd.Flags().StringVar(&keyDir, "key-dir", "", "where --secure keeps the nkey seeds (kept and reused; default: a temporary directory removed at exit)")
	cmd.Flags().StringVar(&webAddr, "web", "", webHelp)
	cmd.Flags().BoolVar(&pinCPUs, "pin-cpus", true, pinCPUsHelp)
	return cmd
}

// integratorTrains reports whether p's integrator process trains (its
// args hold --train).
func integratorTrains(p *launch.Pipeline) bool {
	return p.Integrator != nil && slices.Contains(p.Integrator.Args, "--train")
}

// childPaths is the environment that tells a pipeline's processes, as
// absolute paths, its file (if any), its checkpoint directory and its
// dataset, in that order.
func childPaths(file, ckptDir, data string) ([]string, error) {
	var env []string
	for _, kv := range []struct{ k, v string }{{procenv.EnvPipelineFile, file}, {procenv.EnvCheckpointDir, ckptDir}, {procenv.EnvData, data}} {
		if kv.v == "" {
			continue
		}
		abs, err := filepath.Abs(kv.v)
		if err != nil {
			return nil, err
		}
		env = append(env, kv.k+"="+abs)
	}
	return env, nil
}

// running is a launched pipeline.
type running struct {
	URL    string
	server *bus.Server
	sup    *launch.Supervisor
	done   chan error
	log    *slog.Logger

	waitOnce sync.Once
	waitErr  error
}

// launchOptions adjust launchPipeline for commands other than up.
type launchOptions struct {
	grace        time.Duration
	onEvent      func(launch.Event)
	noIntegrator bool              // the caller runs the integrator in its own process
	env          []string          // extra environment for every child
	users        []bus.User        // the embedded server admits only these (--secure)
	keys         map[string]string // process name → its nkey seed file
	freeCPUs     bool              // leave the children's CPUs to the kernel (--pin-cpus=false)
}

// launchPipeline starts NATS (embedded unless a URL is given) and supervises
// the pipeline's processes until ctx is done.
func launchPipeline(ctx context.Context, g *globals, p *launch.Pipeline, log *slog.Logger, o launchOptions) (*running, error) {
	r := &running{done: make(chan error, 1), log: log}
	r.URL = g.natsURL
	if r.URL == "" {
		r.URL = p.NATS.URL
	}
	if r.URL == "" {
		srv, err := bus.StartServer(bus.ServerConfig{Port: p.NATS.Port, JetStream: p.NATS.JetStream, StoreDir: p.Path(p.NATS.StoreDir), Users: o.users})
		if err != nil {
			return nil, fmt.Errorf("%w (choose another with --port, or use a running server with --nats URL)", err)
		}
		r.server, r.URL = srv, srv.ClientURL()
		log.Info("embedded NATS server listening", "url", r.URL, "jetstream", p.NATS.JetStream)
	}
	self, err := os.Executable()
	if err != nil {
		r.shutdownServer()
		return nil, fmt.Errorf("cannot find the serket binary to start children with: %w", err)
	}
	env := []string{
		procenv.EnvNATSURL + "=" + r.URL,
		procenv.EnvPipeline + "=" + p.Name,
		procenv.EnvLatent + "=" + strconv.Itoa(p.Latent),
		procenv.EnvLogLevel + "=" + g.logLevel,
	}
	if os.Getenv(procenv.EnvOpenBLASThreads) == "" {
		// Four processes share the cores; OpenBLAS threads that spin after
		// every call would fight each other (see nn's doc).
		env = append(env, procenv.EnvOpenBLASThreads+"=1")
	}
	for _, kv := range []struct{ k, v string }{{procenv.EnvNATSCreds, g.creds}, {procenv.EnvNATSUser, g.user}, {procenv.EnvNATSPassword, g.password},
		{procenv.EnvNATSCA, g.tlsCA}, {procenv.EnvNATSCert, g.tlsCert}, {procenv.EnvNATSKey, g.tlsKey}} {
		if kv.v != "" {
			env = append(env, kv.k+"="+kv.v)
		}
	}
	if t := p.Train; t != nil && t.PairedFraction != nil {
		// Every module draws the same partial-pairing mask, over the
		// pipeline's modalities.
		var names []string
		for _, m := range p.Modules {
			names = append(names, m.Name)
		}
		env = append(env, fmt.Sprintf("%s=%g", procenv.EnvPairedFraction, *t.PairedFraction), fmt.Sprintf("%s=%d", procenv.EnvPairingSeed, max(t.PairingSeed, 1)),
			procenv.EnvModalities+"="+strings.Join(names, ","))
	}
	if t := p.Train; t != nil && t.LR != nil {
		env = append(env, fmt.Sprintf("%s=%g", procenv.EnvLR, *t.LR))
	}
	var specs []launch.Spec
	for _, s := range p.Specs(self, append(env, o.env...)) {
		if o.noIntegrator && s.Name == "integrator" {
			continue
		}
		s.Env = append(s.Env, procenv.EnvModule+"="+s.Name)
		if k, ok := o.keys[s.Name]; ok {
			s.Env = append(s.Env, procenv.EnvNATSNKey+"="+k)
		}
		specs = append(specs, s)
	}
	r.sup = launch.NewSupervisor(specs, launch.Options{Output: os.Stderr, Grace: o.grace, Logger: log, OnEvent: o.onEvent})
	log.Info("starting pipeline", "pipeline", p.Name, "latent", p.Latent, "processes", len(specs), "nats", r.URL)
	go func() {
		err := r.sup.Run(ctx)
		r.shutdownServer()
		r.done <- err
	}()
	if !o.freeCPUs {
		go func() {
			if err := placement.Run(ctx, r.sup.PIDs, placement.Config{Log: log}); err != nil {
				log.Debug("processes not pinned to CPUs", "err", err)
			}
		}()
	}
	return r, nil
}

// pinCPUsHelp is --pin-cpus's help: the flag of every command that starts
// a pipeline's processes.
const pinCPUsHelp = "while more processes are busy than there are CPUs, pin each busy one to a CPU by its load, the heaviest alone (package placement); false leaves them to the kernel"

// wait returns when the supervisor has stopped every child (after ctx is done).
// wait waits for the pipeline to stop; it may be called more than once.
func (r *running) wait() error {
	r.waitOnce.Do(func() {
		r.waitErr = <-r.done
		if r.waitErr == nil {
			r.log.Info("pipeline stopped")
		}
	})
	return r.waitErr
}

// watch returns a context that ends when the pipeline stops on its own
// (a module that failed to start stops it), and a function that turns the
// error of work done under it into the pipeline's error when that is why
// the work ended: a command that trains or generates on a pipeline ends at
// once, with the reason, rather than waiting out its own timeouts.
func (r *running) watch(ctx context.Context) (context.Context, func(error) error) {
	wctx, cancel := context.WithCancelCause(ctx)
	go func() {
		if err := r.wait(); err != nil {
			cancel(fmt.Errorf("the pipeline stopped: %w", err))
		}
	}()
	return wctx, func(err error) error {
		if cause := context.Cause(wctx); err != nil && cause != nil && ctx.Err() == nil && !errors.Is(cause, context.Canceled) {
			return cause
		}
		return err
	}
}

func (r *running) shutdownServer() {
	if r.server != nil {
		r.server.Shutdown()
		r.server = nil
	}
}
