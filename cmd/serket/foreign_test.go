package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/examples/custom-modality/touch"
	"github.com/serket-go/serket/examples/custom-modality/touchsim"
	"github.com/serket-go/serket/internal/python"
)

// pythonBin is a Python 3 with numpy and msgpack. Without one the test
// fails, saying what to install: the Python modules are part of serket.
func pythonBin(t *testing.T) string {
	t.Helper()
	py, err := python.Interpreter()
	if err != nil {
		t.Fatal(err)
	}
	return py
}

// pythonTouch writes a pipeline file of vision, language and the numpy
// touch module of examples/python-touch (behind serket module exec) over
// data, which gains the touch readings, and returns its path.
func pythonTouch(t *testing.T, data, extra string) string {
	t.Helper()
	if _, err := touchsim.Prepare(data, 1); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("../../examples/python-touch/touch.py")
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "python.yaml", fmt.Sprintf(`
pipeline: pyfeel
latent: 8
data: %s
modules:
  - {name: vision, args: [--hidden, "32"]}
  - {name: language, args: [--hidden, "32"]}
  - {name: touchpy, exec: [%s, %s, --hidden, "32"]}
%s`, data, pythonBin(t), script, extra))
}

// TestPythonModuleThroughTheCommands: a module written in Python (numpy)
// trains with vision and language by `serket train`, is measured by
// `serket eval` (a coherence row and column, likelihood and probe) and
// answers both ways in `serket generate`, like the Go touch module.
func TestPythonModuleThroughTheCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("trains three modules, one in Python")
	}
	run := filepath.Join(t.TempDir(), "run")
	file := pythonTouch(t, datasettest.Dir(t), "train: {checkpoint_dir: "+run+"}\n")
	step := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(serketBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("serket %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	step("train", file, "--epochs", "3", "--batch", "40", "--plan", "cross", "--eval-items", "0", "--lambda", "language=10,touchpy=10")
	if _, err := os.Stat(filepath.Join(run, "touchpy.ckpt")); err != nil {
		t.Fatalf("the Python module's checkpoint: %v", err)
	}
	evalsTheModule(t, step, file, "touchpy")
	reading := touch.Format(touchsim.Reading(7, 1, 1<<62)) // a sneaker's
	g1 := filepath.Join(t.TempDir(), "g1")
	step("generate", "-f", file, "--serve", "--from", "touchpy="+reading, "--to", "vision", "--n", "2", "--out", g1)
	if _, err := os.Stat(filepath.Join(g1, "vision.png")); err != nil {
		t.Errorf("touchpy → vision: %v", err)
	}
	g2 := filepath.Join(t.TempDir(), "g2")
	step("generate", "-f", file, "--serve", "--from", "language=a sneaker", "--to", "touchpy", "--n", "2", "--out", g2)
	if b, err := os.ReadFile(filepath.Join(g2, "touchpy.txt")); err != nil || !strings.Contains(string(b), "hardness=") {
		t.Errorf("language → touchpy: %q, %v", b, err)
	}
}

// TestPythonChildKilledIsRestarted: SIGKILL the Python program of a
// serving module and its serket module exec exits, saying why, and is
// restarted by the pipeline's policy; the module answers again.
func TestPythonChildKilledIsRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("serves a pipeline with a module in Python")
	}
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	_, out := startUp(t, "--nats", srv.ClientURL(), pythonTouch(t, datasettest.Dir(t), ""))
	c := connect(t, srv.ClientURL(), "pyfeel")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	svcs, err := c.WaitFor(ctx, true, "touchpy")
	if err != nil {
		t.Fatal(err)
	}
	adapter := pids(svcs)["touchpy"]
	child := childOf(t, adapter)
	if err := syscall.Kill(child, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for alive(adapter) {
		if ctx.Err() != nil {
			t.Fatal("serket module exec outlived its program")
		}
		time.Sleep(10 * time.Millisecond)
	}
	req := &bus.InferRequest{
		Observations: map[string]bus.Payload{"language": {Type: "text/plain", Data: []byte("a sneaker")}},
		Want:         []string{"touchpy"},
		Samples:      1,
	}
	for {
		svcs, err := c.WaitFor(ctx, true, "touchpy")
		if err != nil {
			t.Fatal(err)
		}
		if pids(svcs)["touchpy"] != adapter {
			if rep := infer(t, c, req); len(rep.Outputs["touchpy"]) == 1 {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatal("the module was not restarted, or does not answer")
		}
	}
	if log := out.String(); !strings.Contains(log, "module touchpy") || !strings.Contains(log, "failed") {
		t.Errorf("the log does not say the module's program failed:\n%s", log)
	}
}

// childOf is the pid of the one child of process pid, from /proc (each
// thread lists the children it started).
func childOf(t *testing.T, pid int) int {
	t.Helper()
	lists, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil || len(lists) == 0 {
		t.Fatalf("the threads of process %d: %v", pid, err)
	}
	var kids []string
	for _, l := range lists {
		b, _ := os.ReadFile(l)
		kids = append(kids, strings.Fields(string(b))...)
	}
	if len(kids) != 1 {
		t.Fatalf("process %d has children %v, want its program alone", pid, kids)
	}
	child, _ := strconv.Atoi(kids[0])
	return child
}
