package eval_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/eval"
	"github.com/serket-go/serket/module"
)

// A modality serket's code has never heard of, defined here: a sensor that
// sees a class's latent through a linear map M (rows×2), with an exact
// encoder (M's pseudo-inverse) and decoder (M z, Gaussian noise σ). Items'
// latents lie around one of three prototypes, by class (id mod 3).
type lens struct {
	name     string
	m        [][2]float64 // rows×2
	features bool         // whether it is a module.Featurer
}

const lensSigma = 0.1

var prototypes = [3][2]float64{{3, 0}, {0, 3}, {-3, -3}}

// latentOf is item id's latent: its class's prototype and a little noise.
func latentOf(id uint64) [2]float64 {
	r := rand.New(rand.NewPCG(id, 7))
	p := prototypes[id%3]
	return [2]float64{p[0] + 0.3*r.NormFloat64(), p[1] + 0.3*r.NormFloat64()}
}

type lensBatch struct {
	n, rows int
	x       []float32
}

func (b *lensBatch) Len() int { return b.n }

func (b *lensBatch) Pick(rows []int) module.Batch {
	out := &lensBatch{n: len(rows), rows: b.rows}
	for _, r := range rows {
		out.x = append(out.x, b.x[r*b.rows:(r+1)*b.rows]...)
	}
	return out
}

func (l *lens) Spec() module.Spec {
	return module.Spec{Name: l.name, Latent: 2, Likelihood: "gaussian"}
}

func (l *lens) LoadBatch(ids []uint64) (module.Batch, []bool, error) {
	b := &lensBatch{n: len(ids), rows: len(l.m)}
	present := make([]bool, len(ids))
	for i, id := range ids {
		u := latentOf(id)
		for _, row := range l.m {
			b.x = append(b.x, float32(row[0]*u[0]+row[1]*u[1]))
		}
		present[i] = true
	}
	return b, present, nil
}

func (l *lens) Encode(x module.Batch, mu, logvar []float32) error {
	b := x.(*lensBatch)
	// The pseudo-inverse (MᵀM)⁻¹Mᵀ of a rows×2 M.
	var a, bb, c float64
	for _, r := range l.m {
		a, bb, c = a+r[0]*r[0], bb+r[0]*r[1], c+r[1]*r[1]
	}
	det := a*c - bb*bb
	for i := range b.n {
		var t0, t1 float64
		for k, r := range l.m {
			v := float64(b.x[i*b.rows+k])
			t0, t1 = t0+r[0]*v, t1+r[1]*v
		}
		mu[2*i], mu[2*i+1] = float32((c*t0-bb*t1)/det), float32((a*t1-bb*t0)/det)
		logvar[2*i], logvar[2*i+1] = -4, -4
	}
	return nil
}

func (l *lens) mean(z []float32, i, k int) float64 {
	return l.m[k][0]*float64(z[2*i]) + l.m[k][1]*float64(z[2*i+1])
}

func (l *lens) Decode(z []float32, x module.Batch, w, ll, dz []float32) error {
	b := x.(*lensBatch)
	for i := range b.n {
		ll[i], dz[2*i], dz[2*i+1] = 0, 0, 0
		if w[i] == 0 {
			continue
		}
		var s float64
		for k := range l.m {
			e := (float64(b.x[i*b.rows+k]) - l.mean(z, i, k)) / lensSigma
			s += -0.5*e*e - math.Log(lensSigma*math.Sqrt(2*math.Pi))
			dz[2*i] += w[i] * float32(e/lensSigma*l.m[k][0])
			dz[2*i+1] += w[i] * float32(e/lensSigma*l.m[k][1])
		}
		ll[i] = w[i] * float32(s)
	}
	return nil
}

// featuredLens is a lens that shows its features.
type featuredLens struct{ *lens }

func (l featuredLens) FeatureLen() int { return len(l.m) }

func (l featuredLens) Features(x module.Batch, dst []float32) error {
	copy(dst, x.(*lensBatch).x)
	return nil
}

func (l featuredLens) Means(z []float32, n int, dst []float32) error {
	for i := range n {
		for k := range l.m {
			dst[i*len(l.m)+k] = float32(l.mean(z, i, k))
		}
	}
	return nil
}

var (
	_ module.Loader   = (*lens)(nil)
	_ module.Featurer = featuredLens{}
)

// writeLens labels: 300 training items and 90 test items, three classes.
func writeLensLabels(t *testing.T) string {
	t.Helper()
	type item struct {
		ID    uint64 `json:"id"`
		Split string `json:"split"`
		Class int    `json:"class"`
	}
	var items []item
	for id := range uint64(300) {
		items = append(items, item{id, "train", int(id % 3)})
	}
	for id := uint64(1000); id < 1090; id++ {
		items = append(items, item{id, "test", int(id % 3)})
	}
	b, _ := json.Marshal(map[string]any{"classes": []string{"east", "north", "south-west"}, "items": items})
	path := filepath.Join(t.TempDir(), "labels.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestEvaluateAModuleNobodyKnows evaluates, end to end over the bus, a
// pipeline of three modules of a kind defined in this test: two that show
// their features (so a classifier judges them) and one that does not (so it
// is measured, but nothing judges its generations, and the result says
// why). Their encoders and decoders are exact, so coherence must be high.
func TestEvaluateAModuleNobodyKnows(t *testing.T) {
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	mods := []module.Modality{
		featuredLens{&lens{name: "left", m: [][2]float64{{1, 0}, {0, 1}, {1, 1}, {1, -1}}}},
		featuredLens{&lens{name: "right", m: [][2]float64{{2, 1}, {-1, 2}, {0.5, 0}}}},
		&lens{name: "silent", m: [][2]float64{{1, 2}, {2, 1}}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, m := range mods {
		ready := make(chan struct{})
		go module.Run(ctx, m, module.Options{Pipeline: "unknown", NATS: bus.ConnConfig{Server: srv}, Logger: slog.New(slog.DiscardHandler),
			Ready: func(micro.Service) { close(ready) }})
		<-ready
	}
	nc, err := bus.Connect(bus.ConnConfig{Server: srv, Name: "eval-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	labels, err := eval.ReadLabels(writeLensLabels(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := eval.Connect(ctx, nc, "unknown", labels, []string{"left", "right", "silent"})
	if err != nil {
		t.Fatal(err)
	}
	var phases []string
	r, err := p.Evaluate(ctx, eval.Config{Items: 90, Prior: 90, IWAEItems: 30, IWAEK: 20, ProbeTrain: 300,
		Judges:   eval.JudgeConfig{Classifier: eval.ClassifierConfig{Epochs: 20, Batch: 30}},
		Progress: func(pr eval.Progress) { phases = appendNew(phases, pr.Phase) }})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Coherence
	if !slices.Equal(c.Targets, []string{"left", "right"}) || len(c.Subsets) != 7 || c.Items != 90 {
		t.Fatalf("coherence of %v from %d subsets over %d items; want left and right from the 7 subsets of three modules", c.Targets, len(c.Subsets), c.Items)
	}
	for i, s := range c.Subsets {
		for k, target := range c.Targets {
			if c.Acc[i][k] < 0.9 {
				t.Errorf("coherence %s → %s is %.3f; exact modules give near 1", eval.SubsetName(s), target, c.Acc[i][k])
			}
		}
	}
	if !strings.Contains(r.NoJudge["silent"], "Featurer") || r.JudgeKinds["left"] == "" || r.Judges["right"] < 0.9 {
		t.Errorf("judges %v, accuracies %v, none for %v", r.JudgeKinds, r.Judges, r.NoJudge)
	}
	if math.IsNaN(r.LogPX) || r.LogPX == 0 || len(r.LogPCond) != 3 || r.Probe["left+right+silent"] < 0.9 || r.Probe["silent"] < 0.9 {
		t.Errorf("log p(x) %v, conditionals %v, probes %v", r.LogPX, r.LogPCond, r.Probe)
	}
	if want := []string{"judge left", "coherence", "likelihoods", "latent"}; !slices.Equal(withoutRight(phases), want) {
		t.Errorf("phases %v, want %v (and judge right)", phases, want)
	}
}

func appendNew(s []string, v string) []string {
	if len(s) > 0 && s[len(s)-1] == v {
		return s
	}
	return append(s, v)
}

func withoutRight(s []string) []string {
	return slices.DeleteFunc(slices.Clone(s), func(v string) bool { return v == "judge right" })
}
