package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
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
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/dataset/speech"
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

// TestUpEmbeddedServer: without --nats, serket up starts its own server on
// the file's port, and `serket ls -f` and `serket echo -f` find it (and the
// pipeline's name) from the same file; the command line and the
// environment win over the file.
func TestUpEmbeddedServer(t *testing.T) {
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	file := writeFile(t, "p.yaml", fmt.Sprintf("%snats: {port: %d}\n", threeToys, port))
	startUp(t, file)
	c := connect(t, url, "itest")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.WaitFor(ctx, true, "left", "right", "top"); err != nil {
		t.Fatal(err)
	}

	ls := exec.Command(serketBin, "ls", "-f", file)
	lsOut, err := ls.CombinedOutput()
	if err != nil {
		t.Fatalf("serket ls: %v\n%s", err, lsOut)
	}
	for _, want := range []string{"integrator", "left", "right", "top", "gaussian", "BLAS"} {
		if !bytes.Contains(lsOut, []byte(want)) {
			t.Errorf("serket ls does not list %q:\n%s", want, lsOut)
		}
	}
	if !bytes.Contains(lsOut, []byte("gonum")) && !bytes.Contains(lsOut, []byte("openblas")) {
		t.Errorf("serket ls does not say which GEMM the modules run on:\n%s", lsOut)
	}
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"--pipeline", "other"}, `pipeline "other"`},
		{[]string{"SERKET_PIPELINE=other"}, nil, `pipeline "other"`},
		{[]string{"NATS_URL=nats://127.0.0.1:1"}, nil, "127.0.0.1:1"},
	} {
		ls := exec.Command(serketBin, append([]string{"ls", "-f", file, "--window", "300ms", "--timeout", "1s"}, c.args...)...)
		ls.Env = append(os.Environ(), c.env...)
		if out, err := ls.CombinedOutput(); err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("serket ls -f with %v %v: %v, want an error naming %s\n%s", c.env, c.args, err, c.want, out)
		}
	}

	// serket echo prints a decoded inference request, and a garbage
	// message as rejected rather than crashing.
	echo := exec.Command(serketBin, "echo", "-f", file, "--count", "2", "infer")
	var echoOut syncBuffer
	echo.Stdout, echo.Stderr = &echoOut, &echoOut
	if err := echo.Start(); err != nil {
		t.Fatal(err)
	}
	echoDone := make(chan error, 1)
	go func() { echoDone <- echo.Wait() }()
	for !strings.Contains(echoOut.String(), "listening on") {
		select {
		case err := <-echoDone:
			t.Fatalf("serket echo exited: %v\n%s", err, echoOut.String())
		case <-time.After(20 * time.Millisecond): // waiting for another process to subscribe
		}
	}
	infer(t, c, &bus.InferRequest{Observations: map[string]bus.Payload{"left": {Type: "text/plain", Data: []byte("1 2 3 4 5")}}})
	nc, _ := bus.Connect(bus.ConnConfig{URL: url})
	defer nc.Close()
	nc.Publish(c.Subjects().Infer(), []byte("garbage"))
	nc.Flush()
	select {
	case err := <-echoDone:
		if err != nil {
			t.Fatalf("serket echo: %v\n%s", err, echoOut.String())
		}
	case <-time.After(20 * time.Second):
		echo.Process.Kill()
		t.Fatalf("serket echo did not print two messages:\n%s", echoOut.String())
	}
	got := echoOut.String()
	if !strings.Contains(got, "serket.infer.request from=test observe={left:text/plain(9B)}") {
		t.Errorf("serket echo did not print the decoded request:\n%s", got)
	}
	if !strings.Contains(got, "UNDECODABLE") && !strings.Contains(got, "REJECTED") {
		t.Errorf("serket echo did not flag the garbage message:\n%s", got)
	}
}

func TestUpRefusesBadPipelineFile(t *testing.T) {
	tests := []struct {
		name, file, want string
	}{
		{"unknown policy", strings.Replace(threeToys, "on-failure", "sometimes", 1), "modules[2].restart.policy"},
		{"bad module name", strings.Replace(threeToys, "name: right", "name: Right!", 1), "modules[1].name"},
		{"unknown field", threeToys + "colour: blue\n", "colour"},
		{"missing file", "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "missing.yaml")
			if tt.file != "" {
				path = writeFile(t, "p.yaml", tt.file)
			}
			cmd := exec.Command(serketBin, "up", "--port", "0", path)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("serket up with a bad pipeline file: err %v, want a non-zero exit\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("error does not name %q:\n%s", tt.want, out)
			}
		})
	}
}

func TestInferUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"nothing asked", []string{"infer"}, "at least one --from or --to"},
		{"bad assignment", []string{"infer", "--from", "novalue"}, "MODULE=VALUE"},
		{"bad module", []string{"infer", "--to", "Not A Name"}, "not a module name"},
		{"missing file", []string{"infer", "--from", "left=@/nonexistent.png"}, "/nonexistent.png"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(serketBin, tt.args...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("serket %v: err %v, output %q, want it to say %q", tt.args, err, out, tt.want)
			}
		})
	}
}

// TestUpDefaultPipeline runs the built-in default pipeline — the vision,
// language and audio modules as separate processes on a small real
// dataset — and crosses modalities in every direction a person would.
func TestUpDefaultPipeline(t *testing.T) {
	data := datasettest.Dir(t)
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	t.Setenv("SERKET_DATA", data)
	startUp(t, "--port", strconv.Itoa(port))
	c := connect(t, url, "default")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.WaitFor(ctx, true, "vision", "language", "audio"); err != nil {
		t.Fatal(err)
	}

	train, _ := speech.Voices()
	samples, err := speech.Synthesize(ctx, "sneaker", train[0], 22050)
	if err != nil {
		t.Fatal(err)
	}
	var wav bytes.Buffer
	if err := speech.WriteWAV(&wav, samples, 22050); err != nil {
		t.Fatal(err)
	}
	req := &bus.InferRequest{
		Observations: map[string]bus.Payload{
			"language": {Type: "text/plain", Data: []byte("a photo of a sneaker")},
			"audio":    {Type: "audio/wav", Data: wav.Bytes()},
		},
		Want:    []string{"vision", "language", "audio"},
		Samples: 2,
	}
	var rep *bus.InferReply
	for { // until the integrator's discovery has seen all three
		rep = infer(t, c, req)
		if slices.Equal(rep.Contributors, []string{"audio", "language"}) && len(rep.Outputs) == 3 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("contributors %v, missing %v", rep.Contributors, rep.Missing)
		}
	}
	if rep.Mu.Cols() != 64 {
		t.Errorf("latent size %d, want the default 64", rep.Mu.Cols())
	}
	for _, o := range rep.Outputs["vision"] {
		img, err := png.Decode(bytes.NewReader(o.Data))
		if o.Type != "image/png" || err != nil {
			t.Fatalf("output of type %s does not decode as a PNG: %v", o.Type, err)
		}
		if b := img.Bounds(); b.Dx() < 28 || b.Dy() < 28 {
			t.Errorf("a %v image", b)
		}
	}
	for _, o := range rep.Outputs["audio"] {
		samples, rate, err := speech.ReadWAV(bytes.NewReader(o.Data))
		if o.Type != "audio/wav" || err != nil || rate != 16000 || len(samples) < 16000 {
			t.Fatalf("audio output of type %s: %d samples at %d Hz (%v), want a WAV of 1 s or more at 16 kHz", o.Type, len(samples), rate, err)
		}
	}
	if got := rep.Outputs["language"]; len(got) != 2 || !strings.HasPrefix(got[0].Type, "text/plain") {
		t.Fatalf("language outputs %v", got)
	}

	// An image a person gives, back to words.
	img := rep.Outputs["vision"][0]
	rep = infer(t, c, &bus.InferRequest{Observations: map[string]bus.Payload{"vision": img}, Want: []string{"language"}})
	if !slices.Equal(rep.Contributors, []string{"vision"}) || len(rep.Outputs["language"]) != 1 {
		t.Fatalf("image to words: contributors %v, missing %v", rep.Contributors, rep.Missing)
	}
	// Bad input is refused by the module and named in the reply.
	rep = infer(t, c, &bus.InferRequest{Observations: map[string]bus.Payload{"language": {Type: "text/plain", Data: []byte("qwerty zxcv")}}})
	if !strings.Contains(rep.Missing["language"], "no known word") {
		t.Fatalf("text with no known word: missing %v", rep.Missing)
	}
	// serket infer says so in its exit status; a usable request exits 0.
	if msg, err := serketOut(t, "infer", "--nats", url, "--from", "language=qwerty zxcv"); err == nil || !strings.Contains(msg, "--from language was not used") || !strings.Contains(msg, "no known word") {
		t.Errorf("serket infer of unusable text: %v\n%s", err, msg)
	}
	if msg, err := serketOut(t, "infer", "--nats", url, "--from", "language=a sneaker", "--to", "language"); err != nil || !strings.Contains(msg, "contributors: language") {
		t.Errorf("serket infer of a caption: %v\n%s", err, msg)
	}

	// serket generate against the running pipeline: the image the vision
	// module drew, as a file, back to words and speech.
	shoe := filepath.Join(t.TempDir(), "shoe.png")
	os.WriteFile(shoe, img.Data, 0o644)
	out := filepath.Join(t.TempDir(), "gen")
	msg, err := serketOut(t, "generate", "--nats", url, "--from", "vision="+shoe, "--to", "language,audio", "--n", "2", "--out", out)
	if err != nil {
		t.Fatalf("serket generate on the running pipeline: %v\n%s", err, msg)
	}
	for _, f := range []string{"language.txt", "audio/00.wav", "audio/01.wav", "audio.png"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("generate wrote no %s: %v\n%s", f, err, msg)
		}
	}
}
