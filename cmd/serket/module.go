package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
	"github.com/serket-go/serket/procenv"
)

// newModuleCmd makes `serket module KIND`. Its commands take their
// connection settings from the module-process contract (module.Flags),
// which shadows the root's flags of the same names and defaults, rather
// than from the globals: a built-in module is configured as one written
// outside serket is.
func newModuleCmd(*globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "module KIND",
		Short: "run one built-in modality as a module process",
		Long: `Run one built-in modality as its own process on the pipeline.

Its flags are those a module written outside serket takes (module.Flags),
each with its default from the environment serket up and serket train set:
the module's name is --name, else $` + procenv.EnvModule + `, else the kind; its latent
size is --latent, else $` + procenv.EnvLatent + ` (see serket module KIND --help).`,
		// An unknown kind, with whatever flags a pipeline file gives it,
		// reaches RunE to be refused by name.
		Args:               cobra.ArbitraryArgs,
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true},
		RunE:               unknownKind,
		// cobra sets this only on the root, for its own suggestions.
		SuggestionsMinimumDistance: 2,
	}
	cmd.AddCommand(newToyCmd(), newConceptCmd(), newExecCmd())
	cmd.AddCommand(modalityCmds()...)
	return cmd
}

// unknownKind refuses `serket module` without a built-in kind. It used to
// print the help and exit 0, so `serket up` took a misspelled module for
// one that had finished and ran on without it.
func unknownKind(cmd *cobra.Command, args []string) error {
	var kinds []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() && c.Name() != "exec" { // exec runs a program, not a kind
			kinds = append(kinds, c.Name())
		}
	}
	known := strings.Join(kinds, ", ")
	if len(args) == 0 {
		return usagef("serket module needs a KIND, one of the built-in modules: %s", known)
	}
	msg := fmt.Sprintf("serket module: unknown module kind %q", args[0])
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
	}
	return usagef("%s; the built-in modules are %s (the concept module a prior module, the others modalities; a program of your own joins a pipeline through command: in the pipeline file, one in another language through exec:)", msg, known)
}

// runModule serves m with the settings of the module-process contract
// (module.Flags, resolved), as a module written outside serket does: its
// Ready tells serket up when the module's start-up is over.
func runModule(f *module.Flags, m module.Modality) error {
	log, err := f.Logger(os.Stderr)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	ctx, cancel := signalContext()
	defer cancel()
	return module.Run(ctx, m, f.Options(log))
}

// resolveFlags resolves the contract's flags of a built-in module command,
// an error in them being one in what the user typed.
func resolveFlags(f *module.Flags) error {
	if err := f.Resolve(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}

func newToyCmd() *cobra.Command {
	var (
		mf  module.Flags
		cfg toy.Config
		lr  float32
	)
	cmd := &cobra.Command{
		Use:   "toy",
		Short: "a linear-Gaussian modality on synthetic paired data (for tests and demos)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := resolveFlags(&mf); err != nil {
				return err
			}
			cfg.Name, cfg.Latent, cfg.LR = mf.Name, mf.Latent, lr
			m, err := toy.New(cfg)
			if err != nil {
				return fmt.Errorf("module %s: %w", mf.Name, err)
			}
			return runModule(&mf, m)
		},
	}
	// The toy makes its own data and has its own learning rate, so it
	// takes the contract without the training flags.
	mf.RegisterProcess(cmd.Flags(), "toy", 16)
	cmd.Flags().IntVar(&cfg.Dim, "dim", 8, "observation size")
	cmd.Flags().Float32Var(&cfg.Noise, "noise", 0.1, "observation noise σ")
	cmd.Flags().Float32Var(&lr, "lr", 1e-2, "Adam learning rate")
	cmd.Flags().Uint64Var(&cfg.Seed, "seed", 1, "parameter initialisation seed")
	cmd.Flags().Uint64Var(&cfg.DataSeed, "data-seed", 1, "synthetic data seed, the same for every toy module of a pipeline")
	cmd.Flags().IntVar(&cfg.Items, "items", 10000, "dataset size")
	cmd.Flags().Float64Var(&cfg.Missing, "missing", 0, "fraction of items this modality lacks")
	return cmd
}
