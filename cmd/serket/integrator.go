package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/procenv"
)

func newIntegratorCmd(g *globals) *cobra.Command {
	var (
		cfg     integrator.Config
		doTrain bool
		tf      trainFlags
	)
	latent, _ := strconv.Atoi(os.Getenv(procenv.EnvLatent))
	if latent == 0 {
		latent = 16
	}
	cmd := &cobra.Command{
		Use:   "integrator",
		Short: "run the pipeline's integrator process (product-of-experts fusion, inference)",
		Long: `Run the pipeline's integrator: product-of-experts fusion and the inference
service. With --train it also trains the pipeline's modules and exits when
done; in a pipeline file, give it args [--train] (and the file's train
section, which serket up hands it through $` + procenv.EnvPipelineFile + `) and the
restart policy on-failure, with --resume so that a restart continues.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := g.logger(integrator.Name)
			ctx, cancel := signalContext()
			defer cancel()
			cfg.Pipeline, cfg.Logger = g.pipeline, log
			cfg.NATS = g.conn("serket-integrator", log)
			cfg.Ready = func(*integrator.Integrator) { notifyReady(log) }
			if !doTrain {
				var err error
				if cfg.Aggregation, err = servingAggregation(cmd, &tf, log); err != nil {
					return err
				}
				return integrator.Run(ctx, cfg)
			}
			var p *launch.Pipeline
			if path := os.Getenv(procenv.EnvPipelineFile); path != "" {
				var err error
				if p, err = launch.Load(path); err != nil {
					return err
				}
				if len(tf.modules) == 0 {
					tf.modules = moduleNames(p)
				}
			}
			tf.fromFile(p, cmd)
			if len(tf.modules) == 0 {
				return usagef("--train needs --modules (or a pipeline file from serket up)")
			}
			if restarted() && !tf.resume {
				// serket up restarted this integrator: its run goes on,
				// if it had begun.
				_, err := os.Stat(filepath.Join(tf.ckptDir, "integrator.json"))
				tf.resume = err == nil
				log.Info("restarted by the supervisor", "resumes", tf.resume)
			}
			if err := tf.checkFresh(); err != nil {
				return err
			}
			tcfg, closer, err := tf.config()
			if err != nil {
				return err
			}
			defer closer.Close()
			cfg.Aggregation = servingWhileTraining(tcfg.Aggregation, log)
			ig, stop, err := startIntegrator(ctx, cfg)
			if err != nil {
				return err
			}
			defer stop()
			nc, err := bus.Connect(cfg.NATS)
			if err != nil {
				return err
			}
			defer nc.Close()
			c, err := client.New(nc, cfg.Pipeline, "integrator")
			if err != nil {
				return err
			}
			last, ran, err := train(ctx, ig, c, tcfg, tf.moduleWait, log)
			if err != nil {
				return err
			}
			if last != nil {
				log.Info("training done", "ran", ran.String(), "elbo", last.ELBO, "checkpoints", tcfg.CheckpointDir)
			}
			return stop()
		},
	}
	cmd.Flags().BoolVar(&doTrain, "train", false, "train the pipeline's modules, then exit")
	tf.register(cmd)
	cmd.Flags().IntVar(&cfg.Latent, "latent", latent, "latent size (default $"+procenv.EnvLatent+", else 16)")
	cmd.Flags().DurationVar(&cfg.Deadline, "deadline", 2*time.Second, "how long an inference waits for the modules to encode")
	cmd.Flags().DurationVar(&cfg.DecodeDeadline, "decode-deadline", 2*time.Second, "how long an inference waits for the modules to decode one latent")
	cmd.Flags().DurationVar(&cfg.DecodePerSample, "decode-per-sample", 500*time.Millisecond, "more decoding time per further sample")
	cmd.Flags().IntVar(&cfg.InferWorkers, "infer-workers", 8, "inferences served at once (each mostly waits for modules)")
	cmd.Flags().DurationVar(&cfg.Stream.Slop, "slop", envDuration(procenv.EnvSlop, time.Second), "streaming fusion: how old a module's latest posterior may be to join a belief (default $"+procenv.EnvSlop+")")
	cmd.Flags().DurationVar(&cfg.Stream.MaxAhead, "max-ahead", envDuration(procenv.EnvMaxAhead, time.Second), "streaming fusion: how far in the future a timestamp may be (clock skew) before it is refused (default $"+procenv.EnvMaxAhead+")")
	cmd.Flags().DurationVar(&cfg.Stream.MinPeriod, "belief-period", envDuration(procenv.EnvBeliefPeriod, 0), "streaming fusion: at most one belief per period, 0: one per posterior (default $"+procenv.EnvBeliefPeriod+")")
	cmd.Flags().DurationVar(&cfg.Discovery, "discovery", time.Second, "how often to look for modules")
	cmd.Flags().IntVar(&cfg.Misses, "misses", 3, "discovery polls a module may miss before it is dropped")
	return cmd
}

// restarted reports whether the supervisor that started this process
// restarted it ($SERKET_RESTART).
func restarted() bool {
	n, _ := strconv.Atoi(os.Getenv(procenv.EnvRestart))
	return n > 0
}

// notifyReady tells the supervisor, if any, that this process's start-up
// is over: serket up restarts it, rather than failing the pipeline, when it
// exits from now on.
func notifyReady(log *slog.Logger) {
	if err := procenv.NotifyReady(); err != nil {
		log.Warn("cannot tell the supervisor this process is ready", "err", err)
	}
}

// envDuration is the duration in the environment variable key, or def.
func envDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return d
	}
	return def
}

// servingWhileTraining is how an integrator that trains fuses the
// inferences it serves meanwhile: as the run does, but for a learned
// aggregation, whose weights the run changes step by step (its checkpoint
// serves them): a product of experts until then.
func servingWhileTraining(agg aggregate.Aggregation, log *slog.Logger) aggregate.Aggregation {
	if _, learned := agg.(aggregate.Learned); learned {
		log.Info("inferences served while the run trains fuse by poe; serve the run's checkpoint to fuse with its learned gates", "aggregation", agg.Name())
		return aggregate.PoE()
	}
	return agg
}

// servingAggregation is how a serving integrator fuses: as --aggregation
// says, else as the run in its checkpoint directory was trained (its
// integrator.json), else by PoE.
func servingAggregation(cmd *cobra.Command, tf *trainFlags, log *slog.Logger) (aggregate.Aggregation, error) {
	dir := checkpointDirOf(cmd, "checkpoint-dir", tf.ckptDir, nil, tf.ckptDir)
	if cmd.Flags().Changed("aggregation") {
		agg, err := aggregate.Parse(tf.agg)
		if err != nil {
			return nil, usagef("--aggregation: %v", err)
		}
		if _, learned := agg.(aggregate.Learned); !learned {
			return agg, nil
		}
		// Its weights are the run's: serve them, or refuse.
		run, found, err := integrator.RunAggregation(dir)
		switch {
		case err != nil:
			return nil, err
		case !found || run.Name() != agg.Name():
			return nil, usagef("--aggregation %s: its learned weights come from a run trained with it, and %s holds none (give --checkpoint-dir of a %s run)", agg.Name(), dir, agg.Name())
		}
		return run, nil
	}
	agg, found, err := integrator.RunAggregation(dir)
	if err != nil {
		return nil, err
	}
	if found {
		log.Info("fusing as the run was trained", "aggregation", agg.Name(), "run", dir)
	}
	return agg, nil
}
