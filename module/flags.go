package module

import (
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/procenv"
)

// Flags are the settings every module process takes, whatever its
// modality — the module-process contract of package procenv: where NATS
// is and how to sign in, which pipeline, its name and latent size, its
// checkpoint, whether it trains, streaming, and the training flags — with
// their defaults from the environment `serket up` and `serket train` give
// their children, so a module written outside serket (see
// examples/custom-modality) runs under the launcher with no arguments.
// Flags adds to procenv.Flags the bus's rule for the module's name
// (Resolve) and Run's options, which tell the supervisor when the module
// is ready (Options).
//
// Register declares them on the module's own flag set, beside its own
// flags: a *flag.FlagSet, or a *pflag.FlagSet such as a cobra command's
// Flags().
//
//	var f module.Flags
//	f.Register(flag.CommandLine, "touch", 64)
//	hidden := flag.Int("hidden", 128, "units per hidden layer") // the module's own
//	flag.Parse()
//	if err := f.Resolve(); err != nil {
//		…
//	}
//	log, err := f.Logger(os.Stderr)
//	…
//	err = module.Run(ctx, m, f.Options(log))
//
// The package doc of procenv lists the environment variables and the flags
// they are defaults of.
type Flags struct {
	procenv.Flags
}

// Resolve holds the module's name to the bus's rule (it names subjects, a
// service and a checkpoint file), then fills in and checks the rest
// (procenv.Flags.Resolve). Call it after parsing.
func (f *Flags) Resolve() error {
	if !bus.ValidName(f.Name) {
		return fmt.Errorf("--name %q: want a module name (lower-case letters, digits and dashes)", f.Name)
	}
	return f.Flags.Resolve()
}

// Options are Run's options from the flags. Their Ready tells the
// supervisor that started the process, if any, that its start-up is over
// (procenv.NotifyReady), so that `serket up` restarts the module rather
// than failing the pipeline when it exits from then on.
func (f *Flags) Options(log *slog.Logger) Options {
	return Options{
		Pipeline: f.Pipeline,
		NATS: bus.ConnConfig{URL: f.NATS, Name: bus.ServiceName(f.Name), Creds: f.Creds, User: f.User, Pass: f.Password, NKeyFile: f.NKey,
			CAFile: f.TLSCA, CertFile: f.TLSCert, KeyFile: f.TLSKey, Logger: log},
		Logger:     log,
		Train:      f.Train,
		Checkpoint: f.Checkpoint,
		Private:    f.Private,
		Sensors:    f.Sensors,
		SensorType: f.SensorType,
		SensorRate: f.SensorRate,
		SayBeliefs: f.SayBeliefs,
		Ready:      func(micro.Service) { notifyReady(log) },
	}
}

// notifyReady tells the supervisor, logging (not failing) when it cannot:
// a module that serves is better than none, and the supervisor takes it as
// started once its start-up window has passed.
func notifyReady(log *slog.Logger) {
	if err := procenv.NotifyReady(); err != nil {
		if log == nil {
			log = slog.Default()
		}
		log.Warn("cannot tell the supervisor this module is ready", "err", err)
	}
}
