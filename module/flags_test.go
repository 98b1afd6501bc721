package module_test

import (
	"context"
	"flag"
	"io"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/procenv"
)

// ExampleFlags is the main of a module written outside serket: the
// contract's flags beside its own, on its own flag set.
func ExampleFlags() {
	var f module.Flags
	f.Register(flag.CommandLine, "touch", 64)
	hidden := flag.Int("hidden", 128, "units per hidden layer") // the module's own
	flag.Parse()
	if err := f.Resolve(); err != nil {
		log.Fatal(err)
	}
	logger, err := f.Logger(os.Stderr)
	if err != nil {
		log.Fatal(err)
	}
	var m module.Modality = newTouch(f.Name, f.Latent, *hidden, f.Data, f.LR)
	if err := module.Run(context.Background(), m, f.Options(logger)); err != nil {
		log.Fatal(err)
	}
}

// newTouch stands for the module's own constructor.
func newTouch(name string, latent, hidden int, data string, lr float64) module.Modality { return nil }

// The module's name is held to the bus's rule (it names subjects, the
// service and the checkpoint file) before anything is derived from it; the
// rest is procenv's to check.
func TestFlagsRefuseBadValues(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"bad name", []string{"--name", "Touch Pad"}, "--name"},
		{"a path for a name", []string{"--name", "../../etc/x"}, "--name"},
		{"empty name", []string{"--name", ""}, "--name"},
		{"no latent", []string{"--latent", "0"}, "--latent"},
		{"learning rate", []string{"--lr", "-1"}, "--lr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f module.Flags
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

// Run's options carry every setting of the flags.
func TestOptionsFromFlags(t *testing.T) {
	f := module.Flags{Flags: procenv.Flags{
		NATS: "nats://10.0.0.2:4222", Pipeline: "robot", Creds: "/c", User: "touch", Password: "s3cret", NKey: "/k.nk",
		TLSCA: "/ca", TLSCert: "/cert", TLSKey: "/key", Name: "finger", Checkpoint: "/runs/a/finger.ckpt", Train: true,
		Sensors: []string{"robot.finger"}, SensorType: "text/plain", SensorRate: 5, SayBeliefs: true,
	}}
	o := f.Options(nil)
	c := o.NATS
	if o.Pipeline != "robot" || c.URL != f.NATS || c.Name != "serket-finger" || c.Creds != "/c" || c.User != "touch" || c.Pass != "s3cret" ||
		c.NKeyFile != "/k.nk" || c.CAFile != "/ca" || c.CertFile != "/cert" || c.KeyFile != "/key" ||
		o.Checkpoint != f.Checkpoint || !o.Train || len(o.Sensors) != 1 || o.SensorType != "text/plain" || o.SensorRate != 5 || !o.SayBeliefs {
		t.Errorf("options %+v from %+v", o, f)
	}
}

// A module that joins through Flags tells the supervisor when it is ready,
// as serket's own do: Options.Ready writes to the pipe the supervisor
// named in $SERKET_READY_FD.
func TestOptionsReadyTellsTheSupervisor(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fd, err := syscall.Dup(int(w.Fd())) // the module closes the one it is handed
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Setenv(procenv.EnvReadyFD, strconv.Itoa(fd))
	var f module.Flags
	o := f.Options(nil)
	if o.Ready == nil {
		t.Fatal("Options.Ready is nil: the supervisor never learns that the module is ready")
	}
	o.Ready(nil)
	b := make([]byte, 16)
	if n, err := r.Read(b); err != nil || string(b[:n]) != "ready\n" {
		t.Errorf("the supervisor read %q (%v), want a line", b[:n], err)
	}
}

// The SDK depends on what every module needs, not on serket's dataset
// (which drags in the speech synthesis of its audio shard).
func TestSDKDoesNotImportTheDataset(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for p := range strings.FieldsSeq(string(out)) {
		if strings.HasPrefix(p, "github.com/serket-go/serket/dataset") {
			t.Errorf("module depends on %s", p)
		}
	}
}
