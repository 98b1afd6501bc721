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
	"testing"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/dataset/speech"
)

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
