package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/procenv"
)

// train runs cfg on ig after waiting for the modules, with a progress bar
// on a terminal and an epoch line otherwise; it returns the last epoch's
// statistics and what this call ran.
func train(ctx context.Context, ig *integrator.Integrator, c *client.Client, cfg integrator.TrainConfig, wait time.Duration, log *slog.Logger) (*integrator.EpochStats, ranSteps, error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	peers := cfg.Modules
	if cfg.Prior != "" {
		peers = append(slices.Clone(peers), cfg.Prior)
	}
	if _, err := c.WaitFor(wctx, false, peers...); err != nil {
		return nil, ranSteps{}, err
	}
	// Until the integrator's own discovery has seen them too, a step would
	// wait out its deadline for nothing.
	for !containsAll(ig.Live(), cfg.Modules) {
		select {
		case <-ig.Polled():
		case <-wctx.Done():
			return nil, ranSteps{}, fmt.Errorf("the integrator did not discover %v within %v", cfg.Modules, wait)
		}
	}
	var bar *progressbar.ProgressBar
	if term.IsTerminal(int(os.Stderr.Fd())) {
		steps := int64(cfg.Epochs * ((len(cfg.IDs) + cfg.Batch - 1) / cfg.Batch))
		bar = progressbar.NewOptions64(steps, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	var done ranSteps
	cfg.OnStep = func(s integrator.StepStats) {
		done.add(s)
		if bar != nil {
			bar.Describe(fmt.Sprintf("epoch %d  elbo %9.1f  β %.2f", s.Epoch+1, s.ELBO, s.Beta))
			bar.Add(1)
		}
	}
	log.Info("training", "modules", cfg.Modules, "items", len(cfg.IDs), "epochs", cfg.Epochs, "batch", cfg.Batch)
	start := time.Now()
	last, err := ig.Train(ctx, cfg)
	if bar != nil {
		bar.Finish()
	}
	done.seconds = time.Since(start).Seconds()
	if errors.Is(err, integrator.ErrDiverged) {
		return last, done, fmt.Errorf("%w; the last good checkpoint is kept in %s", err, cfg.CheckpointDir)
	}
	return last, done, err
}

// ranSteps is what one process's training did: the steps it ran (a
// resumed run's earlier steps are not its), their items, and its time.
type ranSteps struct {
	steps, items int
	first, last  uint64
	seconds      float64
}

func (d *ranSteps) add(s integrator.StepStats) {
	if d.steps == 0 {
		d.first = s.Step
	}
	d.steps++
	d.items += s.Items
	d.last = s.Step
}

// String is the summary line of a training process.
func (d ranSteps) String() string {
	if d.steps == 0 {
		return "ran no step"
	}
	return fmt.Sprintf("ran %d steps (%d to %d, %d items) in %v with its checkpoints: %.0f samples/s", d.steps, d.first, d.last, d.items,
		time.Duration(d.seconds*float64(time.Second)).Round(time.Second), float64(d.items)/d.seconds)
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func newTrainCmd(g *globals) *cobra.Command {
	var (
		tf      trainFlags
		port    int
		secure  bool
		keyDir  string
		webAddr string
		pinCPUs bool
	)
	cmd := &cobra.Command{
		Use:   "train [pipeline.yaml]",
		Short: "train the pipeline's modules together by message passing",
		Long: `Train every module of a pipeline (the default one: vision, language and
audio on Fashion-MNIST-3) as one multimodal VAE. The modules run as separate
processes; this process is the integrator: it starts NATS (embedded unless
--nats), prepares the data if needed, starts the modules, and drives the
training steps over the bus. Checkpoints and the metrics log go to
--checkpoint-dir; --resume continues a run.`,
		Args:        cobra.MaximumNArgs(1),
		Annotations: map[string]string{annFileArg: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := g.loadPipeline(cmd)
			if err != nil {
				return err
			}
			p.NATS.Port = port
			tf.fromFile(p, cmd)
			tf.data = g.dataDir(cmd, tf.data)
			if err := tf.checkFresh(); err != nil {
				return err
			}
			if _, err := tf.check(); err != nil {
				return err
			}
			log := g.logger("train")
			ctx, cancel := signalContext()
			defer cancel()
			data, err := filepath.Abs(tf.data)
			if err != nil {
				return err
			}
			tf.data = data
			if err := ensureData(ctx, data); err != nil {
				return err
			}
			if len(tf.modules) == 0 {
				for _, m := range p.Modules {
					tf.modules = append(tf.modules, m.Name)
				}
			}
			switch {
			case tf.prior == "":
				p.Prior = nil // --prior "": the file's prior module sits this run out
			case p.Prior == nil || p.Prior.Name != tf.prior:
				p.Prior = &launch.Process{Name: tf.prior}
			}
			cfg, closer, err := tf.config()
			if err != nil {
				return err
			}
			defer closer.Close()
			ckpt, err := filepath.Abs(tf.ckptDir)
			if err != nil {
				return err
			}
			o := launchOptions{grace: 10 * time.Second, noIntegrator: true, freeCPUs: !pinCPUs,
				env: []string{procenv.EnvData + "=" + data, procenv.EnvCheckpointDir + "=" + ckpt, procenv.EnvTrain + "=1",
					fmt.Sprintf("%s=%g", procenv.EnvPairedFraction, tf.paired), fmt.Sprintf("%s=%d", procenv.EnvPairingSeed, tf.pairSeed),
					procenv.EnvModalities + "=" + strings.Join(tf.modules, ","), tf.lrEnv()}}
			if secure {
				cleanup, err := secureLaunch(g, p, keyDir, &o, log)
				if err != nil {
					return err
				}
				defer cleanup()
				g.nkey = o.keys["integrator"] // this process is the integrator
			}
			events := &viewEvents{}
			o.onEvent = events.on
			run, err := launchPipeline(ctx, g, p, log, o)
			if err != nil {
				return err
			}
			defer func() { cancel(); run.wait() }()
			if webAddr != "" {
				v, err := run.startView(ctx, g, p, webAddr, o.keys[adminIdentity], log)
				if err != nil {
					return err
				}
				events.hub.Store(v.Hub)
				defer v.Close()
			}
			wctx, failed := run.watch(ctx)
			return failed(trainInProcess(wctx, g, run.URL, p, cfg, tf.moduleWait, log))
		},
	}
	tf.register(cmd)
	cmd.Flags().IntVar(&port, "port", 0, "embedded NATS server port (0: random)")
	cmd.Flags().BoolVar(&secure, "secure", false, "an nkey and a permission set per process on the embedded server, as serket up --secure")
	cmd.Flags().StringVar(&keyDir, "key-dir", "", "where --secure keeps the nkey seeds (default: a temporary directory removed at exit)")
	cmd.Flags().StringVar(&webAddr, "web", "", webHelp)
	cmd.Flags().BoolVar(&pinCPUs, "pin-cpus", true, pinCPUsHelp)
	return cmd
}

// startIntegrator runs an integrator in this process until ctx is done or
// stop is called; stop waits for it and may be called more than once.
func startIntegrator(ctx context.Context, cfg integrator.Config) (ig *integrator.Integrator, stop func() error, err error) {
	ready := make(chan *integrator.Integrator, 1)
	also := cfg.Ready
	cfg.Ready = func(ig *integrator.Integrator) {
		if also != nil {
			also(ig)
		}
		ready <- ig
	}
	ictx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- integrator.Run(ictx, cfg) }()
	select {
	case ig = <-ready:
		var once sync.Once
		var runErr error
		return ig, func() error {
			once.Do(func() { cancel(); runErr = <-done })
			return runErr
		}, nil
	case err := <-done:
		cancel()
		return nil, nil, err
	}
}

// trainInProcess runs the integrator in this process and trains.
func trainInProcess(ctx context.Context, g *globals, url string, p *launch.Pipeline, cfg integrator.TrainConfig, wait time.Duration, log *slog.Logger) error {
	cc := g.conn("serket-integrator", log)
	cc.URL = url
	ig, stop, err := startIntegrator(ctx, integrator.Config{Pipeline: p.Name, Latent: p.Latent, NATS: cc, Logger: log, Discovery: 500 * time.Millisecond,
		Aggregation: servingWhileTraining(cfg.Aggregation, log)})
	if err != nil {
		return err
	}
	defer stop()
	nc, err := busConnect(g, url, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	c, err := client.New(nc, p.Name, "train")
	if err != nil {
		return err
	}
	last, ran, err := train(ctx, ig, c, cfg, wait, log)
	if err != nil {
		return err
	}
	if last == nil {
		fmt.Printf("%s; the run had no epoch left; checkpoints in %s\n", ran, cfg.CheckpointDir)
		return stop()
	}
	fmt.Printf("%s; the run is at epoch %d of %d (%d items each): ELBO %.1f (joint %.1f); checkpoints in %s\n",
		ran, last.Epoch+1, cfg.Epochs, len(cfg.IDs), last.ELBO, last.JointELBO, cfg.CheckpointDir)
	if len(cfg.EvalIDs) > 0 {
		fmt.Printf("test ELBO %.1f nats per item (KL %.1f) on %d test items\n", last.TestELBO, last.TestKL, len(cfg.EvalIDs))
	}
	return stop()
}

// ensureData prepares the default dataset in dir unless dir already holds
// a prepared dataset (of whatever settings: `serket data prepare --limit`
// makes small ones on purpose).
func ensureData(ctx context.Context, dir string) error {
	_, err := dataset.ReadManifest(dir)
	if errors.Is(err, dataset.ErrNotPrepared) {
		_, err = dataset.Prepare(ctx, dataset.PrepareConfig{Dir: dir, Progress: os.Stderr})
	}
	return err
}
