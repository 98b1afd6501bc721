package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/examples/custom-modality/touchsim"
	"github.com/serket-go/serket/integrator"
)

// The fault tests run a real pipeline (`serket up` or `serket train`, the
// vision and language modules with small networks, the small real
// dataset), inject a fault mid-training and check that training goes on
// and that nothing is lost or logged twice. Each waits on real conditions
// (files, discovery, logs), bounded by a context.

// faultSteps is the steps per epoch of faultPipeline: the small dataset's
// training items in batches of 20.
const faultSteps = datasettest.Items / 20

// faultPipeline writes a pipeline file: vision and language, restarted on
// failure, and an integrator that trains them for epochs epochs
// (checkpoints in ckpt every 5 steps) and resumes after a restart (serket
// up tells it it was restarted). extra adds the concept module as the
// prior ("concept") or the Python touch module ("touchpy", whose readings
// the dataset must hold).
func faultPipeline(t *testing.T, ckpt string, epochs int, extra string) string {
	t.Helper()
	restart := `restart: {policy: on-failure, backoff: 100ms, max_backoff: 500ms}`
	prior, python := "", ""
	switch extra {
	case "concept":
		// Learning from the first step, over the small dataset's items.
		prior = fmt.Sprintf("prior: {name: concept, args: [--warmup, \"0\", --items, \"%d\"], %s}", datasettest.Items, restart)
	case "touchpy":
		script, err := filepath.Abs("../../examples/python-touch/touch.py")
		if err != nil {
			t.Fatal(err)
		}
		python = fmt.Sprintf(`  - {name: touchpy, exec: [%s, %s, --hidden, "32"], %s}`, pythonBin(t), script, restart)
	}
	return writeFile(t, "faults.yaml", fmt.Sprintf(`
pipeline: faults
latent: 8
integrator:
  args: [--train]
  %[1]s
modules:
  - {name: vision, args: [--hidden, "32"], %[1]s}
  - {name: language, args: [--hidden, "32"], %[1]s}
%[5]s
train:
  epochs: %[2]d
  batch: 20
  plan: cross
  lambda: {language: 10}
  checkpoint_dir: %[3]s
  checkpoint_every: 5
  step_deadline: 1s
  eval_items: 0
%[4]s
`, restart, epochs, ckpt, prior, python))
}

// upFaultPipeline starts `serket up` with faultPipeline on the NATS server
// at url, and returns its output and a client connection to the server.
func upFaultPipeline(t *testing.T, url, ckpt string, epochs int, extra string) (*syncBuffer, *nats.Conn) {
	t.Helper()
	t.Setenv("SERKET_DATA", datasettest.Dir(t))
	if extra == "touchpy" {
		if _, err := touchsim.Prepare(datasettest.Dir(t), 1); err != nil {
			t.Fatal(err)
		}
	}
	_, out := startUp(t, "--nats", url, faultPipeline(t, ckpt, epochs, extra))
	nc, err := bus.Connect(bus.ConnConfig{URL: url, Name: "fault-test", Wait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return out, nc
}

// epochsLogged reads the metrics log in ckpt (nothing if it is not there yet).
func epochsLogged(t *testing.T, ckpt string) []integrator.EpochStats {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(ckpt, "metrics.jsonl"))
	if err != nil {
		return nil
	}
	var out []integrator.EpochStats
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if !strings.HasSuffix(line, "\n") {
			break // being written
		}
		var es integrator.EpochStats
		if err := json.Unmarshal([]byte(line), &es); err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out = append(out, es)
	}
	return out
}

// checkEveryEpochOnce wants the metrics log to hold epochs 0..epochs-1 in
// order, once each, each of all its steps, the steps numbered on.
func checkEveryEpochOnce(t *testing.T, ckpt string, epochs int) []integrator.EpochStats {
	t.Helper()
	got := epochsLogged(t, ckpt)
	var summary []string
	for _, es := range got {
		summary = append(summary, fmt.Sprintf("epoch %d: %d steps to step %d, missed %v", es.Epoch, es.Steps, es.LastStep, es.Missed))
	}
	if len(got) != epochs {
		t.Fatalf("%d lines in the metrics log, want %d (one per epoch):\n%s", len(got), epochs, strings.Join(summary, "\n"))
	}
	for i, es := range got {
		if es.Epoch != i || es.Steps != faultSteps || es.LastStep != uint64((i+1)*faultSteps) {
			t.Fatalf("metrics line %d is of epoch %d, %d steps to step %d: want epoch %d, %d steps to step %d:\n%s",
				i, es.Epoch, es.Steps, es.LastStep, i, faultSteps, (i+1)*faultSteps, strings.Join(summary, "\n"))
		}
	}
	return got
}

// pidOf waits until name (a module, or "integrator") is live in a process
// other than not, and returns its pid.
func pidOf(t *testing.T, ctx context.Context, nc *nats.Conn, name string, not int) int {
	t.Helper()
	for {
		svcs, err := bus.Discover(ctx, nc, bus.DiscoverConfig{Pipeline: "faults", Window: 100 * time.Millisecond})
		if err == nil {
			if pid := pids(svcs)[name]; pid != 0 && pid != not {
				return pid
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("%s is not live (in a new process): %v", name, ctx.Err())
		}
	}
}

// trainStatus asks module for its training counters.
func trainStatus(nc *nats.Conn, module string) (steps int, step uint64, err error) {
	subj, _ := bus.NewSubjects("faults")
	msg, err := nc.Request(subj.TrainStatus(module), nil, 2*time.Second)
	if err != nil {
		return 0, 0, err
	}
	var st struct {
		Steps   int    `json:"steps"`
		Learned int    `json:"learned"` // a prior module's steps
		Step    uint64 `json:"step"`
	}
	err = json.Unmarshal(msg.Data, &st)
	return max(st.Steps, st.Learned), st.Step, err
}

// linesOf returns the lines serket up's output prefixed with a process's name.
func linesOf(out, name string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), name+" ") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestFaultModuleKilledMidTraining: a module SIGKILLed mid-training is
// left out of the steps while it is down and restarts from its checkpoint
// (restart policy on-failure); it does not rejoin with weights older than
// the others': the integrator rolls the whole run back to that checkpoint
// (logged, naming the module and both steps) and does the steps since
// again with it. The run finishes with every epoch logged once, and no
// step of it went without the module.
//
// The concept module (a prior module) is killed the same way: it is a
// peer of the run like a module.
func TestFaultModuleKilledMidTraining(t *testing.T) {
	t.Run("vision", func(t *testing.T) { killMidTraining(t, "vision") })
	t.Run("concept", func(t *testing.T) { killMidTraining(t, "concept") })
	// A module in Python: its program is killed, and serket module exec
	// exits for the pipeline to restart it.
	t.Run("touchpy", func(t *testing.T) { killMidTraining(t, "touchpy") })
}

// killMidTraining SIGKILLs module mid-training and checks the run.
func killMidTraining(t *testing.T, module string) {
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ckpt := filepath.Join(t.TempDir(), "run")
	const epochs = 30
	extra := ""
	if module == "concept" || module == "touchpy" {
		extra = module
	}
	out, nc := upFaultPipeline(t, srv.ClientURL(), ckpt, epochs, extra)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pid := pidOf(t, ctx, nc, module, 0)

	// Mid-training, with a checkpoint of vision on disk: kill it.
	waitFor(t, ctx, func() bool {
		_, err := os.Stat(filepath.Join(ckpt, module+".ckpt"))
		return err == nil && len(epochsLogged(t, ckpt)) >= 1
	})
	victim := pid
	if module == "touchpy" {
		victim = childOf(t, pid) // the program, not serket module exec
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedIn := len(epochsLogged(t, ckpt)) // the epoch running (or about to) when killed
	if strings.Contains(out.String(), "training done") {
		t.Fatal("training was over before the module was killed: the test proves nothing")
	}

	// It comes back in a new process, from its checkpoint, and learns from
	// the steps it takes part in.
	pidOf(t, ctx, nc, module, pid)
	waitFor(t, ctx, func() bool {
		steps, _, err := trainStatus(nc, module)
		return err == nil && steps > 0
	})
	waitFor(t, ctx, func() bool { return strings.Contains(out.String(), "training done") })
	lines := linesOf(out.String(), module)
	if !strings.Contains(lines, "restored checkpoint") || !strings.Contains(lines, filepath.Join(ckpt, module+".ckpt")) {
		t.Errorf("the restarted %s module did not say it restored %s:\n%s", module, filepath.Join(ckpt, module+".ckpt"), lines)
	}
	integ := linesOf(out.String(), "integrator")
	for _, want := range []string{`msg="module is gone; steps go on without it until it is back"`, `rolling the run back to its last checkpoint`, `why="module ` + module + ` restarted"`} {
		if !strings.Contains(integ, want) {
			t.Errorf("the integrator did not say %q:\n%s", want, integ)
		}
	}
	got := checkEveryEpochOnce(t, ckpt, epochs)
	t.Logf("killed in epoch %d", killedIn)
	for _, es := range got {
		if es.Missed["vision"] > 0 || es.PlainPrior > 0 {
			t.Errorf("epoch %d went %d steps without vision and %d without the concept module's prior: the steps they missed were not done again", es.Epoch, es.Missed["vision"], es.PlainPrior)
		}
	}
}

// TestFaultIntegratorKilledMidTraining: the integrator SIGKILLed
// mid-training restarts (on-failure), resumes from its checkpoint and
// finishes the run; the metrics log has every epoch once, in order, each
// of all its steps — none lost, none twice.
func TestFaultIntegratorKilledMidTraining(t *testing.T) {
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ckpt := filepath.Join(t.TempDir(), "run")
	const epochs = 20
	out, nc := upFaultPipeline(t, srv.ClientURL(), ckpt, epochs, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pid := pidOf(t, ctx, nc, "integrator", 0)

	waitFor(t, ctx, func() bool {
		_, err := os.Stat(filepath.Join(ckpt, "integrator.json"))
		return err == nil && len(epochsLogged(t, ckpt)) >= 1
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAfter := len(epochsLogged(t, ckpt))
	if strings.Contains(out.String(), "training done") {
		t.Fatal("training was over before the integrator was killed: the test proves nothing")
	}
	waitFor(t, ctx, func() bool { return strings.Contains(out.String(), "training done") })
	ig := linesOf(out.String(), "integrator")
	if !strings.Contains(ig, "resuming training") {
		t.Fatalf("the restarted integrator did not resume:\n%s", ig)
	}
	t.Logf("killed after %d epochs were logged", killedAfter)
	checkEveryEpochOnce(t, ckpt, epochs)
}

// TestFaultNATSRestartMidTraining: the NATS server stops mid-training, for
// longer than a step's deadline, and a new one starts on the same port;
// every process reconnects, the step nobody could answer is done again
// rather than skipped, and training completes, every epoch logged once.
func TestFaultNATSRestartMidTraining(t *testing.T) {
	port := freePort(t)
	srv, err := bus.StartServer(bus.ServerConfig{Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown() }) // whichever server runs at the end
	ckpt := filepath.Join(t.TempDir(), "run")
	const epochs = 20
	out, nc := upFaultPipeline(t, srv.ClientURL(), ckpt, epochs, "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pidOf(t, ctx, nc, "integrator", 0)

	waitFor(t, ctx, func() bool { return len(epochsLogged(t, ckpt)) >= 1 })
	srv.Shutdown()
	stoppedAfter := len(epochsLogged(t, ckpt))
	if strings.Contains(out.String(), "training done") {
		t.Fatal("training was over before the server stopped: the test proves nothing")
	}
	// Once every process has seen the server go, and a step has gone
	// unanswered, a new server on the same port.
	waitFor(t, ctx, func() bool {
		for _, name := range []string{"integrator", "vision", "language"} {
			if !strings.Contains(linesOf(out.String(), name), "nats disconnected") {
				return false
			}
		}
		return strings.Contains(out.String(), "no module answered the step; retrying it")
	})
	for {
		srv, err = bus.StartServer(bus.ServerConfig{Port: port, Ready: 2 * time.Second})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("restarting the server on port %d: %v", port, err)
		}
	}
	waitFor(t, ctx, func() bool { return strings.Contains(out.String(), "training done") })
	for _, name := range []string{"integrator", "vision", "language"} {
		if !strings.Contains(linesOf(out.String(), name), "nats reconnected") {
			t.Errorf("%s did not say it reconnected:\n%s", name, linesOf(out.String(), name))
		}
	}
	t.Logf("the server stopped after %d epochs were logged", stoppedAfter)
	checkEveryEpochOnce(t, ckpt, epochs)
}

// TestFaultCorruptModuleCheckpoint: a module checkpoint damaged between two
// runs is reported, naming the file and the damage, and the previous
// generation restored instead; the resumed run goes on. Both generations
// damaged stop the module with an error naming both.
func TestFaultCorruptModuleCheckpoint(t *testing.T) {
	data := datasettest.Dir(t)
	ckpt := filepath.Join(t.TempDir(), "run")
	file := writeFile(t, "two.yaml", `
latent: 8
modules:
  - {name: vision, args: [--hidden, "32"]}
  - {name: language, args: [--hidden, "32"]}
`)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	train := func(epochs int, more ...string) (string, error) {
		args := append([]string{"train", file, "--data", data, "--checkpoint-dir", ckpt, "--epochs", fmt.Sprint(epochs),
			"--batch", "20", "--checkpoint-every", "5", "--plan", "cross", "--lambda", "language=10", "--eval-items", "0"}, more...)
		out, err := exec.CommandContext(ctx, serketBin, args...).CombinedOutput()
		return string(out), err
	}
	if out, err := train(1); err != nil {
		t.Fatalf("serket train: %v\n%s", err, out)
	}
	path := filepath.Join(ckpt, "vision.ckpt")
	if _, err := os.Stat(path + ".prev"); err != nil {
		t.Fatalf("no previous generation of the vision checkpoint: %v", err)
	}

	// A flipped byte: reported, and the previous generation restored.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x20
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := train(2, "--resume")
	if err != nil {
		t.Fatalf("serket train --resume over a damaged checkpoint: %v\n%s", err, out)
	}
	// vision's newest checkpoint (the run's last, step 12) is damaged and
	// its previous one is of step 10: the whole run goes back to step 10,
	// and this process runs steps 11 to 24 — and says so, not the epochs'.
	for _, want := range []string{"checkpoint is damaged", "path=" + path + " ", "checksum mismatch", "restored=" + path + ".prev",
		"the run goes back to the one before", "ran 14 steps (11 to 24, 280 items)", "the run is at epoch 2 of 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q:\n%s", want, out)
		}
	}
	if got := epochsLogged(t, ckpt); len(got) != 2 || got[0].Epoch != 0 || got[1].Epoch != 1 {
		t.Errorf("metrics log of %d epochs after resuming, want epochs 0 and 1", len(got))
	}

	// Both generations damaged: the module does not start, and says why.
	for _, p := range []string{path, path + ".prev"} {
		if err := os.Truncate(p, 100); err != nil {
			t.Fatal(err)
		}
	}
	out, err = train(3, "--resume", "--module-wait", "3s")
	if err == nil {
		t.Fatalf("serket train --resume over two damaged checkpoints succeeded:\n%s", out)
	}
	for _, want := range []string{path + " is unusable", path + ".prev is unusable", "corrupt or truncated"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q:\n%s", want, out)
		}
	}
}
