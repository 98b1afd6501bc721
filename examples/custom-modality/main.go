// Command touch is a serket module written outside serket's modules/: a
// simulated fingertip touch sensor on the Fashion-MNIST-3 items (see
// README.md beside this file for the tutorial).
//
//	touch prepare  [--data DIR] [--seed N]       simulate touch.dat for every item of the dataset in DIR
//	touch simulate --class sneaker [--n 3]        print fresh simulated readings (for serket infer)
//	touch [flags]                                 run the module on the pipeline (touch --help)
//
// Under `serket up` or `serket train` (command: [../../bin/touch] in this
// directory's pipeline file) the flags' defaults come from the environment
// the launcher sets: NATS_URL, SERKET_PIPELINE, SERKET_MODULE, SERKET_LATENT,
// SERKET_DATA, SERKET_CHECKPOINT_DIR, … (module.Flags reads them all; package
// procenv names them), and the module tells the launcher when it is ready.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

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

// moduleConfig is everything the module needs to run: serket's module
// flags (module.Flags: NATS, pipeline, name, latent size, checkpoint,
// training settings and streaming, with the launcher's environment as
// defaults) and the touch network's own, on one flag set.
type moduleConfig struct {
	module.Flags
	hidden int
	seed   uint64
	logvar float64
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
	c.Register(fs, "touch", 64) // serket's flags, beside the module's own
	fs.IntVar(&c.hidden, "hidden", 128, "units per hidden layer")
	fs.Uint64Var(&c.seed, "seed", 1, "parameter initialisation seed")
	fs.Float64Var(&c.logvar, "logvar", 0, "fixed log-variance of the Gaussian likelihood on normalised values")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (subcommands: prepare, simulate)", fs.Arg(0))
	}
	if err := c.Resolve(); err != nil {
		return nil, err
	}
	return c, nil
}

// modality builds the touch modality from its data file, and nothing else.
func (c *moduleConfig) modality() (*touch.Touch, error) {
	d, err := touch.ReadFile(touch.Path(c.Data))
	if err != nil {
		return nil, err
	}
	return touch.New(touch.Config{
		Name:    c.Name,
		Net:     mvae.Config{Latent: c.Latent, Private: c.Private, Hidden: c.hidden, LR: float32(c.LR), Seed: c.seed},
		Data:    d,
		LogVar:  float32(c.logvar),
		Pairing: mvae.Pairing{Fraction: c.PairedFraction, Seed: c.PairingSeed, Modalities: c.Modalities},
	})
}

// serve runs the module until ctx is done.
func serve(ctx context.Context, c *moduleConfig) error {
	log, err := c.Logger(os.Stderr)
	if err != nil {
		return err
	}
	m, err := c.modality()
	if err != nil {
		return err
	}
	return module.Run(ctx, m, c.Options(log))
}
