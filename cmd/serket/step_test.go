package main

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/mvae"
	"github.com/serket-go/serket/nn"
)

// The settings both the module processes and the reference use. Adam with
// a large ε takes a first step of lr·g/(|g|+ε) ≈ lr·g/ε: proportional to the
// gradient, so comparing parameters after one step compares gradients.
const (
	refLatent  = 8
	refHidden  = 24
	refLR      = 1e-3
	refAdamEps = 1e3
)

func refNet() mvae.Config {
	return mvae.Config{Latent: refLatent, Hidden: refHidden, LR: refLR, AdamEps: refAdamEps, Seed: 1}
}

// refModality is a modality with the reference settings of the module
// processes of TestDistributedStepMatchesReference.
func refModality(t *testing.T, data, name string) module.Modality {
	return newModality(t, data, name, refNet(), mvae.Pairing{Fraction: 0.5, Seed: 2})
}

func params(m module.Modality) []*nn.Param {
	return m.(interface{ Net() *mvae.Net }).Net().Params()
}

// TestDistributedStepMatchesReference runs one training step with the three
// modules as separate processes and the integrator here, and the same step
// in this process with the same networks, weights, data and noise; the
// parameter updates (so the gradients) must agree to float tolerance.
func TestDistributedStepMatchesReference(t *testing.T) {
	data := datasettest.Dir(t)
	names := []string{"audio", "language", "vision"}
	for _, agg := range []aggregate.Aggregation{aggregate.PoE(), aggregate.MoE(), aggregate.MoPoE(), aggregate.Gated()} {
		t.Run(agg.Name(), func(t *testing.T) {
			ckpt := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cfg, begin, lat := distributedStep(t, ctx, data, names, ckpt, agg)
			gates, learned := agg.(aggregate.Learned)
			if learned { // the reference steps from the gates the run started with
				cfg.Aggregation = aggregate.Gated()
				cfg.Aggregation.(aggregate.Learned).Bind(names, refLatent)
			}
			refs, before := referenceStep(t, data, names, cfg, begin, lat)
			if learned {
				checkGateUpdate(t, ckpt, gates, cfg.Aggregation.(aggregate.Learned))
			}
			// The module processes saved their parameters after the step.
			for _, name := range names {
				dist := refModality(t, data, name)
				waitFor(t, ctx, func() bool { return restoreFile(dist, filepath.Join(ckpt, name+".ckpt")) == nil })
				worst := worstUpdateDifference(t, name, params(dist), params(refs[name]), before[name])
				t.Logf("%s: worst relative difference of a parameter update %.2g", name, worst)
				if worst > 1e-3 {
					t.Errorf("%s: the distributed step's parameter update differs from the reference's by %.2g (relative)", name, worst)
				}
			}
		})
	}
}

// checkGateUpdate: the integrator's gates after the run's one step (in its
// checkpoint, as serving loads them) are Adam's first step from 0 along the
// reference's gradient: lr·g/(|g| + ε), the gradient's sign where it is not
// tiny.
func checkGateUpdate(t *testing.T, ckpt string, dist, ref aggregate.Learned) {
	t.Helper()
	agg, _, err := integrator.RunAggregation(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	saved := agg.(aggregate.Learned).Params()
	var moved int
	for i, p := range ref.Params() {
		for k, g := range p.G {
			want := 1e-3 * g / (float32(math.Abs(float64(g))) + 1e-8)
			if math.Abs(float64(saved[i].W[k]-want)) > 1e-6 || saved[i].W[k] != dist.Params()[i].W[k] {
				t.Errorf("gate %s[%d] is %v after the step (the run's own %v), want %v (reference gradient %v)", p.Name, k, saved[i].W[k], dist.Params()[i].W[k], want, g)
			}
			if g != 0 {
				moved++
			}
		}
	}
	if moved == 0 {
		t.Error("no gate has a gradient in the reference step")
	}
}

// distributedStep starts the modules as processes and the integrator here,
// trains one step and returns its settings and the step's messages, as a
// tap on the bus saw them.
func distributedStep(t *testing.T, ctx context.Context, data string, names []string, ckpt string, agg aggregate.Aggregation) (integrator.TrainConfig, bus.StepBegin, bus.Latent) {
	t.Helper()
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	for _, name := range names {
		startModuleProcess(t, srv.ClientURL(), name, "--train", "--data", data, "--latent", "8", "--hidden", "24", "--lr", "0.001", "--adam-eps", "1000",
			"--seed", "1", "--paired-fraction", "0.5", "--pairing-seed", "2", "--checkpoint", filepath.Join(ckpt, name+".ckpt"))
	}
	nc, err := bus.Connect(bus.ConnConfig{Server: srv, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ig := runIntegrator(t, nc, refLatent)
	subj, _ := bus.NewSubjects("")
	tap := make(chan *nats.Msg, 16)
	for _, s := range []string{subj.Step(), subj.Latent()} {
		sub, err := nc.ChanSubscribe(s, tap)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sub.Unsubscribe() })
	}
	for !containsAll(ig.Live(), names) {
		select {
		case <-ig.Polled():
		case <-ctx.Done():
			t.Fatalf("modules not discovered: %v", ig.Live())
		}
	}
	ids := []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	cfg := integrator.TrainConfig{Modules: names, IDs: ids, Epochs: 1, Batch: len(ids), Seed: 3, Subsets: 1,
		Lambda: map[string]float32{"language": 50, "audio": 0.5}, KLTo: 0.7, Deadline: 20 * time.Second, CheckpointDir: ckpt, Aggregation: agg}
	var stats integrator.StepStats
	cfg.OnStep = func(s integrator.StepStats) { stats = s.Clone() }
	if _, err := ig.Train(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if len(stats.Missing) > 0 {
		t.Fatalf("modules missed the step: %v", stats.Missing)
	}
	var begin bus.StepBegin
	var lat bus.Latent
	for got := 0; got < 2; got++ {
		m := <-tap
		var err error
		if m.Subject == subj.Step() {
			err = bus.Unmarshal(m.Data, &begin, bus.Expect{})
		} else {
			err = bus.Unmarshal(m.Data, &lat, bus.Expect{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return cfg, begin, lat
}

// referenceStep takes the step begin describes in this process, calling
// the modalities directly, and checks that the latent it draws is the one
// sent over the bus. It returns the stepped modalities and their
// parameters before the step.
func referenceStep(t *testing.T, data string, names []string, cfg integrator.TrainConfig, begin bus.StepBegin, lat bus.Latent) (map[string]module.Modality, map[string][][]float32) {
	t.Helper()
	refs, before := map[string]module.Modality{}, map[string][][]float32{}
	posts, batches := map[string]*bus.Posterior{}, map[string]module.Batch{}
	b, d := len(begin.IDs), refLatent
	for _, name := range names {
		m := refModality(t, data, name)
		refs[name] = m
		for _, p := range params(m) {
			before[name] = append(before[name], slices.Clone(p.W))
		}
		x, present, err := m.(module.Loader).LoadBatch(begin.IDs)
		if err != nil {
			t.Fatal(err)
		}
		batches[name] = x
		mu, lv := make([]float32, b*d), make([]float32, b*d)
		if err := m.Encode(x, mu, lv); err != nil {
			t.Fatal(err)
		}
		posts[name] = &bus.Posterior{Step: 1, Mu: bus.Matrix(b, d, mu), LogVar: bus.Matrix(b, d, lv), Present: present}
	}
	sm := &integrator.StepMath{}
	sm.Reset(integrator.StepMath{Step: 1, Seed: cfg.Seed, B: b, D: d, Plan: basePlan(cfg.Aggregation, begin.Plan), Lambda: cfg.Lambda, Beta: cfg.KLTo, Agg: cfg.Aggregation})
	if !slices.EqualFunc(sm.Terms(), begin.Plan, func(a, b bus.Term) bool {
		return slices.Equal(a.Subset, b.Subset) && slices.Equal(a.Targets, b.Targets)
	}) {
		t.Fatalf("the reference's terms %v differ from the step's %v", sm.Terms(), begin.Plan)
	}
	_, z := sm.Latents(posts)
	for i := range z {
		if !closeTo(z[i].Data, lat.Z[i].Data, 1e-4) {
			t.Fatalf("term %d: the latent sent over the bus differs from the reference's", i)
		}
	}
	zgrads := map[string]*bus.ZGrad{}
	for _, name := range names {
		zgrads[name] = referenceZGrad(t, refs[name], batches[name], posts[name].Present, begin, z, sm.RowWeights(), name)
	}
	grads, _, err := sm.Grads(zgrads)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if err := refs[name].(module.Learner).Learn(grads[name].DMu.Data, grads[name].DLogVar.Data); err != nil {
			t.Fatal(err)
		}
	}
	return refs, before
}

// referenceZGrad decodes every term of the step that scores the module, as
// the module process does.
func referenceZGrad(t *testing.T, m module.Modality, x module.Batch, present []bool, begin bus.StepBegin, z, rows []bus.Tensor, name string) *bus.ZGrad {
	t.Helper()
	b, d := len(present), refLatent
	zg := &bus.ZGrad{Step: 1}
	w := make([]float32, b)
	for i, p := range present {
		if p {
			w[i] = begin.Lambda[name]
		}
	}
	var zs, ws, lls, dzs [][]float32
	for i, term := range begin.Plan {
		if !slices.Contains(term.Targets, name) {
			continue
		}
		ll, dz := make([]float32, b), make([]float32, b*d)
		tw := slices.Clone(w)
		if len(rows) > 0 {
			for r := range tw {
				tw[r] *= rows[i].Data[r]
			}
		}
		zs, ws, lls, dzs = append(zs, z[i].Data), append(ws, tw), append(lls, ll), append(dzs, dz)
		zg.Terms = append(zg.Terms, bus.TermGrad{Term: i, DZ: bus.Matrix(b, d, dz), LogLik: bus.Vector(ll)})
	}
	if err := module.DecodeTerms(m, zs, x, ws, lls, dzs); err != nil {
		t.Fatal(err)
	}
	return zg
}

// worstUpdateDifference is the largest relative difference, over the
// parameters, between the update dist took and the one ref took from the
// same values before.
func worstUpdateDifference(t *testing.T, name string, dist, ref []*nn.Param, before [][]float32) float64 {
	t.Helper()
	var worst float64
	for k, p := range dist {
		var num, den float64
		for j := range p.W {
			dd := float64(p.W[j]-before[k][j]) - float64(ref[k].W[j]-before[k][j])
			num += dd * dd
			r := float64(ref[k].W[j] - before[k][j])
			den += r * r
		}
		if den == 0 {
			t.Fatalf("%s %s: the reference step changed nothing; the comparison proves nothing", name, p.Name)
		}
		worst = math.Max(worst, math.Sqrt(num/den))
	}
	return worst
}

func closeTo(a, b []float32, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > tol*(1+math.Abs(float64(a[i]))) {
			return false
		}
	}
	return true
}

// startModuleProcess runs `serket module NAME args…` on the NATS at url
// until the test ends.
func startModuleProcess(t *testing.T, url, name string, args ...string) {
	t.Helper()
	startProcess(t, os.Interrupt, append([]string{"module", name, "--nats", url}, args...)...)
}

func runIntegrator(t *testing.T, nc *nats.Conn, latent int) *integrator.Integrator {
	t.Helper()
	ready := make(chan *integrator.Integrator, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- integrator.Run(ctx, integrator.Config{Conn: nc, Latent: latent, Discovery: 100 * time.Millisecond, Ready: func(ig *integrator.Integrator) { ready <- ig }})
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case ig := <-ready:
		return ig
	case err := <-done:
		t.Fatal(err)
	}
	return nil
}

// basePlan is the plan whose terms, each once per stratum of agg, are
// terms (the plan a step begins with).
func basePlan(agg aggregate.Aggregation, terms []bus.Term) []bus.Term {
	var plan []bus.Term
	for i := 0; i < len(terms); i += agg.Strata(terms[i].Subset) {
		plan = append(plan, terms[i])
	}
	return plan
}
