package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/serket-go/serket/bench/loadbench"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/nn"
)

// A load run on the in-process pipeline answers every request, with the
// reply meant for it, and the integrator's own count agrees. (No audio
// here: rendering the WAVs under the race detector takes seconds each;
// TestBenchLoadCommand sends them.)
func TestBenchLoad(t *testing.T) {
	data := datasettest.Dir(t)
	start := time.Now()
	o := loadOpts{data: data, latent: 16, hidden: 64, clients: 16, conns: 4, duration: 2 * time.Second, warmup: 300 * time.Millisecond,
		timeout: 5 * time.Second, wait: 10 * time.Second, from: []string{"language,vision"}, to: []string{"language"}, items: 6, baseline: true,
		changed: func(string) bool { return false }}
	res, err := o.run(context.Background(), &globals{pipeline: bus.DefaultPipeline}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("took %v", time.Since(start).Round(time.Millisecond))
	var out strings.Builder
	if err := printLoad(&out, res); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	for _, ph := range []struct {
		name string
		p    *loadbench.Phase
	}{{"inference", &res.Inference}, {"baseline", res.Baseline}} {
		p := ph.p
		if p == nil {
			t.Fatalf("%s: not measured", ph.name)
		}
		if p.Sent == 0 || p.Sent != p.OK+p.Errors+p.Lost {
			t.Errorf("%s: sent %d, ok %d + errors %d + lost %d", ph.name, p.Sent, p.OK, p.Errors, p.Lost)
		}
		if p.Lost != 0 || p.Errors != 0 {
			t.Errorf("%s: %d lost (%v), %d errors (%v)", ph.name, p.Lost, p.LostKinds, p.Errors, p.ErrorKinds)
		}
		l := p.Latency
		if !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
			t.Errorf("%s: latencies out of order: %+v", ph.name, l)
		}
		if p.PerSec <= 0 || p.Seconds < 2 {
			t.Errorf("%s: %.1f ok/s over %.2f s", ph.name, p.PerSec, p.Seconds)
		}
	}
	if want := res.Warmup.Sent + res.Inference.Sent; res.ServerRequests != want {
		t.Errorf("the integrator counted %d requests, %d were sent", res.ServerRequests, want)
	}
	if res.P50Ratio <= 0 || !res.Owned || !strings.Contains(res.Setup, "in this process") {
		t.Errorf("p50 ratio %v, owned %v, setup %q", res.P50Ratio, res.Owned, res.Setup)
	}
	if err := res.Check(); err != nil {
		t.Error(err)
	}
	for _, want := range []string{"language+vision → language", "latency p99 (ms)", "p50 serket/raw", "accounting: every request sent was answered"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table does not say %q", want)
		}
	}
}

// serketStdout runs serket and returns what it printed on stdout and,
// apart, its log (and its children's); the test's log has both when it
// fails.
func serketStdout(t *testing.T, args ...string) (stdout []byte, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(serketBin, args...)
	var out, log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &log
	if err := cmd.Run(); err != nil {
		t.Logf("serket %s: stderr:\n%s\nstdout:\n%s", strings.Join(args, " "), log.String(), out.String())
		return nil, log.String(), err
	}
	return out.Bytes(), log.String(), nil
}

// The command's flags reach the run, and --json prints what it measured;
// the requests carry all three modalities.
func TestBenchLoadCommand(t *testing.T) {
	data := datasettest.Dir(t)
	out, _, err := serketStdout(t, "bench", "load", "--data", data, "--latent", "16", "--hidden", "64",
		"--clients", "4", "--conns", "2", "--duration", "500ms", "--warmup", "100ms", "--items", "2",
		"--from", "vision,language,audio", "--to", "vision", "--baseline=false", "--json", "--log-level", "warn")
	if err != nil {
		t.Fatalf("serket bench load: %v", err)
	}
	var res loadbench.Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	p := res.Inference
	if res.Clients != 4 || res.Conns != 2 || strings.Join(res.From, ",") != "audio,language,vision" || strings.Join(res.To, ",") != "vision" ||
		res.Baseline != nil || p.Sent == 0 || p.OK != p.Sent || p.Latency.P50 > p.Latency.Max {
		t.Errorf("unexpected result:\n%s", out)
	}
}

// --from and --to are read against the pipeline's modules: without --from
// every built-in modality takes its samples, without --to every module
// given no input is decoded, so that a module of one's own is loaded too.
func TestBenchLoadPlan(t *testing.T) {
	custom, err := launch.Load("../../examples/custom-modality/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reading := filepath.Join(t.TempDir(), "reading.txt")
	if err := os.WriteFile(reading, []byte("hardness=0.5"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name            string
		p               *launch.Pipeline
		from, to        []string
		sampled, given  string // comma-separated, sorted
		want, wantUsage string
	}{
		{"built-ins", launch.Default(), nil, nil, "vision,language,audio", "", "", ""},
		{"custom module decoded", custom, nil, nil, "vision,language,audio", "", "touch", ""},
		{"custom module given, the rest decoded", custom, []string{"touch=@" + reading, "vision"}, nil, "vision", "touch", "language,audio", ""},
		{"as typed", custom, []string{"touch=hardness=0.2 mass=0.1", "language,audio"}, []string{"vision"}, "language,audio", "touch", "vision", ""},
		{"the prior", custom, []string{"none"}, []string{"touch"}, "", "", "touch", ""},
		{"nothing decoded", custom, []string{"vision"}, []string{"none"}, "vision", "", "", ""},
		{"no samples of touch", custom, []string{"touch"}, nil, "", "", "", "touch: it has no sample inputs"},
		{"not in the pipeline", launch.Default(), []string{"touch=x"}, nil, "", "", "", `"touch": the pipeline's modules are vision, language, audio`},
		{"decode a stranger", custom, nil, []string{"smell"}, "", "", "", `--to "smell"`},
		{"twice", custom, []string{"vision", "vision=@" + reading}, nil, "", "", "", "names vision twice"},
		{"no file", custom, []string{"touch=@/no/such/file"}, nil, "", "", "", "--from touch=@/no/such/file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sampled, given, want, err := planLoad(tt.p, tt.from, tt.to)
			if tt.wantUsage != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantUsage) {
					t.Fatalf("err %v, want one saying %q", err, tt.wantUsage)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(sampled, ","); got != tt.sampled {
				t.Errorf("sampled %s, want %s", got, tt.sampled)
			}
			if got := strings.Join(sortedKeys(given), ","); got != tt.given {
				t.Errorf("given %s, want %s", got, tt.given)
			}
			if got := strings.Join(want, ","); got != tt.want {
				t.Errorf("decoded %s, want %s", got, tt.want)
			}
		})
	}
}

// customModality lays out examples/custom-modality's pipeline file with
// its touch module built beside it, as the file's ../../bin/touch expects,
// in a directory of the test's own, and prepares touch.dat in data.
func customModality(t *testing.T, data string) (file, touchBin string) {
	t.Helper()
	root := t.TempDir()
	touchBin = filepath.Join(root, "bin", "touch")
	build := exec.Command("go", "build", "-o", touchBin, "./examples/custom-modality")
	if nn.Backend() == "openblas" {
		build.Args = slices.Insert(build.Args, 2, "-tags", "openblas")
	}
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the touch module: %v\n%s", err, out)
	}
	b, err := os.ReadFile("../../examples/custom-modality/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(root, "examples", "custom-modality", "pipeline.yaml")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(touchBin, "prepare", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("touch prepare: %v\n%s", err, out)
	}
	return file, touchBin
}

// serket bench load -f examples/custom-modality/pipeline.yaml starts the
// file's processes — the built-in modules and touch, a program of its own
// that serket's code has never heard of — on an embedded server, and loads
// them all: the built-ins with their sample inputs and touch by decoding;
// then touch with a reading given as a file, through its own parser. Every
// request is answered with the reply meant for it, and the integrator and
// touch's own counters agree.
func TestBenchLoadPipelineFile(t *testing.T) {
	data := datasettest.Dir(t)
	file, touchBin := customModality(t, data)
	reading, err := exec.Command(touchBin, "simulate", "--class", "sneaker").Output()
	if err != nil {
		t.Fatal(err)
	}
	readingFile := filepath.Join(t.TempDir(), "reading.txt")
	if err := os.WriteFile(readingFile, reading, 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"bench", "load", "-f", file, "--data", data, "--items", "2", "--clients", "4", "--conns", "2",
		"--duration", "1s", "--warmup", "200ms", "--baseline=false", "--json", "--log-level", "warn"}
	tests := []struct {
		name     string
		args     []string
		from, to string
	}{
		{"defaults", nil, "audio,language,vision", "touch"},
		{"touch given", []string{"--from", "touch=@" + readingFile, "--from", "vision", "--to", "touch,language"}, "touch,vision", "language,touch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			out, _, err := serketStdout(t, append(slices.Clone(common), tt.args...)...)
			if err != nil {
				t.Fatalf("serket bench load -f %s: %v", file, err)
			}
			t.Logf("took %v", time.Since(start).Round(time.Millisecond))
			var res loadbench.Result
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			p := res.Inference
			if strings.Join(res.From, ",") != tt.from || strings.Join(res.To, ",") != tt.to || p.Sent == 0 || p.OK != p.Sent || !res.Owned ||
				res.ServerRequests != res.Warmup.Sent+p.Sent || !strings.Contains(res.Setup, "the processes of "+file) {
				t.Errorf("unexpected result:\n%s", out)
			}
			touched := false
			for _, e := range res.Server {
				touched = touched || e.Service == bus.ServiceName("touch") && e.Requests >= p.Sent && e.Errors == 0
			}
			if !touched {
				t.Errorf("touch's own counters do not show every request: %+v", res.Server)
			}
		})
	}
}
