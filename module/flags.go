package module

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
)

// Flags are the settings every module process takes, whatever its modality:
// where NATS is and how to authenticate, which pipeline, its name and
// latent size, its checkpoint, the training settings the launcher hands
// down, and streaming. Register declares them on a flag.FlagSet with their
// defaults from the environment that `serket up` and `serket train` give
// their children, so a module written outside serket (see
// examples/custom-modality) runs under the launcher with no arguments:
//
//	var f module.Flags
//	f.Register(flag.CommandLine, "touch", 64)
//	flag.Parse()
//	log, err := f.Logger(os.Stderr)
//	…
//	err = module.Run(ctx, m, f.Options(log))
//
// The environment (each variable the default of one flag):
//
//	NATS_URL, NATS_CREDS, NATS_USER, NATS_PASSWORD   --nats --creds --user --password
//	NATS_NKEY                                         --nkey
//	NATS_CA, NATS_CERT, NATS_KEY                      --tls-ca --tls-cert --tls-key
//	SERKET_PIPELINE, SERKET_MODULE, SERKET_LATENT     --pipeline --name --latent
//	SERKET_DATA, SERKET_LR, SERKET_LOG_LEVEL          --data --lr --log-level
//	SERKET_CHECKPOINT_DIR (+ /<name>.ckpt)            --checkpoint
//	SERKET_TRAIN=1                                    --train
//	SERKET_PAIRED_FRACTION, SERKET_PAIRING_SEED,
//	SERKET_MODALITIES (comma-separated)               --paired-fraction --pairing-seed --modalities
//	SERKET_SENSORS (comma-separated),
//	SERKET_SENSOR_TYPE, SERKET_SENSOR_RATE,
//	SERKET_SAY_BELIEFS=1                              --sensor --sensor-type --sensor-rate --say-beliefs
type Flags struct {
	NATS, Pipeline, Creds, User, Password string
	NKey                                  string // a file holding an nkey seed
	TLSCA, TLSCert, TLSKey                string
	LogLevel                              string

	Name       string
	Latent     int
	Data       string // the prepared dataset directory
	LR         float64
	Checkpoint string
	// Train lets the module take part in training runs (Options.Train);
	// without it, it serves inference only and never changes its weights.
	Train bool

	// The partial-pairing mask: every module of a pipeline must draw it
	// with the same fraction, seed and list of modalities.
	PairedFraction float64
	PairingSeed    uint64
	Modalities     []string

	Sensors    []string
	SensorType string
	SensorRate float64
	SayBeliefs bool
}

// EnvTrain is the environment variable that starts a module process for
// training ("1"): serket train and serket up with a training integrator
// set it for their modules.
const EnvTrain = "SERKET_TRAIN"

// DefaultModalities are the modalities of serket's own dataset, the
// default list a partial-pairing mask is drawn over.
var DefaultModalities = dataset.Modalities()

// Register declares the flags on fs. kind names the modality (the default
// module name) and defaultLatent is the latent size when $SERKET_LATENT is
// unset. Call Resolve after fs.Parse, or use Parse.
func (f *Flags) Register(fs *flag.FlagSet, kind string, defaultLatent int) {
	fs.StringVar(&f.NATS, "nats", os.Getenv("NATS_URL"), "NATS server URL (default $NATS_URL, else "+bus.DefaultURL+")")
	fs.StringVar(&f.Pipeline, "pipeline", os.Getenv("SERKET_PIPELINE"), "pipeline name (default $SERKET_PIPELINE, else "+bus.DefaultPipeline+")")
	fs.StringVar(&f.Creds, "creds", os.Getenv("NATS_CREDS"), "NATS credentials file (default $NATS_CREDS)")
	fs.StringVar(&f.User, "user", os.Getenv("NATS_USER"), "NATS user (default $NATS_USER)")
	fs.StringVar(&f.Password, "password", os.Getenv("NATS_PASSWORD"), "NATS password (default $NATS_PASSWORD)")
	fs.StringVar(&f.NKey, "nkey", os.Getenv("NATS_NKEY"), "file with the nkey seed to sign in with (serket up --secure sets $NATS_NKEY)")
	fs.StringVar(&f.TLSCA, "tls-ca", os.Getenv("NATS_CA"), "CA certificate to trust for TLS (default $NATS_CA)")
	fs.StringVar(&f.TLSCert, "tls-cert", os.Getenv("NATS_CERT"), "client certificate for mutual TLS (default $NATS_CERT)")
	fs.StringVar(&f.TLSKey, "tls-key", os.Getenv("NATS_KEY"), "client key for mutual TLS (default $NATS_KEY)")
	fs.StringVar(&f.LogLevel, "log-level", envOr("SERKET_LOG_LEVEL", "info"), "debug, info, warn or error (default $SERKET_LOG_LEVEL, else info)")

	fs.StringVar(&f.Name, "name", envOr("SERKET_MODULE", kind), "module name in the pipeline (default $SERKET_MODULE, else "+kind+")")
	fs.IntVar(&f.Latent, "latent", envInt("SERKET_LATENT", defaultLatent), fmt.Sprintf("latent size (default $SERKET_LATENT, else %d)", defaultLatent))
	fs.StringVar(&f.Data, "data", dataset.DefaultDir(), "prepared dataset directory (default $SERKET_DATA, else data/fmnist3)")
	fs.Float64Var(&f.LR, "lr", envFloat("SERKET_LR", 1e-3), "Adam learning rate (default $SERKET_LR, else 0.001)")
	fs.StringVar(&f.Checkpoint, "checkpoint", "", "parameter file: restored at start if it exists, saved when the integrator of a training run asks (default $SERKET_CHECKPOINT_DIR/<name>.ckpt)")
	fs.BoolVar(&f.Train, "train", os.Getenv(EnvTrain) == "1", "take part in training runs (default $"+EnvTrain+"=1, which serket train sets); without it the module serves inference only and never changes its weights or checkpoint")

	fs.Float64Var(&f.PairedFraction, "paired-fraction", envFloat("SERKET_PAIRED_FRACTION", 1), "fraction of training items with every modality (default $SERKET_PAIRED_FRACTION, else 1)")
	fs.Uint64Var(&f.PairingSeed, "pairing-seed", uint64(envInt("SERKET_PAIRING_SEED", 1)), "seed of the partial-pairing mask (default $SERKET_PAIRING_SEED, else 1)")
	modalities := strings.Join(DefaultModalities, ",") + ",<name>"
	if v := os.Getenv("SERKET_MODALITIES"); v != "" {
		modalities = v
	}
	fs.Func("modalities", "the modalities the pairing mask is drawn over, the same list in every module (default $SERKET_MODALITIES, which serket train sets to its modules; else "+modalities+")", func(s string) error {
		f.Modalities = splitList(s)
		return nil
	})
	f.Modalities = splitList(modalities)

	fs.Func("sensor", "stream from this NATS subject, one observation a message (repeatable; default $SERKET_SENSORS, comma-separated)", func(s string) error {
		f.Sensors = append(f.Sensors, s)
		return nil
	})
	fs.StringVar(&f.SensorType, "sensor-type", os.Getenv("SERKET_SENSOR_TYPE"), "media type of sensor messages without a Content-Type header (default $SERKET_SENSOR_TYPE)")
	fs.Float64Var(&f.SensorRate, "sensor-rate", envFloat("SERKET_SENSOR_RATE", 0), "at most this many posteriors a second from the sensors (0: as fast as it encodes; default $SERKET_SENSOR_RATE)")
	fs.BoolVar(&f.SayBeliefs, "say-beliefs", os.Getenv("SERKET_SAY_BELIEFS") == "1", "render the pipeline's beliefs, publish and log them (default $SERKET_SAY_BELIEFS=1)")
}

// Parse registers the flags on a new flag set named after kind, parses
// args and resolves the defaults that depend on other flags. Extra
// positional arguments are an error; flag.ErrHelp is returned for -h.
func (f *Flags) Parse(kind string, defaultLatent int, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.Register(fs, kind, defaultLatent)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", kind, fs.Arg(0))
	}
	return f.Resolve()
}

// Resolve fills in what depends on other flags (the checkpoint path from
// $SERKET_CHECKPOINT_DIR and the name, the sensors from $SERKET_SENSORS,
// "<name>" in the modalities) and checks the values. Call it after parsing.
func (f *Flags) Resolve() error {
	if !bus.ValidName(f.Name) {
		return fmt.Errorf("--name %q: want a module name (lower-case letters, digits and dashes)", f.Name)
	}
	if f.Latent < 1 {
		return fmt.Errorf("--latent %d: want at least 1", f.Latent)
	}
	if f.PairedFraction < 0 || f.PairedFraction > 1 || f.PairedFraction != f.PairedFraction {
		return fmt.Errorf("--paired-fraction %v: want a fraction in [0, 1]", f.PairedFraction)
	}
	if !(f.LR > 0) {
		return fmt.Errorf("--lr %v: want a positive learning rate", f.LR)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.LogLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", f.LogLevel)
	}
	if f.Checkpoint == "" {
		if dir := os.Getenv("SERKET_CHECKPOINT_DIR"); dir != "" {
			f.Checkpoint = filepath.Join(dir, f.Name+".ckpt")
		}
	}
	if f.Sensors == nil {
		f.Sensors = splitList(os.Getenv("SERKET_SENSORS"))
	}
	for i, m := range f.Modalities {
		if m == "<name>" {
			f.Modalities[i] = f.Name
		}
	}
	return nil
}

// Logger is the process's structured logger at --log-level, tagged with the
// module's name.
func (f *Flags) Logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", f.LogLevel)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})).With("module", f.Name), nil
}

// Options are Run's options from the flags.
func (f *Flags) Options(log *slog.Logger) Options {
	return Options{
		Pipeline: f.Pipeline,
		NATS: bus.ConnConfig{URL: f.NATS, Name: bus.ServiceName(f.Name), Creds: f.Creds, User: f.User, Pass: f.Password, NKeyFile: f.NKey,
			CAFile: f.TLSCA, CertFile: f.TLSCert, KeyFile: f.TLSKey, Logger: log},
		Logger:     log,
		Train:      f.Train,
		Checkpoint: f.Checkpoint,
		Sensors:    f.Sensors,
		SensorType: f.SensorType,
		SensorRate: f.SensorRate,
		SayBeliefs: f.SayBeliefs,
	}
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
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
