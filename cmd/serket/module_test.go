package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/procenv"
)

// TestModuleCommandsTakeTheContract: `serket module KIND` declares the
// module-process contract's flags from module.Flags, with its defaults and
// help, as a module written outside serket does; no second list.
func TestModuleCommandsTakeTheContract(t *testing.T) {
	t.Parallel()
	cmds := append(modalityCmds(), newToyCmd())
	for _, cmd := range cmds {
		t.Run(cmd.Name(), func(t *testing.T) {
			var f module.Flags
			want := pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
			if cmd.Name() == "toy" {
				f.RegisterProcess(want, "toy", 16)
			} else {
				f.Register(want, cmd.Name(), 64)
			}
			n := 0
			want.VisitAll(func(w *pflag.Flag) {
				n++
				got := cmd.LocalFlags().Lookup(w.Name)
				if got == nil {
					t.Errorf("no --%s", w.Name)
					return
				}
				if got.DefValue != w.DefValue || got.Usage != w.Usage {
					t.Errorf("--%s: default %q, %q; the contract's %q, %q", w.Name, got.DefValue, got.Usage, w.DefValue, w.Usage)
				}
			})
			if n < 18 {
				t.Errorf("the contract has %d flags, want the connection, module and streaming ones at least", n)
			}
		})
	}
}

// TestUpGivesModulesTheContract: every variable serket up gives a module
// is one the module-process contract names, and module.Flags reads each
// (an unread one would be a setting lost between launcher and module),
// except those for other readers: the integrator's pipeline file and
// restart count, and the readiness pipe that NotifyReady reads.
func TestUpGivesModulesTheContract(t *testing.T) {
	env := moduleEnvFromUp(t)
	ignored := []string{procenv.EnvPipelineFile, procenv.EnvRestart, procenv.EnvReadyFD}
	names := []string{procenv.EnvNATSURL, procenv.EnvNATSCreds, procenv.EnvNATSUser, procenv.EnvNATSPassword, procenv.EnvNATSNKey,
		procenv.EnvNATSCA, procenv.EnvNATSCert, procenv.EnvNATSKey, procenv.EnvPipeline, procenv.EnvLatent, procenv.EnvLogLevel,
		procenv.EnvModule, procenv.EnvTrain, procenv.EnvCheckpointDir, procenv.EnvLR, procenv.EnvPairedFraction, procenv.EnvPairingSeed,
		procenv.EnvModalities, procenv.EnvSensors, procenv.EnvSensorType, procenv.EnvSensorRate, procenv.EnvSayBeliefs}
	for _, k := range append(names, ignored...) {
		if _, ok := env[k]; !ok {
			t.Errorf("serket up did not set %s", k)
		}
	}
	all := readFlags(t, env, "")
	for k := range env {
		if slices.Contains(ignored, k) {
			continue
		}
		if !slices.Contains(names, k) && k != procenv.EnvData {
			t.Errorf("serket up set %s, which the contract does not name", k)
			continue
		}
		if without := readFlags(t, env, k); reflect.DeepEqual(all, without) {
			t.Errorf("module.Flags does not read %s=%s", k, env[k])
		}
	}
}

// moduleEnvFromUp runs serket up with every setting that reaches a module
// and returns the SERKET_ and NATS_ variables its module was started with.
func moduleEnvFromUp(t *testing.T) map[string]string {
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	file := writeFile(t, "probe.yaml", fmt.Sprintf(`
pipeline: probe
latent: 7
nats: {port: 0}
integrator:
  command: [/bin/sh, -c, "exec sleep 600"]
  args: [--train]   # serket up then lets its modules train
modules:
  - name: probe
    command: [/bin/sh, -c, 'env > "$PROBE_OUT.tmp" && mv "$PROBE_OUT.tmp" "$PROBE_OUT"; exec sleep 600']
    env: {PROBE_OUT: %q}
    sensors: [robot.finger]
    sensor_type: text/plain
    rate: 5
    say_beliefs: true
    startup: 1m
train: {checkpoint_dir: %q, paired_fraction: 0.5, pairing_seed: 3, lr: 0.002}
`, out, filepath.Join(dir, "run")))
	_, log := startUp(t, "--secure", "--key-dir", filepath.Join(dir, "keys"), "--log-level", "warn",
		"--creds", "/creds", "--user", "u", "--password", "p", "--tls-ca", "/ca", "--tls-cert", "/cert", "--tls-key", "/key", file)
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(out)
		if err == nil {
			env := map[string]string{}
			for kv := range strings.Lines(string(b)) {
				k, v, _ := strings.Cut(strings.TrimSuffix(kv, "\n"), "=")
				if strings.HasPrefix(k, "SERKET_") || strings.HasPrefix(k, "NATS_") {
					env[k] = v
				}
			}
			return env
		}
		if time.Now().After(deadline) {
			t.Fatalf("the module did not write its environment:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readFlags is module.Flags, registered on a cobra command as serket's
// modules do and resolved, in the environment env without the variable
// drop (and without any other of the contract's).
func readFlags(t *testing.T, env map[string]string, drop string) module.Flags {
	for k, v := range env {
		if k != drop {
			t.Setenv(k, v)
		} else {
			t.Setenv(k, "")
		}
	}
	var f module.Flags
	cmd := &cobra.Command{Use: "kind"}
	f.Register(cmd.Flags(), "kind", 64)
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	if err := f.Resolve(); err != nil {
		t.Fatalf("without %s: %v", drop, err)
	}
	return f
}
