package procenv_test

import (
	"flag"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/procenv"
)

var _ procenv.FlagSet = (*pflag.FlagSet)(nil)

// The names are the wire between launchers and modules, built against
// different versions of serket: they never change.
func TestNamesDoNotChange(t *testing.T) {
	for got, want := range map[string]string{
		procenv.EnvNATSURL: "NATS_URL", procenv.EnvNATSCreds: "NATS_CREDS", procenv.EnvNATSUser: "NATS_USER",
		procenv.EnvNATSPassword: "NATS_PASSWORD", procenv.EnvNATSNKey: "NATS_NKEY", procenv.EnvNATSCA: "NATS_CA",
		procenv.EnvNATSCert: "NATS_CERT", procenv.EnvNATSKey: "NATS_KEY",
		procenv.EnvPipeline: "SERKET_PIPELINE", procenv.EnvLatent: "SERKET_LATENT", procenv.EnvLogLevel: "SERKET_LOG_LEVEL",
		procenv.EnvModule: "SERKET_MODULE", procenv.EnvRestart: "SERKET_RESTART", procenv.EnvReadyFD: "SERKET_READY_FD",
		procenv.EnvTrain: "SERKET_TRAIN", procenv.EnvCheckpointDir: "SERKET_CHECKPOINT_DIR", procenv.EnvData: "SERKET_DATA",
		procenv.EnvLR: "SERKET_LR", procenv.EnvPairedFraction: "SERKET_PAIRED_FRACTION", procenv.EnvPairingSeed: "SERKET_PAIRING_SEED",
		procenv.EnvModalities: "SERKET_MODALITIES", procenv.EnvSensors: "SERKET_SENSORS", procenv.EnvSensorType: "SERKET_SENSOR_TYPE",
		procenv.EnvSensorRate: "SERKET_SENSOR_RATE", procenv.EnvSayBeliefs: "SERKET_SAY_BELIEFS",
		procenv.EnvPipelineFile: "SERKET_PIPELINE_FILE", procenv.EnvSlop: "SERKET_SLOP", procenv.EnvMaxAhead: "SERKET_MAX_AHEAD",
		procenv.EnvBeliefPeriod: "SERKET_BELIEF_PERIOD",
	} {
		if got != want {
			t.Errorf("%s is now %s", want, got)
		}
	}
}

// A module started by the launcher reads everything from its environment;
// the checkpoint follows the name.
func TestFlagsFromEnvironment(t *testing.T) {
	for k, v := range map[string]string{
		"NATS_URL": "nats://10.0.0.2:4222", "NATS_USER": "touch", "NATS_PASSWORD": "s3cret", "NATS_CA": "/etc/ca.pem",
		"NATS_CREDS": "/c", "NATS_NKEY": "/k.nk", "NATS_CERT": "/cert.pem", "NATS_KEY": "/key.pem",
		"SERKET_PIPELINE": "robot", "SERKET_MODULE": "finger", "SERKET_LATENT": "32", "SERKET_DATA": "/data", "SERKET_LOG_LEVEL": "warn",
		"SERKET_LR": "0.01", "SERKET_CHECKPOINT_DIR": "/runs/a", "SERKET_TRAIN": "1",
		"SERKET_PAIRED_FRACTION": "0.1", "SERKET_PAIRING_SEED": "7", "SERKET_MODALITIES": "vision,<name>",
		"SERKET_SENSORS": "robot.finger,robot.palm", "SERKET_SENSOR_TYPE": "text/plain", "SERKET_SENSOR_RATE": "5", "SERKET_SAY_BELIEFS": "1",
	} {
		t.Setenv(k, v)
	}
	f := parse(t, nil)
	want := procenv.Flags{
		NATS: "nats://10.0.0.2:4222", Pipeline: "robot", Creds: "/c", User: "touch", Password: "s3cret", NKey: "/k.nk",
		TLSCA: "/etc/ca.pem", TLSCert: "/cert.pem", TLSKey: "/key.pem", LogLevel: "warn",
		Name: "finger", Latent: 32, Checkpoint: filepath.Join("/runs/a", "finger.ckpt"), Train: true,
		Sensors: []string{"robot.finger", "robot.palm"}, SensorType: "text/plain", SensorRate: 5, SayBeliefs: true,
		Data: "/data", LR: 0.01, PairedFraction: 0.1, PairingSeed: 7, Modalities: []string{"vision", "finger"},
	}
	if !sameFlags(f, want) {
		t.Errorf("from the environment:\n got %+v\nwant %+v", f, want)
	}

	g := parse(t, []string{"--name", "palm", "--latent", "8", "--sensor", "robot.x", "--checkpoint", "p.ckpt", "--modalities", "vision", "--modalities", "palm,audio", "--train=false"})
	if g.Name != "palm" || g.Latent != 8 || !slices.Equal(g.Sensors, []string{"robot.x"}) || g.Checkpoint != "p.ckpt" || g.Train ||
		!slices.Equal(g.Modalities, []string{"vision", "palm", "audio"}) {
		t.Errorf("flags over the environment: %+v", g)
	}
}

// Without a launcher: the defaults. No pairing list, so that each module
// draws over its own default.
func TestFlagsDefaults(t *testing.T) {
	for _, k := range []string{procenv.EnvNATSURL, procenv.EnvNATSCreds, procenv.EnvNATSUser, procenv.EnvNATSPassword, procenv.EnvNATSNKey,
		procenv.EnvNATSCA, procenv.EnvNATSCert, procenv.EnvNATSKey, procenv.EnvPipeline, procenv.EnvModule, procenv.EnvLatent,
		procenv.EnvLogLevel, procenv.EnvTrain, procenv.EnvCheckpointDir, procenv.EnvData, procenv.EnvLR, procenv.EnvPairedFraction,
		procenv.EnvPairingSeed, procenv.EnvModalities, procenv.EnvSensors, procenv.EnvSensorType, procenv.EnvSensorRate, procenv.EnvSayBeliefs} {
		t.Setenv(k, "") // as if unset: an empty value is no setting
	}
	f := parse(t, nil)
	want := procenv.Flags{LogLevel: "info", Name: "touch", Latent: 64, Data: procenv.DefaultData, LR: 1e-3, PairedFraction: 1, PairingSeed: 1}
	if !sameFlags(f, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", f, want)
	}
}

func TestFlagsRefuseBadValues(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no latent", []string{"--latent", "0"}, "--latent"},
		{"fraction", []string{"--paired-fraction", "1.5"}, "--paired-fraction"},
		{"NaN fraction", []string{"--paired-fraction", "NaN"}, "--paired-fraction"},
		{"learning rate", []string{"--lr", "-1"}, "--lr"},
		{"log level", []string{"--log-level", "loud"}, "--log-level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f procenv.Flags
			fs := flag.NewFlagSet("touch", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			f.Register(fs, "touch", 64)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if err := f.Resolve(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Resolve after %q = %v, want an error naming %s", tt.args, err, tt.wantErr)
			}
		})
	}
}

// A module with flags of its own declares the contract's on its own flag
// set, the standard library's or pflag's (cobra's), and parses once.
func TestFlagsComposeWithAModulesOwn(t *testing.T) {
	t.Setenv(procenv.EnvLatent, "")
	args := []string{"--hidden", "16", "--latent", "8", "--sensor", "a.b", "--lr", "0.5"}
	t.Run("flag", func(t *testing.T) {
		var f procenv.Flags
		fs := flag.NewFlagSet("touch", flag.ContinueOnError)
		f.Register(fs, "touch", 64)
		hidden := fs.Int("hidden", 128, "units per hidden layer")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		if err := f.Resolve(); err != nil || *hidden != 16 || f.Latent != 8 || f.LR != 0.5 || !slices.Equal(f.Sensors, []string{"a.b"}) {
			t.Errorf("%v: hidden %d, flags %+v", err, *hidden, f)
		}
	})
	t.Run("pflag", func(t *testing.T) {
		var f procenv.Flags
		fs := pflag.NewFlagSet("touch", pflag.ContinueOnError)
		f.Register(fs, "touch", 64)
		hidden := fs.Int("hidden", 128, "units per hidden layer")
		if err := fs.Parse(append(args, "--train")); err != nil {
			t.Fatal(err)
		}
		if err := f.Resolve(); err != nil || *hidden != 16 || f.Latent != 8 || f.LR != 0.5 || !f.Train || !slices.Equal(f.Sensors, []string{"a.b"}) {
			t.Errorf("%v: hidden %d, flags %+v", err, *hidden, f)
		}
		if !strings.Contains(fs.FlagUsages(), "--sensor subject") {
			t.Errorf("pflag shows --sensor as:\n%s", fs.FlagUsages())
		}
	})
}

// RegisterProcess leaves the training flags to the module: one with its
// own --lr (serket's toy) declares it, and Resolve does not ask for one.
func TestRegisterProcessLeavesTheTrainingFlags(t *testing.T) {
	var f procenv.Flags
	fs := pflag.NewFlagSet("toy", pflag.ContinueOnError)
	f.RegisterProcess(fs, "toy", 16)
	lr := fs.Float64("lr", 0.01, "the toy's own")
	if err := fs.Parse([]string{"--lr", "0.2"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Resolve(); err != nil || *lr != 0.2 || f.LR != 0 {
		t.Errorf("Resolve: %v; the toy's --lr %v, the contract's %v", err, *lr, f.LR)
	}
	for _, name := range []string{"data", "paired-fraction", "pairing-seed", "modalities"} {
		if fs.Lookup(name) != nil {
			t.Errorf("RegisterProcess declared --%s", name)
		}
	}
}

// The help shows the bus's defaults, which procenv writes without
// importing bus.
func TestHelpShowsTheBusDefaults(t *testing.T) {
	var f procenv.Flags
	fs := pflag.NewFlagSet("touch", pflag.ContinueOnError)
	f.Register(fs, "touch", 64)
	if u := fs.Lookup("nats").Usage; !strings.Contains(u, "else "+bus.DefaultURL+")") {
		t.Errorf("--nats: %q, want bus.DefaultURL %s", u, bus.DefaultURL)
	}
	if u := fs.Lookup("pipeline").Usage; !strings.Contains(u, "else "+bus.DefaultPipeline+")") {
		t.Errorf("--pipeline: %q, want bus.DefaultPipeline %s", u, bus.DefaultPipeline)
	}
}

// procenv is imported by every package that names a variable, the
// dataset's included: it must not pull in serket's others (and with bus,
// NATS).
func TestImportsNothingOfSerkets(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for p := range strings.FieldsSeq(string(out)) {
		if strings.HasPrefix(p, "github.com/") && p != "github.com/serket-go/serket/procenv" {
			t.Errorf("procenv depends on %s", p)
		}
	}
}

func parse(t *testing.T, args []string) procenv.Flags {
	t.Helper()
	var f procenv.Flags
	fs := flag.NewFlagSet("touch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.Register(fs, "touch", 64)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := f.Resolve(); err != nil {
		t.Fatal(err)
	}
	return f
}

// sameFlags compares the exported fields.
func sameFlags(a, b procenv.Flags) bool {
	return a.NATS == b.NATS && a.Pipeline == b.Pipeline && a.Creds == b.Creds && a.User == b.User && a.Password == b.Password &&
		a.NKey == b.NKey && a.TLSCA == b.TLSCA && a.TLSCert == b.TLSCert && a.TLSKey == b.TLSKey && a.LogLevel == b.LogLevel &&
		a.Name == b.Name && a.Latent == b.Latent && a.Checkpoint == b.Checkpoint && a.Train == b.Train &&
		slices.Equal(a.Sensors, b.Sensors) && a.SensorType == b.SensorType && a.SensorRate == b.SensorRate && a.SayBeliefs == b.SayBeliefs &&
		a.Data == b.Data && a.LR == b.LR && a.PairedFraction == b.PairedFraction && a.PairingSeed == b.PairingSeed &&
		slices.Equal(a.Modalities, b.Modalities)
}
