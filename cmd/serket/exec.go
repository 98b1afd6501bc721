package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/module/foreign"
	"github.com/serket-go/serket/modules/mvae"
	"github.com/serket-go/serket/procenv"
)

// newExecCmd makes `serket module exec -- PROGRAM [ARGS]`: a modality in
// any language, served on the bus by serket's own module SDK.
func newExecCmd() *cobra.Command {
	var (
		mf          module.Flags
		callTimeout time.Duration
		maxFrame    int
		dir         string
	)
	cmd := &cobra.Command{
		Use:   "exec [flags] -- PROGRAM [ARGS...]",
		Short: "run a modality written in another language (a program speaking the exec protocol)",
		Long: `Run PROGRAM as a modality: serket keeps the bus (discovery, keys,
deadlines, checkpoints, statistics) and asks the program to compute, one
call at a time, over its stdin and stdout (docs/foreign.md; sdk/python
implements the program's side for Python). The flags are every module's
(module.Flags), with defaults from the environment serket up and serket
train set; ARGS are the program's own.

The module exits with status 1 when the program fails (exits, hangs past
--call-timeout, or breaks the protocol), so that its pipeline restarts it.`,
		Example: `  serket module exec --name touchpy -- python3 examples/python-touch/touch.py --hidden 128`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("name") && os.Getenv(procenv.EnvModule) == "" {
				if mf.Name = programName(args[0]); mf.Name == "" {
					return usagef("%s suggests no module name: give one with --name", args[0])
				}
			}
			if err := resolveFlags(&mf); err != nil {
				return err
			}
			log, err := mf.Logger(os.Stderr)
			if err != nil {
				return err
			}
			slog.SetDefault(log)
			ctx, cancel := signalContext()
			defer cancel()
			cfg, err := execConfig(&mf, args, log)
			if err != nil {
				return err
			}
			cfg.Dir, cfg.CallTimeout, cfg.MaxFrame = dir, callTimeout, maxFrame
			return foreign.Run(ctx, cfg, mf.Options(log))
		},
	}
	mf.Register(cmd.Flags(), "PROGRAM's base name", 64)
	cmd.Flags().DurationVar(&callTimeout, "call-timeout", 2*time.Minute, "longest the program may take over one call before it is taken for hung, killed and the module exits")
	cmd.Flags().IntVar(&maxFrame, "max-frame", foreign.DefaultMaxFrame, "largest frame, in bytes, either way (checkpoints are the largest)")
	cmd.Flags().StringVar(&dir, "dir", "", "the program's working directory (serket up and train give the pipeline file's; default this one's)")
	return cmd
}

// programName is the module name a program's file suggests: its base name
// without extension ("touch" for examples/touch.py), if that is a valid
// module name.
func programName(program string) string {
	base := filepath.Base(program)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	if bus.ValidName(base) {
		return base
	}
	return ""
}

// execConfig is the child's configuration from the module's flags: what
// its handshake tells it (the data directory made absolute, since the
// child may run elsewhere), and the pairing mask every module draws.
func execConfig(mf *module.Flags, args []string, log *slog.Logger) (foreign.Config, error) {
	data, err := filepath.Abs(mf.Data)
	if err != nil {
		return foreign.Config{}, err
	}
	pairing := mvae.Pairing{Fraction: mf.PairedFraction, Seed: mf.PairingSeed, Modalities: mf.Modalities}
	if len(pairing.Modalities) == 0 {
		// As an example module outside serket does: the built-ins and this one.
		pairing.Modalities = append(dataset.Modalities(), mf.Name)
	}
	name := mf.Name
	return foreign.Config{
		Command: args,
		Hello:   foreign.Hello{Name: name, Latent: mf.Latent, Private: mf.Private, Data: data, LR: mf.LR, Train: mf.Train},
		Keep:    func(id uint64) bool { return pairing.Keeps(id, name) },
		Logger:  log,
	}, nil
}
