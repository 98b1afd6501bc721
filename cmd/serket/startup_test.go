package main

import (
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/serket-go/serket/dataset/datasettest"
)

// TestModuleUnknownKind: `serket module` with a kind it does not know is a
// usage error that lists the built-in modalities; it used to print the
// help and exit 0.
func TestModuleUnknownKind(t *testing.T) {
	t.Parallel()
	const known = "audio, concept, language, toy, vision"
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"misspelled", []string{"module", "visoin"}, []string{`unknown module kind "visoin"`, "did you mean vision?", known}},
		{"with a pipeline's flags", []string{"module", "visoin", "--data", "data/fmnist3", "--hidden", "32"}, []string{`unknown module kind "visoin"`, known}},
		{"unknown", []string{"module", "sonar"}, []string{`unknown module kind "sonar"`, known}},
		{"none", []string{"module"}, []string{"needs a KIND", known}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, err := exec.Command(serketBin, tt.args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("serket %v: %v, want a non-zero exit\n%s", tt.args, err, out)
			}
			for _, want := range tt.want {
				if !strings.Contains(string(out), want) {
					t.Errorf("serket %v says %q, want it to say %q", tt.args, out, want)
				}
			}
		})
	}
	// Asking for help is not an error.
	if out, err := exec.Command(serketBin, "module", "--help").CombinedOutput(); err != nil || !strings.Contains(string(out), "vision") {
		t.Errorf("serket module --help: %v\n%s", err, out)
	}
}

// TestUpStopsWhenAModuleFailsToStart: a module whose command is misspelled
// exits at once; serket up used to log that it "exited cleanly" and run on
// without it. Now it stops the pipeline and exits non-zero, naming the
// module, its exit status and what it said.
func TestUpStopsWhenAModuleFailsToStart(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "typo.yaml", `
pipeline: typo
latent: 4
modules:
  - {name: left, command: [serket, module, toy], args: [--dim, "3"]}
  - {name: vision, command: [serket, module, visoin]}
`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, serketBin, "up", "--port", "0", file).CombinedOutput()
	took := time.Since(t0)
	if ctx.Err() != nil {
		t.Fatalf("serket up ran on for %v with a module that could not start:\n%s", took, out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("serket up: %v, want a non-zero exit\n%s", err, out)
	}
	for _, want := range []string{"vision exited during start-up: exit status 1", `vision | serket: usage: serket module: unknown module kind "visoin" (did you mean vision?)`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("serket up's output does not say %q:\n%s", want, out)
		}
	}
	// The others were started and are stopped with it.
	started := regexp.MustCompile(`msg="process started" .*name=(\S+) pid=(\d+)`).FindAllStringSubmatch(string(out), -1)
	if len(started) != 3 {
		t.Errorf("%d processes started, want 3 (integrator, left, vision):\n%s", len(started), out)
	}
	for _, m := range started {
		if pid, _ := strconv.Atoi(m[2]); alive(pid) {
			t.Errorf("%s (pid %d) outlived serket up", m[1], pid)
		}
	}
	t.Logf("serket up exited %v after it started", took.Round(time.Millisecond))
}

// TestTrainStopsWhenAModuleFailsToStart: serket train watches the pipeline
// it launched; a module that fails to start ends the command at once with
// the reason, not after waiting --module-wait for it.
func TestTrainStopsWhenAModuleFailsToStart(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "typo-train.yaml", `
pipeline: typotrain
latent: 4
modules:
  - {name: vision, command: [serket, module, visoin]}
`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, serketBin, "train", file, "--data", datasettest.Dir(t), "--checkpoint-dir", t.TempDir(), "--module-wait", "50s").CombinedOutput()
	took := time.Since(t0)
	if err == nil || took > 30*time.Second {
		t.Fatalf("serket train: %v after %v; want it to fail at once\n%s", err, took, out)
	}
	if !strings.Contains(string(out), "the pipeline stopped: launch: vision exited during start-up") {
		t.Errorf("serket train's output does not say the pipeline stopped:\n%s", out)
	}
}
