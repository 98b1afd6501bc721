package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/internal/syncbuf"
	"github.com/serket-go/serket/nn"
)

// serketBin is the real binary, built once for these tests.
var serketBin string

func TestMain(m *testing.M) {
	if cmdline := os.Getenv(measureEnv); cmdline != "" {
		os.Exit(measure(cmdline))
	}
	dir, err := os.MkdirTemp("", "serket-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serketBin = filepath.Join(dir, "serket")
	// The binary uses the BLAS this test binary was built with.
	build := exec.Command("go", "build", "-o", serketBin, ".")
	if nn.Backend() == "openblas" {
		build.Args = append(build.Args[:2], "-tags", "openblas", "-o", serketBin, ".")
	}
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building serket:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if bigDir != "" {
		os.RemoveAll(bigDir)
	}
	os.Exit(code)
}

// syncBuffer collects a process's or a logger's output while it runs.
type syncBuffer = syncbuf.Buffer

const threeToys = `
pipeline: itest
latent: 6
integrator:
  args: [--deadline, 1s, --discovery, 200ms, --misses, "2"]
modules:
  - name: left
    command: [serket, module, toy]
    args: [--dim, "5"]
  - name: right
    command: [serket, module, toy]
    args: [--dim, "4"]
  - name: top
    command: [serket, module, toy]
    args: [--dim, "3"]
    restart: {policy: on-failure, backoff: 100ms}
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startProcess runs `serket args…` as a real process until the test ends,
// then stops it with stop (a signal), killing it after 20 s.
func startProcess(t *testing.T, stop os.Signal, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(serketBin, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(stop)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Errorf("serket %s did not stop within 20 s of %v", args[0], stop)
		}
		if t.Failed() {
			t.Logf("serket %v output:\n%s", args, out)
		}
	})
	return cmd, out
}

// startUp runs `serket up` as a real process and stops it (SIGTERM) at cleanup.
func startUp(t *testing.T, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	return startProcess(t, syscall.SIGTERM, append([]string{"up"}, args...)...)
}

func connect(t *testing.T, url, pipeline string) *client.Client {
	t.Helper()
	nc, err := bus.Connect(bus.ConnConfig{URL: url, Name: "test", Wait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c, err := client.New(nc, pipeline, "test")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pids(svcs []bus.Service) map[string]int {
	out := map[string]int{}
	for _, s := range svcs {
		name := s.Module()
		if name == "" {
			name = s.Role()
		}
		out[name], _ = strconv.Atoi(s.Metadata[bus.MetaPID])
	}
	return out
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func infer(t *testing.T, c *client.Client, req *bus.InferRequest) *bus.InferReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := c.Infer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestUpInferKillRejoin is the foundation's end-to-end test: real binaries,
// `serket up` with three module processes on a NATS server, an inference
// round trip, a SIGKILLed module that the next inference does without, its
// restart and return, and no process left behind after SIGTERM.
func TestUpInferKillRejoin(t *testing.T) {
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	up, out := startUp(t, "--nats", srv.ClientURL(), writeFile(t, "pipeline.yaml", threeToys))
	c := connect(t, srv.ClientURL(), "itest")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svcs, err := c.WaitFor(ctx, true, "left", "right", "top")
	if err != nil {
		t.Fatal(err)
	}
	before := pids(svcs)
	for name, pid := range before {
		if pid == 0 || pid == os.Getpid() || pid == up.Process.Pid {
			t.Fatalf("%s runs as pid %d: not a process of its own", name, pid)
		}
	}

	req := &bus.InferRequest{
		Observations: map[string]bus.Payload{"left": {Type: "text/plain", Data: []byte("1 2 3 4 5")}, "top": {Type: "text/plain", Data: []byte("0 1 0")}},
		Want:         []string{"right", "top"},
		Samples:      2,
	}
	// The integrator learns of the modules by polling: wait until it
	// fuses both observations.
	var rep *bus.InferReply
	for {
		rep = infer(t, c, req)
		if slices.Equal(rep.Contributors, []string{"left", "top"}) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("contributors %v, missing %v", rep.Contributors, rep.Missing)
		}
	}
	if len(rep.Outputs["right"]) != 2 || len(rep.Outputs["top"]) != 2 || rep.Mu.Cols() != 6 {
		t.Fatalf("outputs %v, mu shape %v", rep.Outputs, rep.Mu.Shape)
	}

	// SIGKILL the module "top": the next inference answers without it.
	if err := syscall.Kill(before["top"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	rep = infer(t, c, req)
	if !slices.Equal(rep.Contributors, []string{"left"}) || rep.Missing["top"] == "" || len(rep.Outputs["right"]) != 2 {
		t.Fatalf("after killing top: contributors %v, missing %v, outputs %v", rep.Contributors, rep.Missing, rep.Outputs)
	}

	// It is restarted (a new pid) and rejoins: it contributes again.
	for {
		rep = infer(t, c, req)
		if slices.Equal(rep.Contributors, []string{"left", "top"}) && len(rep.Outputs["top"]) == 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("top did not rejoin: contributors %v, missing %v", rep.Contributors, rep.Missing)
		}
	}
	svcs, err = c.WaitFor(ctx, true, "left", "right", "top")
	if err != nil {
		t.Fatal(err)
	}
	after := pids(svcs)
	if after["top"] == before["top"] || after["left"] != before["left"] {
		t.Fatalf("pids before %v, after %v: want only top to be new", before, after)
	}
	if !strings.Contains(out.String(), "top") || !strings.Contains(out.String(), "restarting") {
		t.Errorf("serket up's log does not report the restart of top")
	}

	// SIGTERM to serket up stops every child: no orphans.
	up.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(20 * time.Second)
	for name, pid := range after {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("%s (pid %d) outlived serket up", name, pid)
			}
			time.Sleep(20 * time.Millisecond) // waiting on another process's exit
		}
	}
	// Each child's lines are prefixed with its name.
	for _, name := range []string{"integrator", "left", "right", "top"} {
		if !strings.Contains(out.String(), name+" ") {
			t.Errorf("no log line prefixed with %q", name)
		}
	}
}
