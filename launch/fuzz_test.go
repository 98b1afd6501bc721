package launch_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/serket-go/serket/launch"
)

// pipelineSeeds are the pipeline files people write (the default, the
// examples) and broken ones: syntax, types, validation, several documents,
// alias bombs.
func pipelineSeeds(t testing.TB) [][]byte {
	t.Helper()
	def, err := yaml.Marshal(launch.Default())
	if err != nil {
		t.Fatal(err)
	}
	seeds := [][]byte{def}
	for _, path := range []string{"../examples/robot/pipeline.yaml", "../examples/custom-modality/pipeline.yaml"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	for _, s := range []string{
		fullExample,
		"modules: [{name: a}]",
		"modules:\n  - name: a\n    sensors: [cam.left]\n    rate: 2.5\nfusion: {slop: 500ms, max_ahead: 1s, belief_period: 100ms}",
		"modules: [{name: a}]\ntrain: {epochs: 3, batch: 100, plan: cross, lambda: {a: 50}, kl_from: 0, kl_to: 1, lr: 0.001, paired_fraction: 0.5}",
		"",
		"modules: []",
		"modules: [{name: a}, {name: a}]",
		"latent: many\nmodules: [{name: a}]",
		"modules:\n  - name: a\n   args: [x",
		"modules: [{name: a}]\n---\nmodules: [{name: b}]",
		"modules: [{name: a, restart: {backoff: fast}}]",
		"modules: [{name: a, rate: .nan}]",
		"modules: [{name: a}]\ntrain: {lr: .inf, kl_to: .inf, lambda: {a: .inf}}",
		"modules: [{name: a, args: &x [a, b]}, {name: b, args: *x}]",
		"modules: [{name: a, env: &e {A: x}}, {name: b, env: *e}]",
		billionLaughs,
		"\xff\xfe",
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// billionLaughs nests aliases nine deep: fully expanded it would be 10⁹
// strings.
const billionLaughs = `modules:
  - name: a
    args: &a [x, x, x, x, x, x, x, x, x, x]
    env: &b {k: *a, l: *a, m: *a, n: *a, o: *a, p: *a, q: *a, r: *a, s: *a, t: *a}
  - name: b
    env: &c {k: *b, l: *b, m: *b, n: *b, o: *b, p: *b, q: *b, r: *b, s: *b, t: *b}
  - name: c
    env: &d {k: *c, l: *c, m: *c, n: *c, o: *c, p: *c, q: *c, r: *c, s: *c, t: *c}
  - name: d
    env: &e {k: *d, l: *d, m: *d, n: *d, o: *d, p: *d, q: *d, r: *d, s: *d, t: *d}
  - name: e
    env: &f {k: *e, l: *e, m: *e, n: *e, o: *e, p: *e, q: *e, r: *e, s: *e, t: *e}
  - name: f
    env: &g {k: *f, l: *f, m: *f, n: *f, o: *f, p: *f, q: *f, r: *f, s: *f, t: *f}
  - name: g
    env: &h {k: *g, l: *g, m: *g, n: *g, o: *g, p: *g, q: *g, r: *g, s: *g, t: *g}
  - name: h
    env: &i {k: *h, l: *h, m: *h, n: *h, o: *h, p: *h, q: *h, r: *h, s: *h, t: *h}
  - name: i
    env: {k: *i, l: *i, m: *i, n: *i, o: *i, p: *i, q: *i, r: *i, s: *i, t: *i}
`

// FuzzParse: Parse never panics or hangs; it either fails with an
// ErrInvalidPipeline naming the source, or gives a pipeline that validates,
// holds only finite numbers, and survives Marshal → Parse unchanged (with
// the YAML a fixed point of the round trip).
func FuzzParse(f *testing.F) {
	for _, s := range pipelineSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		p, err := launch.Parse(data, "fuzz.yaml")
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Parse of %d bytes took %v", len(data), d)
		}
		if err != nil {
			if p != nil {
				t.Errorf("Parse returned %+v with the error %v", p, err)
			}
			if !errors.Is(err, launch.ErrInvalidPipeline) {
				t.Errorf("error %q does not wrap ErrInvalidPipeline", err)
			}
			if !strings.Contains(err.Error(), "fuzz.yaml: ") {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("Parse accepted a pipeline Validate refuses: %v", err)
		}
		if path, ok := infinite(reflect.ValueOf(p), "pipeline"); ok {
			t.Errorf("Parse accepted a non-finite %s", path)
		}
		out, err := yaml.Marshal(p)
		if err != nil {
			t.Fatalf("Marshal of a parsed pipeline: %v", err)
		}
		q, err := launch.Parse(out, "marshalled.yaml")
		if err != nil {
			t.Fatalf("Parse refuses the marshalled form of a pipeline it accepted: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(emptiedOut(p), emptiedOut(q)) {
			t.Fatalf("Marshal → Parse changed the pipeline:\nfirst  %+v\nsecond %+v\nYAML:\n%s", p, q, out)
		}
		again, err := yaml.Marshal(q)
		if err != nil || !bytes.Equal(out, again) {
			t.Fatalf("marshalling is not stable (%v):\n%s\nthen\n%s", err, out, again)
		}
	})
}

// TestParseRefusesBombs: documents that would cost the YAML decoder far
// more than their size — aliases expanding a billion-fold, a key repeated
// a thousand times (the decoder compares and reports every duplicate
// pair), a mapping of thousands of keys, more than MaxPipelineBytes — are
// refused at once, with errors that name the file and say why.
func TestParseRefusesBombs(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, yaml, wantErr string
	}{
		{"billion laughs", billionLaughs, "cannot unmarshal"},
		{"one key a thousand times", "modules:\n  - name: a\n    env:\n" + strings.Repeat("      k: v\n", 1000), `line 5: mapping key "k" already defined at line 4`},
		{"a top-level field twice", "latent: 8\nmodules: [{name: a}]\nlatent: 9", `line 3: mapping key "latent" already defined at line 1`},
		{"a mapping of 5000 keys", "modules: [{name: a, env: {" + keys(5000) + "}}]", "a mapping of 5000 keys (at most 1000)"},
		{"more than MaxPipelineBytes", "modules: [{name: a}]\n" + strings.Repeat("# padding\n", launch.MaxPipelineBytes/10), "larger than 1 MiB"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			p, err := launch.Parse([]byte(tt.yaml), "bomb.yaml")
			if err == nil || !errors.Is(err, launch.ErrInvalidPipeline) || !strings.Contains(err.Error(), "bomb.yaml: ") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse = %+v, %.300v; want an ErrInvalidPipeline naming bomb.yaml and containing %q", p, err, tt.wantErr)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("refusing took %v", d)
			}
		})
	}
}

// keys is a YAML flow mapping's content of n distinct keys.
func keys(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "k%d: v, ", i)
	}
	return b.String()
}

// TestLoadRefusesHugeFiles: Load stops reading past MaxPipelineBytes, so
// that a path such as /dev/zero fails instead of filling the memory.
func TestLoadRefusesHugeFiles(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	_, err := launch.Load("/dev/zero")
	if err == nil || !errors.Is(err, launch.ErrInvalidPipeline) || !strings.Contains(err.Error(), "/dev/zero: larger than 1 MiB") {
		t.Fatalf("Load(/dev/zero) = %v, want an ErrInvalidPipeline naming the file and the limit", err)
	}
}

// infinite finds a float that is not finite in v and returns its path.
func infinite(v reflect.Value, path string) (string, bool) {
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		return path, math.IsNaN(f) || math.IsInf(f, 0)
	case reflect.Pointer:
		if !v.IsNil() {
			return infinite(v.Elem(), path)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if p, ok := infinite(v.Field(i), path+"."+v.Type().Field(i).Name); ok {
				return p, true
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			if p, ok := infinite(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); ok {
				return p, true
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if p, ok := infinite(it.Value(), path+"."+it.Key().String()); ok {
				return p, true
			}
		}
	}
	return "", false
}

// emptiedOut returns a copy of p whose empty slices and maps are nil:
// Marshal omits them, so a round trip cannot tell the two apart, and no
// user of a Pipeline can either.
func emptiedOut(p *launch.Pipeline) *launch.Pipeline {
	q := *p
	if q.Integrator != nil {
		in := emptiedProcess(*q.Integrator)
		q.Integrator = &in
	}
	q.Modules = nil
	for _, m := range p.Modules {
		q.Modules = append(q.Modules, emptiedProcess(m))
	}
	if q.Train != nil {
		tr := *q.Train
		if len(tr.Lambda) == 0 {
			tr.Lambda = nil
		}
		q.Train = &tr
	}
	return &q
}

func emptiedProcess(pr launch.Process) launch.Process {
	if len(pr.Args) == 0 {
		pr.Args = nil
	}
	if len(pr.Env) == 0 {
		pr.Env = nil
	}
	if len(pr.Sensors) == 0 {
		pr.Sensors = nil
	}
	return pr
}
