// Command touch is a serket module written outside serket's modules/: a
// simulated fingertip touch sensor on the Fashion-MNIST-3 items (see
// README.md beside this file for the tutorial).
//
//	touch prepare  [--data DIR] [--seed N]       simulate touch.dat for every item of the dataset in DIR
//	touch simulate --class sneaker [--n 3]        print fresh simulated readings (for serket infer)
//	touch [flags]                                 run the module on the pipeline (touch --help)
//
// Under `serket up` or `serket train` (command: [./bin/touch] in a pipeline
// file) the flags' defaults come from the environment the launcher sets:
// NATS_URL, SERKET_PIPELINE, SERKET_MODULE, SERKET_LATENT, SERKET_DATA,
// SERKET_CHECKPOINT_DIR, SERKET_NO_SAVE_ON_EXIT, SERKET_LR,
// SERKET_PAIRED_FRACTION, SERKET_PAIRING_SEED, SERKET_SENSORS, … as for
// `serket module vision`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/examples/custom-modality/touch"
	"github.com/serket-go/serket/examples/custom-modality/touchsim"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/mvae"
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "touch:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "prepare":
			return prepare(args[1:], stdout, stderr)
		case "simulate":
			return simulate(args[1:], stdout, stderr)
		}
	}
	cfg, err := parseModuleFlags(args, stderr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg)
}

// prepare writes touch.dat beside the dataset's manifest.
func prepare(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("touch prepare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", dataset.DefaultDir(), "prepared dataset directory (serket data prepare); touch.dat is written there")
	seed := fs.Uint64("seed", 1, "simulator seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := touchsim.Prepare(*data, *seed)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d touch readings of %d values (seed %d)\n", touch.Path(*data), len(d.IDs), touch.Dim, *seed)
	return nil
}

// simulate prints fresh readings of a class, one a line, as name=value
// pairs: input for `serket infer --from touch="…"`.
func simulate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("touch simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	class := fs.String("class", "sneaker", "what is touched: a Fashion-MNIST class ("+strings.Join(dataset.ClassNames[:], ", ")+")")
	n := fs.Int("n", 1, "readings")
	seed := fs.Uint64("seed", 7, "simulator seed (readings of items no dataset has)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := touchsim.Class(*class)
	if err != nil {
		return err
	}
	for i := range *n {
		fmt.Fprintln(stdout, touch.Format(touchsim.Reading(c, *seed, 1<<62+uint64(i))))
	}
	return nil
}

// moduleConfig is everything the module needs to run.
type moduleConfig struct {
	name, data, nats, pipeline, checkpoint string
	creds, user, password, logLevel        string
	latent, hidden, checkpointEvery        int
	lr, logvar                             float64
	seed, pairingSeed                      uint64
	paired                                 float64
	modalities                             string
	noSaveOnExit, sayBeliefs               bool
	sensors                                []string
	sensorType                             string
	sensorRate                             float64
}

// parseModuleFlags reads the flags, with defaults from the environment
// serket's launcher gives its children.
func parseModuleFlags(args []string, stderr io.Writer) (*moduleConfig, error) {
	c := &moduleConfig{}
	fs := flag.NewFlagSet("touch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage:
  touch prepare [--data DIR] [--seed N]   simulate touch.dat for the dataset in DIR
  touch simulate --class NAME [--n N]     print simulated readings
  touch [flags]                           run the touch module

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.name, "name", envOr("SERKET_MODULE", "touch"), "module name in the pipeline (default $SERKET_MODULE, else touch)")
	fs.StringVar(&c.data, "data", dataset.DefaultDir(), "dataset directory holding touch.dat (default $SERKET_DATA, else data/fmnist3)")
	fs.IntVar(&c.latent, "latent", envInt("SERKET_LATENT", 64), "latent size (default $SERKET_LATENT, else 64)")
	fs.IntVar(&c.hidden, "hidden", 128, "units per hidden layer")
	fs.Float64Var(&c.lr, "lr", envFloat("SERKET_LR", 1e-3), "Adam learning rate (default $SERKET_LR, else 0.001)")
	fs.Uint64Var(&c.seed, "seed", 1, "parameter initialisation seed")
	fs.Float64Var(&c.logvar, "logvar", 0, "fixed log-variance of the Gaussian likelihood on normalised values")
	fs.StringVar(&c.checkpoint, "checkpoint", "", "parameter file: restored at start if it exists, saved when the integrator asks and at exit (default $SERKET_CHECKPOINT_DIR/<name>.ckpt)")
	fs.IntVar(&c.checkpointEvery, "checkpoint-every", 0, "also save every N training steps")
	fs.BoolVar(&c.noSaveOnExit, "no-save-on-exit", os.Getenv("SERKET_NO_SAVE_ON_EXIT") == "1", "do not save at exit (serket train sets $SERKET_NO_SAVE_ON_EXIT=1)")
	fs.StringVar(&c.nats, "nats", os.Getenv("NATS_URL"), "NATS server URL (default $NATS_URL, else "+bus.DefaultURL+")")
	fs.StringVar(&c.pipeline, "pipeline", os.Getenv("SERKET_PIPELINE"), "pipeline name (default $SERKET_PIPELINE, else "+bus.DefaultPipeline+")")
	fs.StringVar(&c.creds, "creds", os.Getenv("NATS_CREDS"), "NATS credentials file (default $NATS_CREDS)")
	fs.StringVar(&c.user, "user", os.Getenv("NATS_USER"), "NATS user (default $NATS_USER)")
	fs.StringVar(&c.password, "password", os.Getenv("NATS_PASSWORD"), "NATS password (default $NATS_PASSWORD)")
	fs.StringVar(&c.logLevel, "log-level", envOr("SERKET_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.Float64Var(&c.paired, "paired-fraction", envFloat("SERKET_PAIRED_FRACTION", 1), "fraction of training items with every modality (default $SERKET_PAIRED_FRACTION, else 1)")
	fs.Uint64Var(&c.pairingSeed, "pairing-seed", uint64(envInt("SERKET_PAIRING_SEED", 1)), "seed of the partial-pairing mask (default $SERKET_PAIRING_SEED, else 1)")
	fs.StringVar(&c.modalities, "modalities", "vision,language,audio,<name>", "the modalities the pairing mask is drawn over; every module of the pipeline must be given the same list")
	fs.Func("sensor", "stream from this NATS subject, one reading a message (repeatable; default $SERKET_SENSORS)", func(s string) error {
		c.sensors = append(c.sensors, s)
		return nil
	})
	fs.StringVar(&c.sensorType, "sensor-type", envOr("SERKET_SENSOR_TYPE", "text/plain"), "media type of sensor messages without a Content-Type header")
	fs.Float64Var(&c.sensorRate, "sensor-rate", envFloat("SERKET_SENSOR_RATE", 0), "at most this many posteriors a second from the sensors (0: no cap)")
	fs.BoolVar(&c.sayBeliefs, "say-beliefs", os.Getenv("SERKET_SAY_BELIEFS") == "1", "render the pipeline's beliefs as touch readings and log them")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (subcommands: prepare, simulate)", fs.Arg(0))
	}
	if c.sensors == nil && os.Getenv("SERKET_SENSORS") != "" {
		c.sensors = strings.Split(os.Getenv("SERKET_SENSORS"), ",")
	}
	c.modalities = strings.ReplaceAll(c.modalities, "<name>", c.name)
	if c.checkpoint == "" {
		if dir := os.Getenv("SERKET_CHECKPOINT_DIR"); dir != "" {
			c.checkpoint = filepath.Join(dir, c.name+".ckpt")
		}
	}
	return c, nil
}

// modality builds the touch modality from its data file, and nothing else.
func (c *moduleConfig) modality() (*touch.Touch, error) {
	d, err := touch.ReadFile(touch.Path(c.data))
	if err != nil {
		return nil, err
	}
	return touch.New(touch.Config{
		Name:    c.name,
		Net:     mvae.Config{Latent: c.latent, Hidden: c.hidden, LR: float32(c.lr), Seed: c.seed},
		Data:    d,
		LogVar:  float32(c.logvar),
		Pairing: mvae.Pairing{Fraction: c.paired, Seed: c.pairingSeed, Modalities: strings.Split(c.modalities, ",")},
	})
}

// serve runs the module until ctx is done.
func serve(ctx context.Context, c *moduleConfig) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: %w", c.logLevel, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("module", c.name)
	m, err := c.modality()
	if err != nil {
		return err
	}
	return module.Run(ctx, m, module.Options{
		Pipeline:        c.pipeline,
		NATS:            bus.ConnConfig{URL: c.nats, Name: bus.ServiceName(c.name), Creds: c.creds, User: c.user, Pass: c.password, Logger: log},
		Logger:          log,
		Checkpoint:      c.checkpoint,
		CheckpointEvery: c.checkpointEvery,
		NoSaveOnExit:    c.noSaveOnExit,
		Sensors:         c.sensors,
		SensorType:      c.sensorType,
		SensorRate:      c.sensorRate,
		SayBeliefs:      c.sayBeliefs,
	})
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return v
	}
	return def
}

func envFloat(key string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(key), 64); err == nil {
		return v
	}
	return def
}
