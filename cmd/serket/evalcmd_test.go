package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/eval"
	"github.com/serket-go/serket/modules/fmnist3"
)

// serket eval on a (fresh) model: the figures as JSON and a report whose
// pictures exist; a missing checkpoint is refused and leaves no report.
func TestEvalWritesReport(t *testing.T) {
	data := datasettest.Dir(t)
	m, err := fmnist3.Open(data, 64, 32)
	if err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(t.TempDir(), "model")
	if err := m.Save(ckpt); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ckpt, "metrics.jsonl"), []byte(`{"epoch":0,"elbo":-900,"joint_elbo":-300,"test_elbo":-320,"samples_per_sec":500}
{"epoch":1,"elbo":-800,"joint_elbo":-250,"test_elbo":-260,"samples_per_sec":510}
`), 0o644)
	args := []string{"eval", "--checkpoint", ckpt, "--data", data, "--hidden", "32", "--items", "20", "--prior-samples", "20",
		"--iwae-items", "4", "--iwae-k", "8", "--probe-train", "60"}
	out, err := serketOut(t, args...)
	if err != nil {
		t.Fatalf("serket eval: %v\n%s", err, out)
	}
	report := filepath.Join(ckpt, "report")
	b, err := os.ReadFile(filepath.Join(report, "eval.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res eval.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	c := res.Coherence
	if c == nil || len(c.Subsets) != 7 || len(c.Acc) != 7 || len(c.Acc[0]) != 3 || c.Items != 20 || res.IWAEK != 8 || !(res.LogPX < 0) {
		t.Fatalf("eval.json: %s", b)
	}
	html, err := os.ReadFile(filepath.Join(report, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Coherence", "ELBO per epoch", "The shared latent", "What vision generates", "What language generates", "clip-01.wav", "Judges"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("the report has no %q", want)
		}
	}
	if !strings.Contains(out, "report: "+filepath.Join(report, "index.html")) {
		t.Errorf("output does not say where the report is:\n%s", out)
	}

	// A checkpoint directory without the audio checkpoint: refused, naming
	// it, and no report.
	os.Remove(filepath.Join(ckpt, "audio.ckpt"))
	other := filepath.Join(t.TempDir(), "report")
	out, err = serketOut(t, append(args, "--out", other)...)
	if err == nil || !strings.Contains(out, "no checkpoint of audio in "+ckpt) {
		t.Fatalf("eval without audio.ckpt: %v\n%s", err, out)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Fatalf("a failed eval left %s behind", other)
	}
}

// serket eval without size flags runs the fast preset and says when each
// phase starts and how long it took (here with no terminal: log lines),
// the judges' training included when they are not cached; --thorough runs
// the published sizes, and a size flag overrides either.
func TestEvalPresetsAndProgress(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(data, os.DirFS(datasettest.Dir(t))); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vision", "audio"} { // judges another test cached
		os.Remove(filepath.Join(data, "judge-"+name+".ckpt"))
	}
	m, err := fmnist3.Open(data, 64, 32)
	if err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(t.TempDir(), "model")
	if err := m.Save(ckpt); err != nil {
		t.Fatal(err)
	}
	run := func(wantK int, phases []string, flags ...string) {
		t.Helper()
		out, err := serketOut(t, append([]string{"eval", "--checkpoint", ckpt, "--data", data, "--hidden", "32"}, flags...)...)
		if err != nil {
			t.Fatalf("serket eval %v: %v\n%s", flags, err, out)
		}
		var res eval.Result
		b, err := os.ReadFile(filepath.Join(ckpt, "report", "eval.json"))
		if err == nil {
			err = json.Unmarshal(b, &res)
		}
		if err != nil || res.IWAEK != wantK {
			t.Fatalf("serket eval %v: K = %d (%v), want %d", flags, res.IWAEK, err, wantK)
		}
		for _, p := range phases {
			start, end := `msg="`+p+` …"`, `msg="`+p+` done"`
			i, j := strings.Index(out, start), strings.Index(out, end)
			if i < 0 || j < i || !strings.Contains(out[j:], "took=") {
				t.Errorf("serket eval %v: no line for the start of %q and then one with its duration:\n%s", flags, p, out)
			}
		}
	}
	all := []string{"coherence", "likelihoods", "latent", "report"}
	run(100, append([]string{"judge vision", "judge audio"}, all...))
	// Few items, for time: K is what tells the presets apart.
	run(1000, all, "--thorough", "--iwae-items", "4")
	run(300, all, "--thorough", "--iwae-items", "4", "--iwae-k", "300")
}
