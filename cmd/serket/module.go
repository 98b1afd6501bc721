package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/micro"
	"github.com/spf13/cobra"

	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
)

func newModuleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "module KIND",
		Short: "run one built-in modality as a module process",
		Long: `Run one built-in modality as its own process on the pipeline.

The module's name is --name, else $SERKET_MODULE (set by serket up), else the
kind. Its latent size is --latent, else $SERKET_LATENT (set by serket up).`,
		// An unknown kind, with whatever flags a pipeline file gives it,
		// reaches RunE to be refused by name.
		Args:               cobra.ArbitraryArgs,
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true},
		RunE:               unknownKind,
		// cobra sets this only on the root, for its own suggestions.
		SuggestionsMinimumDistance: 2,
	}
	cmd.AddCommand(newToyCmd(g))
	cmd.AddCommand(modalityCmds(g)...)
	return cmd
}

// unknownKind refuses `serket module` without a built-in kind. It used to
// print the help and exit 0, so `serket up` took a misspelled module for
// one that had finished and ran on without it.
func unknownKind(cmd *cobra.Command, args []string) error {
	var kinds []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			kinds = append(kinds, c.Name())
		}
	}
	known := strings.Join(kinds, ", ")
	if len(args) == 0 {
		return usagef("serket module needs a KIND, one of the built-in modalities: %s", known)
	}
	msg := fmt.Sprintf("serket module: unknown modality %q", args[0])
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
	}
	return usagef("%s; the built-in modalities are %s (a program of your own joins a pipeline through command: in the pipeline file)", msg, known)
}

// moduleFlags are what every built-in module command takes.
type moduleFlags struct {
	name       string
	latent     int
	checkpoint string
	train      bool
	sensors    []string
	sensorType string
	sensorRate float64
	sayBeliefs bool
}

func (f *moduleFlags) register(cmd *cobra.Command, kind string, defaultLatent int) {
	cmd.Flags().StringVar(&f.name, "name", envOr("SERKET_MODULE", kind), "module name in the pipeline")
	latent, _ := strconv.Atoi(os.Getenv("SERKET_LATENT"))
	if latent == 0 {
		latent = defaultLatent
	}
	cmd.Flags().IntVar(&f.latent, "latent", latent, fmt.Sprintf("latent size (default $SERKET_LATENT, else %d)", defaultLatent))
	ckpt := ""
	if dir := os.Getenv("SERKET_CHECKPOINT_DIR"); dir != "" {
		ckpt = filepath.Join(dir, envOr("SERKET_MODULE", kind)+".ckpt")
	}
	cmd.Flags().StringVar(&f.checkpoint, "checkpoint", ckpt, "parameter file: restored at start if it exists, saved when the integrator of a training run asks (default $SERKET_CHECKPOINT_DIR/<name>.ckpt)")
	cmd.Flags().BoolVar(&f.train, "train", os.Getenv(module.EnvTrain) == "1", "take part in training runs (default $"+module.EnvTrain+"=1, which serket train sets); without it the module serves inference only and never changes its weights or checkpoint")
	var sensors []string
	if v := os.Getenv("SERKET_SENSORS"); v != "" {
		sensors = strings.Split(v, ",")
	}
	cmd.Flags().StringArrayVar(&f.sensors, "sensor", sensors, "stream from this NATS subject: each message is one raw observation, encoded into a timestamped posterior for streaming fusion (repeatable; default $SERKET_SENSORS, comma-separated)")
	cmd.Flags().StringVar(&f.sensorType, "sensor-type", os.Getenv("SERKET_SENSOR_TYPE"), "media type of sensor messages without a Content-Type header, e.g. image/png, audio/wav, text/plain (default $SERKET_SENSOR_TYPE)")
	cmd.Flags().Float64Var(&f.sensorRate, "sensor-rate", envFloat("SERKET_SENSOR_RATE", 0), "at most this many posteriors per second from the sensors (0: as fast as it encodes; default $SERKET_SENSOR_RATE)")
	cmd.Flags().BoolVar(&f.sayBeliefs, "say-beliefs", os.Getenv("SERKET_SAY_BELIEFS") == "1", "render the pipeline's fused beliefs and publish (and log) what they say (default $SERKET_SAY_BELIEFS=1)")
}

func (f *moduleFlags) run(g *globals, m module.Modality) error {
	log := g.logger(f.name)
	ctx, cancel := signalContext()
	defer cancel()
	return module.Run(ctx, m, module.Options{
		Pipeline:   g.pipeline,
		NATS:       g.conn("serket-"+f.name, log),
		Logger:     log,
		Train:      f.train,
		Checkpoint: f.checkpoint,
		Sensors:    f.sensors,
		SensorType: f.sensorType,
		SensorRate: f.sensorRate,
		SayBeliefs: f.sayBeliefs,
		Ready: func(micro.Service) {
			// Its start-up is over: from now on serket up restarts it
			// rather than failing the pipeline when it exits.
			if err := launch.NotifyReady(); err != nil {
				log.Warn("cannot tell the supervisor this module is ready", "err", err)
			}
		},
	})
}

func newToyCmd(g *globals) *cobra.Command {
	var (
		mf  moduleFlags
		cfg toy.Config
		lr  float32
	)
	cmd := &cobra.Command{
		Use:   "toy",
		Short: "a linear-Gaussian modality on synthetic paired data (for tests and demos)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg.Name, cfg.Latent, cfg.LR = mf.name, mf.latent, lr
			m, err := toy.New(cfg)
			if err != nil {
				return fmt.Errorf("module %s: %w", mf.name, err)
			}
			return mf.run(g, m)
		},
	}
	mf.register(cmd, "toy", 16)
	cmd.Flags().IntVar(&cfg.Dim, "dim", 8, "observation size")
	cmd.Flags().Float32Var(&cfg.Noise, "noise", 0.1, "observation noise σ")
	cmd.Flags().Float32Var(&lr, "lr", 1e-2, "Adam learning rate")
	cmd.Flags().Uint64Var(&cfg.Seed, "seed", 1, "parameter initialisation seed")
	cmd.Flags().Uint64Var(&cfg.DataSeed, "data-seed", 1, "synthetic data seed, the same for every toy module of a pipeline")
	cmd.Flags().IntVar(&cfg.Items, "items", 10000, "dataset size")
	cmd.Flags().Float64Var(&cfg.Missing, "missing", 0, "fraction of items this modality lacks")
	return cmd
}
