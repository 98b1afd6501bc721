package module_test

import (
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/serket-go/serket/module"
)

// A module started by the launcher reads everything from its environment;
// flags override it; the checkpoint and the pairing list follow the name.
func TestFlagsFromEnvironment(t *testing.T) {
	env := map[string]string{
		"NATS_URL": "nats://10.0.0.2:4222", "NATS_USER": "touch", "NATS_PASSWORD": "s3cret", "NATS_CA": "/etc/ca.pem",
		"SERKET_PIPELINE": "robot", "SERKET_MODULE": "finger", "SERKET_LATENT": "32", "SERKET_DATA": "/data",
		"SERKET_LR": "0.01", "SERKET_CHECKPOINT_DIR": "/runs/a", "SERKET_TRAIN": "1",
		"SERKET_PAIRED_FRACTION": "0.1", "SERKET_PAIRING_SEED": "7", "SERKET_SENSORS": "robot.finger,robot.palm",
		"SERKET_SENSOR_TYPE": "text/plain", "SERKET_SENSOR_RATE": "5", "SERKET_SAY_BELIEFS": "1",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	var f module.Flags
	if err := f.Parse("touch", 64, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	o := f.Options(nil)
	if f.Name != "finger" || f.Latent != 32 || f.Data != "/data" || f.LR != 0.01 || f.PairedFraction != 0.1 || f.PairingSeed != 7 ||
		o.Pipeline != "robot" || o.NATS.URL != "nats://10.0.0.2:4222" || o.NATS.User != "touch" || o.NATS.Pass != "s3cret" || o.NATS.CAFile != "/etc/ca.pem" ||
		o.NATS.Name != "serket-finger" || o.Checkpoint != filepath.Join("/runs/a", "finger.ckpt") || !o.Train ||
		!slices.Equal(o.Sensors, []string{"robot.finger", "robot.palm"}) || o.SensorType != "text/plain" || o.SensorRate != 5 || !o.SayBeliefs {
		t.Errorf("from the environment: %+v, options %+v", f, o)
	}
	if want := []string{"vision", "language", "audio", "finger"}; !slices.Equal(f.Modalities, want) {
		t.Errorf("modalities %q, want %q (the built-ins and this module)", f.Modalities, want)
	}

	t.Setenv("SERKET_MODALITIES", "vision,finger")
	var g module.Flags
	if err := g.Parse("touch", 64, []string{"--name", "palm", "--latent", "8", "--sensor", "robot.x", "--checkpoint", "p.ckpt"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if g.Name != "palm" || g.Latent != 8 || !slices.Equal(g.Sensors, []string{"robot.x"}) || g.Checkpoint != "p.ckpt" || !slices.Equal(g.Modalities, []string{"vision", "finger"}) {
		t.Errorf("flags over the environment: %+v", g)
	}
}

func TestFlagsRefuseBadValues(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"bad name", []string{"--name", "Touch Pad"}, "--name"},
		{"no latent", []string{"--latent", "0"}, "--latent"},
		{"fraction", []string{"--paired-fraction", "1.5"}, "--paired-fraction"},
		{"learning rate", []string{"--lr", "-1"}, "--lr"},
		{"log level", []string{"--log-level", "loud"}, "--log-level"},
		{"stray argument", []string{"serve"}, `unexpected argument "serve"`},
		{"unknown flag", []string{"--colour", "red"}, "colour"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f module.Flags
			err := f.Parse("touch", 64, tt.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) = %v, want an error naming %s", tt.args, err, tt.wantErr)
			}
		})
	}
}
