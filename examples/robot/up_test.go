package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/internal/syncbuf"
	"github.com/serket-go/serket/modules/fmnist3"
	"github.com/serket-go/serket/nn"
	"github.com/serket-go/serket/procenv"
)

// TestRobotThroughServeUp runs the example as its comment says: the real
// serket binary starts pipeline.yaml (three module processes streaming
// from the robot's subjects and an integrator fusing them), the robot
// streams into it from this process, and `serket echo` follows the beliefs
// and a sensor subject as a person would.
func TestRobotThroughServeUp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds serket and starts four processes")
	}
	bin := filepath.Join(t.TempDir(), "serket")
	build := exec.Command("go", "build", "-o", bin, "github.com/serket-go/serket/cmd/serket")
	if nn.Backend() == "openblas" {
		build.Args = append(build.Args[:2], "-tags", "openblas", "-o", bin, "github.com/serket-go/serket/cmd/serket")
	}
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building serket: %v\n%s", err, out)
	}
	data := datasettest.Dir(t)
	m, err := fmnist3.Open(data, 64, 512) // the sizes pipeline.yaml's modules take by default
	if err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(t.TempDir(), "model")
	if err := m.Save(ckpt); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	up := exec.Command(bin, "up", "--port", fmt.Sprint(port), "pipeline.yaml")
	up.Env = append(os.Environ(), procenv.EnvData+"="+data, procenv.EnvCheckpointDir+"="+ckpt)
	var upOut lockedBuffer
	up.Stdout, up.Stderr = &upOut, &upOut
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	upDone := make(chan error, 1)
	go func() { upDone <- up.Wait() }()
	t.Cleanup(func() {
		up.Process.Signal(syscall.SIGTERM)
		select {
		case <-upDone:
		case <-time.After(20 * time.Second):
			up.Process.Kill()
			t.Error("serket up did not stop within 20 s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("serket up:\n%s", upOut.String())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	nc, err := bus.Connect(bus.ConnConfig{URL: url, Name: "test", Wait: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc, "default", "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitFor(ctx, true, "vision", "language", "audio"); err != nil {
		t.Fatalf("the modules did not come up: %v", err)
	}

	// serket echo: three beliefs, and the camera's raw frames.
	echo := func(args ...string) (*exec.Cmd, *lockedBuffer) {
		cmd := exec.CommandContext(ctx, bin, append([]string{"echo", "--nats", url}, args...)...)
		var out lockedBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out
	}
	beliefs, beliefsOut := echo("belief", "--count", "3")
	camera, cameraOut := echo("--absolute", "robot.camera", "--count", "2")
	for _, out := range []*lockedBuffer{beliefsOut, cameraOut} { // subscribed
		for !strings.Contains(out.String(), "listening on") {
			select {
			case <-ctx.Done():
				t.Fatalf("serket echo did not start: %s", out.String())
			case <-time.After(10 * time.Millisecond): // polls the process's output
			}
		}
	}

	res, err := Run(ctx, Config{NATS: url, Data: data, Duration: 4 * time.Second, Dwell: 2 * time.Second,
		CameraHz: 20, MicHz: 4, KeyboardHz: 4, Jitter: 0.3, Dropout: 0.2, Seed: 2}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %v, %d latencies, %d beliefs said, %d of %d scored right", res.Sent, len(res.Latency), res.Beliefs, res.Correct, res.Scored)
	if res.Beliefs == 0 || res.Scored == 0 || len(res.Latency) == 0 {
		t.Fatalf("the pipeline under serket up fused nothing the robot sent: %+v", res)
	}
	for name, cmd := range map[string]*exec.Cmd{"belief": beliefs, "robot.camera": camera} {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("serket echo %s: %v\n%s", name, err, map[string]*lockedBuffer{"belief": beliefsOut, "robot.camera": cameraOut}[name])
		}
	}
	t.Logf("serket echo belief:\n%s\nserket echo --absolute robot.camera:\n%s", beliefsOut, cameraOut)
	if got := beliefsOut.String(); strings.Count(got, "belief from=integrator seq=") != 3 || !strings.Contains(got, " old)") {
		t.Errorf("serket echo belief printed:\n%s", got)
	}
	if got := cameraOut.String(); strings.Count(got, "robot.camera image/png (") != 2 {
		t.Errorf("serket echo --absolute robot.camera printed:\n%s", got)
	}
}

// lockedBuffer collects a process's or a logger's output while it runs.
type lockedBuffer = syncbuf.Buffer
