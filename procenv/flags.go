package procenv

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FlagSet is what Register needs of a flag set. The standard library's
// *flag.FlagSet and pflag's *pflag.FlagSet (cobra's) both have it, so the
// contract's flags sit beside a module's own in either.
type FlagSet interface {
	StringVar(p *string, name, value, usage string)
	IntVar(p *int, name string, value int, usage string)
	Uint64Var(p *uint64, name string, value uint64, usage string)
	Float64Var(p *float64, name string, value float64, usage string)
	BoolVar(p *bool, name string, value bool, usage string)
	Func(name, usage string, fn func(string) error)
}

var _ FlagSet = (*flag.FlagSet)(nil)

// Flags are the settings a module process takes, whatever its modality,
// each with its default from the environment a launcher sets (see the
// package doc): where NATS is and how to sign in, which pipeline, its name
// and latent size, its checkpoint, whether it trains, streaming, and the
// training flags (the dataset, the learning rate, partial pairing).
// Declare them with Register, parse, then call Resolve.
type Flags struct {
	NATS, Pipeline, Creds, User, Password string
	NKey                                  string // a file holding an nkey seed
	TLSCA, TLSCert, TLSKey                string
	LogLevel                              string

	Name   string
	Latent int
	// Private is the size of a private latent the module keeps beside
	// the shared one (0: none); a module that does not support one
	// refuses to start with it.
	Private    int
	Checkpoint string
	// Train lets the module take part in training runs; without it, it
	// serves inference only and never changes its weights.
	Train bool

	Sensors    []string
	SensorType string
	SensorRate float64 // posteriors a second at most, 0: no cap
	SayBeliefs bool

	// The training flags, declared by Register but not RegisterProcess.
	Data string // the prepared dataset directory
	LR   float64
	// The partial-pairing mask: every module of a pipeline must draw it
	// with the same fraction, seed and list of modalities. Modalities is
	// nil when neither --modalities nor $SERKET_MODALITIES gives it: the
	// module's own default then (serket's three for the built-ins).
	PairedFraction float64
	PairingSeed    uint64
	Modalities     []string

	training bool // the training flags were declared
}

// Register declares every flag of the contract on fs, a module's own flag
// set beside its own flags. kind names the modality (the module's name
// unless $SERKET_MODULE or --name says otherwise) and defaultLatent is the
// latent size when $SERKET_LATENT is unset. Call Resolve after parsing.
func (f *Flags) Register(fs FlagSet, kind string, defaultLatent int) {
	f.RegisterProcess(fs, kind, defaultLatent)
	f.registerTraining(fs)
}

// RegisterProcess declares the flags every module process takes, without
// the training flags (--data, --lr, --paired-fraction, --pairing-seed,
// --modalities): for a module that brings its own data and optimiser
// settings, such as serket's toy.
func (f *Flags) RegisterProcess(fs FlagSet, kind string, defaultLatent int) {
	f.registerConn(fs)
	fs.StringVar(&f.Name, "name", envOr(EnvModule, kind), "module name in the pipeline (default $"+EnvModule+", else "+kind+")")
	fs.IntVar(&f.Latent, "latent", envInt(EnvLatent, defaultLatent), fmt.Sprintf("latent size (default $%s, else %d)", EnvLatent, defaultLatent))
	fs.IntVar(&f.Private, "private", 0, "size of a private latent the module keeps beside the shared one: it encodes and decodes with it, publishes only the shared part, and draws it from its prior when it generates from the others (0: none)")
	fs.StringVar(&f.Checkpoint, "checkpoint", "", "parameter file: restored at start if it exists, saved when the integrator of a training run asks (default $"+EnvCheckpointDir+"/<name>.ckpt)")
	fs.BoolVar(&f.Train, "train", os.Getenv(EnvTrain) == "1", "take part in training runs (default $"+EnvTrain+"=1, which serket train sets); without it the module serves inference only and never changes its weights or checkpoint")
	f.Sensors = nil
	fs.Func("sensor", "stream from this NATS `subject`: each message is one raw observation, encoded into a timestamped posterior for streaming fusion (repeatable; default $"+EnvSensors+", comma-separated)", func(s string) error {
		f.Sensors = append(f.Sensors, s)
		return nil
	})
	fs.StringVar(&f.SensorType, "sensor-type", os.Getenv(EnvSensorType), "media type of sensor messages without a Content-Type header, e.g. image/png, audio/wav, text/plain (default $"+EnvSensorType+")")
	fs.Float64Var(&f.SensorRate, "sensor-rate", envFloat(EnvSensorRate, 0), "at most this many posteriors a second from the sensors (0: as fast as it encodes; default $"+EnvSensorRate+")")
	fs.BoolVar(&f.SayBeliefs, "say-beliefs", os.Getenv(EnvSayBeliefs) == "1", "render the pipeline's fused beliefs and publish (and log) what they say (default $"+EnvSayBeliefs+"=1)")
}

// defaultURL and defaultPipeline are bus.DefaultURL and
// bus.DefaultPipeline, for the help text only (procenv does not import
// bus; a test holds them equal).
const (
	defaultURL      = "nats://127.0.0.1:4222"
	defaultPipeline = "default"
)

func (f *Flags) registerConn(fs FlagSet) {
	fs.StringVar(&f.NATS, "nats", os.Getenv(EnvNATSURL), "NATS server URL (default $"+EnvNATSURL+", else "+defaultURL+")")
	fs.StringVar(&f.Pipeline, "pipeline", os.Getenv(EnvPipeline), "pipeline name (default $"+EnvPipeline+", else "+defaultPipeline+")")
	fs.StringVar(&f.Creds, "creds", os.Getenv(EnvNATSCreds), "NATS credentials file (default $"+EnvNATSCreds+")")
	fs.StringVar(&f.User, "user", os.Getenv(EnvNATSUser), "NATS user (default $"+EnvNATSUser+")")
	fs.StringVar(&f.Password, "password", os.Getenv(EnvNATSPassword), "NATS password (default $"+EnvNATSPassword+")")
	fs.StringVar(&f.NKey, "nkey", os.Getenv(EnvNATSNKey), "file with the nkey seed to sign in with (default $"+EnvNATSNKey+", which serket up --secure sets)")
	fs.StringVar(&f.TLSCA, "tls-ca", os.Getenv(EnvNATSCA), "CA certificate to trust for TLS (default $"+EnvNATSCA+")")
	fs.StringVar(&f.TLSCert, "tls-cert", os.Getenv(EnvNATSCert), "client certificate for mutual TLS (default $"+EnvNATSCert+")")
	fs.StringVar(&f.TLSKey, "tls-key", os.Getenv(EnvNATSKey), "client key for mutual TLS (default $"+EnvNATSKey+")")
	fs.StringVar(&f.LogLevel, "log-level", envOr(EnvLogLevel, "info"), "debug, info, warn or error (default $"+EnvLogLevel+", else info)")
}

func (f *Flags) registerTraining(fs FlagSet) {
	f.training = true
	fs.StringVar(&f.Data, "data", envOr(EnvData, DefaultData), "prepared dataset directory (default $"+EnvData+", else "+DefaultData+")")
	fs.Float64Var(&f.LR, "lr", envFloat(EnvLR, 1e-3), "Adam learning rate (default $"+EnvLR+", else 0.001)")
	fs.Float64Var(&f.PairedFraction, "paired-fraction", envFloat(EnvPairedFraction, 1), "fraction of training items with every modality, the rest with one each (default $"+EnvPairedFraction+", else 1)")
	fs.Uint64Var(&f.PairingSeed, "pairing-seed", envUint(EnvPairingSeed, 1), "seed of the partial-pairing mask, the same in every module (default $"+EnvPairingSeed+", else 1)")
	f.Modalities = nil
	fs.Func("modalities", "the `modules` the partial-pairing mask is drawn over, comma-separated, the same list in every module (repeatable; default $"+EnvModalities+", which serket train sets to its modules; else the module's own)", func(s string) error {
		f.Modalities = append(f.Modalities, splitList(s)...)
		return nil
	})
}

// Resolve fills in what depends on other flags or on variables that no
// flag default shows (the checkpoint path from $SERKET_CHECKPOINT_DIR and
// the name, the sensors from $SERKET_SENSORS, the pairing list from
// $SERKET_MODALITIES with "<name>" in it standing for this module) and
// checks the values. Call it after parsing. It does not hold the name to
// the bus's rule, which module.Flags.Resolve does before calling it.
func (f *Flags) Resolve() error {
	if f.Latent < 1 {
		return fmt.Errorf("--latent %d: want at least 1", f.Latent)
	}
	if f.Private < 0 || f.Private > 4096 {
		return fmt.Errorf("--private %d: want 0 (none) to 4096", f.Private)
	}
	if _, err := f.level(); err != nil {
		return err
	}
	if f.training {
		if f.PairedFraction < 0 || f.PairedFraction > 1 || f.PairedFraction != f.PairedFraction {
			return fmt.Errorf("--paired-fraction %v: want a fraction in [0, 1]", f.PairedFraction)
		}
		if !(f.LR > 0) {
			return fmt.Errorf("--lr %v: want a positive learning rate", f.LR)
		}
		if f.Modalities == nil {
			f.Modalities = splitList(os.Getenv(EnvModalities))
		}
		for i, m := range f.Modalities {
			if m == "<name>" {
				f.Modalities[i] = f.Name
			}
		}
	}
	if f.Checkpoint == "" {
		if dir := os.Getenv(EnvCheckpointDir); dir != "" {
			f.Checkpoint = filepath.Join(dir, f.Name+".ckpt")
		}
	}
	if f.Sensors == nil {
		f.Sensors = splitList(os.Getenv(EnvSensors))
	}
	return nil
}

// Logger is the process's structured logger at --log-level, writing text
// to w, tagged with the module's name.
func (f *Flags) Logger(w io.Writer) (*slog.Logger, error) {
	lvl, err := f.level()
	if err != nil {
		return nil, err
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})).With("module", f.Name), nil
}

func (f *Flags) level() (slog.Level, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.LogLevel)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", f.LogLevel)
	}
	return lvl, nil
}

// splitList splits a comma-separated list, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// The env… helpers read a flag's default: the variable's value, or def
// when it is unset or does not parse, as if the launcher had not set it.

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

func envUint(key string, def uint64) uint64 {
	if v, err := strconv.ParseUint(os.Getenv(key), 10, 64); err == nil {
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
