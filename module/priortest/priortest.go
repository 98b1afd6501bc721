package priortest

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/module"
)

// Config configures the suite.
type Config struct {
	// New returns a fresh model. Every call must return a model in the
	// same state (seed its randomness). Required.
	New func() (module.PriorModel, error)

	// Warmup is how many training calls the model sits out at first,
	// learning nothing (the concept module's ModuleConfig.Warmup): the
	// learning checks give it Warmup + LearnSteps of them.
	Warmup int
	// LearnSteps is how many training calls past its warm-up must change
	// the model; default 50.
	LearnSteps int
	// Checksummed says the model's checkpoint carries a checksum, so that
	// one with a flipped byte must be refused (see DamagedCheckpoints in
	// the package doc).
	Checksummed bool

	// Batch is the items of each term of a query, default 16, at least 3;
	// Terms the terms of a query, default 3.
	Batch, Terms int
	// Timeout bounds each exchange over the bus; default 10 s.
	Timeout time.Duration
}

func (c *Config) defaults() {
	if c.LearnSteps == 0 {
		c.LearnSteps = 50
	}
	if c.Batch == 0 {
		c.Batch = 16
	}
	if c.Terms == 0 {
		c.Terms = 3
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
}

// Run runs the suite on the models cfg.New makes, each check a subtest of
// t (the package doc says what each demands).
func Run(t *testing.T, cfg Config) {
	t.Helper()
	s := newSuite(t, cfg)
	wire := true
	for _, c := range checks {
		if c.applies == nil || c.applies(s.fresh(t)) {
			passed := t.Run(c.name, func(t *testing.T) { c.run(s, t) })
			wire = wire && (passed || !c.beforeWire)
		}
	}
	t.Run("Wire", func(t *testing.T) {
		if !wire {
			t.Skip("the model failed Spec or Outputs: RunPrior panics, and takes the test binary with it, on outputs of other lengths than it gave")
		}
		for _, c := range wireChecks {
			t.Run(c.name, func(t *testing.T) { c.run(s, t) })
		}
	})
}

// A check is one subtest. It takes a testing.TB, not a *testing.T, so that
// the suite's own tests can run it on a recorder and see it fail.
type check struct {
	name    string
	run     func(s *suite, t testing.TB)
	applies func(module.PriorModel) bool // nil: to every model
	// beforeWire: the wire checks run only if it passes.
	beforeWire bool
}

var checks = []check{
	{name: "Spec", run: (*suite).checkSpec, beforeWire: true},
	{name: "Outputs", run: (*suite).checkOutputs, beforeWire: true},
	{name: "InferenceDoesNotLearn", run: (*suite).checkInference},
	{name: "Learning", run: (*suite).checkLearning},
	{name: "Checkpoint", run: (*suite).checkCheckpoint, applies: isSaver},
	{name: "DamagedCheckpoints", run: (*suite).checkDamaged, applies: isSaver},
}

var wireChecks = []check{
	{name: "Inference", run: (*suite).wireInference},
	{name: "Malformed", run: (*suite).wireMalformed},
	{name: "ForgedTraining", run: (*suite).wireForged},
	{name: "Training", run: (*suite).wireTraining},
}

func isSaver(m module.PriorModel) bool {
	_, ok := m.(module.Saver)
	return ok
}

type suite struct {
	cfg  Config
	name string // the model's, from its spec
	d    int    // its latent size
}

func newSuite(t testing.TB, cfg Config) *suite {
	t.Helper()
	if cfg.New == nil {
		t.Fatal("priortest: Config.New is required")
	}
	if cfg.Warmup < 0 || cfg.LearnSteps < 0 || cfg.Batch < 0 || cfg.Terms < 0 || cfg.Terms > bus.MaxTerms {
		t.Fatalf("priortest: Config: Warmup %d, LearnSteps %d, Batch %d, Terms %d: want counts ≥ 0, and Terms at most %d",
			cfg.Warmup, cfg.LearnSteps, cfg.Batch, cfg.Terms, bus.MaxTerms)
	}
	cfg.defaults()
	if cfg.Batch < 3 {
		t.Fatalf("priortest: Config.Batch %d: the suite needs 3 items or more, one per cluster of its training evidence", cfg.Batch)
	}
	s := &suite{cfg: cfg}
	spec := s.fresh(t).PriorSpec()
	s.name, s.d = spec.Name, spec.Latent
	if s.d <= 0 {
		t.Fatalf("priortest: the model's latent size is %d; the suite needs one > 0 to build its queries", s.d)
	}
	return s
}

func (s *suite) fresh(t testing.TB) module.PriorModel {
	t.Helper()
	m, err := s.cfg.New()
	if err != nil {
		t.Fatalf("priortest: Config.New: %v", err)
	}
	if m == nil {
		t.Fatal("priortest: Config.New returned a nil model and no error")
	}
	return m
}

// Seeds of the suite's evidence, apart so that no two draws coincide.
const (
	seedRandom  = 1
	seedTeach   = 2
	seedOther   = 3 // a second course of teaching
	seedProbe   = 4
	seedInquiry = 5

	// inferStep numbers the suite's inference queries, far from the
	// training steps (1, 2, …) that teach uses.
	inferStep = 1 << 20
)

// query is a query of the suite's shape.
func (s *suite) query(step uint64, learn bool) module.PriorQuery {
	return module.PriorQuery{B: s.cfg.Batch, D: s.d, Step: step, Learn: learn}
}

// prior calls m.Prior on ev with fresh outputs primed as RunPrior primes
// them (Concept −1, Prob 0), but for Mu and LogVar, which are NaN so that
// an element the model does not write shows. A Prior error or panic fails
// t.
func (s *suite) prior(t testing.TB, m module.PriorModel, ev []module.Evidence, q module.PriorQuery) []module.PriorOut {
	t.Helper()
	out := make([]module.PriorOut, len(ev))
	for i := range out {
		o := module.PriorOut{Mu: make([]float32, q.B*q.D), LogVar: make([]float32, q.B*q.D), Concept: make([]int32, q.B), Prob: make([]float32, q.B)}
		for k := range o.Mu {
			o.Mu[k], o.LogVar[k] = float32(math.NaN()), float32(math.NaN())
		}
		for k := range o.Concept {
			o.Concept[k] = -1
		}
		out[i] = o
	}
	err := s.call(t, "Prior", func() error { return m.Prior(out, ev, q) })
	if err != nil {
		t.Fatalf("%s: Prior(step %d, learn %v, %d terms of %d×%d): %v", s.name, q.Step, q.Learn, len(ev), q.B, q.D, err)
	}
	return out
}

// call runs f, one call into the model, failing t if it panics: a
// panicking model fails its check rather than the whole test binary.
func (s *suite) call(t testing.TB, what string, f func() error) error {
	t.Helper()
	defer func() {
		if v := recover(); v != nil {
			t.Fatalf("%s: %s panicked: %v", s.name, what, v)
		}
	}()
	return f()
}

// save is a Saver's checkpoint; Save failing fails t.
func (s *suite) save(t testing.TB, m module.PriorModel) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.call(t, "Save", func() error { return m.(module.Saver).Save(&buf) }); err != nil {
		t.Fatalf("%s: Save: %v", s.name, err)
	}
	return buf.Bytes()
}

func (s *suite) restore(t testing.TB, m module.PriorModel, data []byte) error {
	t.Helper()
	return s.call(t, "Restore", func() error { return m.(module.Saver).Restore(bytes.NewReader(data)) })
}

// teach gives m the training calls of the learning checks: Warmup +
// LearnSteps of them, steps 1, 2, …, each on fresh evidence of three
// clusters drawn from seed, and checks every answer as Outputs does.
func (s *suite) teach(t testing.TB, m module.PriorModel, seed uint64) {
	t.Helper()
	for step := uint64(1); step <= s.steps(); step++ {
		ev := s.clusters(seed, step)
		q := s.query(step, true)
		out := s.prior(t, m, ev, q)
		s.valid(t, fmt.Sprintf("training step %d", step), out, q)
	}
}

func (s *suite) steps() uint64 { return uint64(s.cfg.Warmup + s.cfg.LearnSteps) }

// random is evidence of cfg.Terms terms of cfg.Batch items: precisions
// between 0.1 and 10, means N(0, 2²), a fifth of the dimensions unseen
// (precision and shift 0), rows 0 and every fifth (shifted per term)
// unseen altogether, and the last term of several unseen altogether, as
// a term whose experts observe nothing of the item (generation) is.
func (s *suite) random(seed uint64) []module.Evidence {
	r := rand.New(rand.NewPCG(seedRandom, seed))
	b, d, terms := s.cfg.Batch, s.d, s.cfg.Terms
	ev := make([]module.Evidence, terms)
	for t := range ev {
		prec, shift := make([]float32, b*d), make([]float32, b*d)
		for i := range b {
			if i == 0 || (i+t)%5 == 0 || (terms > 1 && t == terms-1) {
				continue
			}
			for k := i * d; k < (i+1)*d; k++ {
				if r.IntN(5) == 0 {
					continue
				}
				p := float32(math.Exp(r.Float64()*4.6 - 2.3))
				prec[k], shift[k] = p, p*float32(2*r.NormFloat64())
			}
		}
		ev[t] = module.Evidence{Prec: prec, Shift: shift}
	}
	return ev
}

// clusters is evidence a prior has something to learn from: item i lies
// near the centre of cluster i mod 3 (−6v, 0 or 6v, v = (1, −1, 1, …):
// 6√D apart, with items spread by 0.5), and each term's experts see it
// with precision 25 (a standard deviation of 0.2) in every dimension,
// but for every seventh item, which the last term does not see.
func (s *suite) clusters(seed, step uint64) []module.Evidence {
	r := rand.New(rand.NewPCG(seed, step))
	b, d, terms := s.cfg.Batch, s.d, s.cfg.Terms
	z := make([]float64, b*d)
	for i := range b {
		for k := range d {
			v := 1.0
			if k%2 == 1 {
				v = -1
			}
			z[i*d+k] = 6*float64(i%3-1)*v + 0.5*r.NormFloat64()
		}
	}
	const prec = 25
	ev := make([]module.Evidence, terms)
	for t := range ev {
		p, h := make([]float32, b*d), make([]float32, b*d)
		for i := range b {
			if t == terms-1 && i%7 == 6 {
				continue
			}
			for k := i * d; k < (i+1)*d; k++ {
				p[k], h[k] = prec, float32(prec*(z[k]+0.2*r.NormFloat64()))
			}
		}
		ev[t] = module.Evidence{Prec: p, Shift: h}
	}
	return ev
}

// maxLogVar is the largest |log-variance| of a prior the wire carries:
// bus.PriorTerm's check refuses a reply beyond it, so such a prior never
// reaches the integrator, which falls back to N(0, I) for the step.
const maxLogVar = bus.MaxPriorLogVar

// valid checks what Prior wrote for q: the lengths it was given, every
// Mu and LogVar finite, |LogVar| ≤ maxLogVar, categories −1 or in [0,
// bus.MaxConcepts), probabilities in [0, 1]; then that the reply RunPrior
// would send of them gets through the wire as the integrator reads it.
func (s *suite) valid(t testing.TB, what string, out []module.PriorOut, q module.PriorQuery) {
	t.Helper()
	var faults []string
	fault := func(format string, args ...any) {
		faults = append(faults, fmt.Sprintf(format, args...))
	}
	for i, o := range out {
		if len(o.Mu) != q.B*q.D || len(o.LogVar) != q.B*q.D || len(o.Concept) != q.B || len(o.Prob) != q.B {
			fault("term %d: lengths Mu %d, LogVar %d, Concept %d, Prob %d; want %d, %d, %d, %d (write into the slices given, do not replace them)",
				i, len(o.Mu), len(o.LogVar), len(o.Concept), len(o.Prob), q.B*q.D, q.B*q.D, q.B, q.B)
			continue
		}
		if k, n := firstBad(o.Mu, finite); n > 0 {
			fault("term %d: Mu[%d] = %v, and %d bad in all: every element must be written and finite", i, k, o.Mu[k], n)
		}
		if k, n := firstBad(o.LogVar, func(v float32) bool { return finite(v) && math.Abs(float64(v)) <= maxLogVar }); n > 0 {
			fault("term %d: LogVar[%d] = %v, and %d bad in all: every element must be written, finite and within ±%d (the wire's bound)", i, k, o.LogVar[k], n, maxLogVar)
		}
		if k, n := firstBad(o.Prob, func(v float32) bool { return v >= 0 && v <= 1 }); n > 0 {
			fault("term %d: Prob[%d] = %v, and %d bad in all: a probability is in [0, 1]", i, k, o.Prob[k], n)
		}
		for k, c := range o.Concept {
			if c < -1 || c >= bus.MaxConcepts {
				fault("term %d: Concept[%d] = %d: a category is −1 (none) or in [0, %d)", i, k, c, bus.MaxConcepts)
				break
			}
		}
	}
	if len(faults) > 0 {
		t.Fatalf("%s: %s (%d terms of %d×%d) gave priors the integrator cannot use:\n\t%s", s.name, what, len(out), q.B, q.D, joinLines(faults))
	}
	s.throughWire(t, what, out, q)
}

// throughWire builds the reply RunPrior sends of out and reads it back
// with the checks the integrator applies (integrator/prior.go: askPrior).
func (s *suite) throughWire(t testing.TB, what string, out []module.PriorOut, q module.PriorQuery) {
	t.Helper()
	r := &bus.PriorReply{Step: q.Step, Terms: make([]bus.PriorTerm, len(out))}
	r.SetSender(s.name)
	for i, o := range out {
		r.Terms[i] = bus.PriorTerm{Mu: bus.Matrix(q.B, q.D, o.Mu), LogVar: bus.Matrix(q.B, q.D, o.LogVar), Concept: o.Concept, Prob: bus.Vector(o.Prob)}
	}
	data, err := bus.Marshal(r)
	if err != nil {
		t.Fatalf("%s: %s: its priors cannot be sent (RunPrior would answer with an error): %v", s.name, what, err)
	}
	subj, err := bus.NewSubjects(pipeline)
	if err != nil {
		t.Fatal(err)
	}
	var back bus.PriorReply
	if err := bus.UnmarshalFrom(subj.Prior(s.name), data, &back, bus.Expect{Latent: q.D, Batch: q.B, Terms: len(out)}); err != nil {
		t.Fatalf("%s: %s: the integrator refuses its priors: %v", s.name, what, err)
	}
	if diff := replyDiff(&back, out); diff != "" {
		t.Fatalf("%s: %s: its priors change on the wire: %s", s.name, what, diff)
	}
}

// replyDiff says where a reply's priors differ from want, "" if nowhere.
func replyDiff(r *bus.PriorReply, want []module.PriorOut) string {
	if len(r.Terms) != len(want) {
		return fmt.Sprintf("%d terms, want %d", len(r.Terms), len(want))
	}
	for i, w := range want {
		p := &r.Terms[i]
		switch {
		case !slices.Equal(p.Mu.Data, w.Mu):
			return fmt.Sprintf("term %d: Mu differs", i)
		case !slices.Equal(p.LogVar.Data, w.LogVar):
			return fmt.Sprintf("term %d: LogVar differs", i)
		case !slices.Equal(p.Concept, w.Concept):
			return fmt.Sprintf("term %d: Concept %v, want %v", i, p.Concept, w.Concept)
		case !slices.Equal(p.Prob.Data, w.Prob):
			return fmt.Sprintf("term %d: Prob %v, want %v", i, p.Prob.Data, w.Prob)
		}
	}
	return ""
}

// same reports whether two answers are equal element for element.
func same(a, b []module.PriorOut) bool {
	return slices.EqualFunc(a, b, func(x, y module.PriorOut) bool {
		return slices.Equal(x.Mu, y.Mu) && slices.Equal(x.LogVar, y.LogVar) && slices.Equal(x.Concept, y.Concept) && slices.Equal(x.Prob, y.Prob)
	})
}

func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

// firstBad returns the index of the first element of v that is not ok and
// how many are not.
func firstBad(v []float32, ok func(float32) bool) (first, n int) {
	first = -1
	for i, x := range v {
		if !ok(x) {
			if first < 0 {
				first = i
			}
			n++
		}
	}
	return first, n
}

func joinLines(lines []string) string {
	var b bytes.Buffer
	for i, l := range lines {
		if i > 0 {
			b.WriteString("\n\t")
		}
		b.WriteString(l)
	}
	return b.String()
}

func (s *suite) checkSpec(t testing.TB) {
	spec := s.fresh(t).PriorSpec()
	if err := spec.Validate(); err != nil {
		t.Fatalf("PriorSpec: %v", err)
	}
	if spec.Latent <= 0 {
		t.Fatalf("PriorSpec: latent size %d, want > 0", spec.Latent)
	}
	if again := s.fresh(t).PriorSpec(); again != spec {
		t.Fatalf("two fresh models have specs %+v and %+v: Config.New must return the same model", spec, again)
	}
}

func (s *suite) checkOutputs(t testing.TB) {
	m := s.fresh(t)
	for _, taught := range []bool{false, true} {
		state := "a fresh model"
		if taught {
			s.teach(t, m, seedTeach)
			state = "a taught model"
		}
		for i := range uint64(3) {
			q := s.query(inferStep+i, false)
			s.valid(t, fmt.Sprintf("%s's prior of random evidence (inference %d)", state, q.Step), s.prior(t, m, s.random(i), q), q)
		}
	}
	q := s.query(inferStep, false)
	ev := s.random(0)
	if a, b := s.prior(t, s.fresh(t), ev, q), s.prior(t, s.fresh(t), ev, q); !same(a, b) {
		t.Fatal("two fresh models give different priors for the same query: Config.New must return models in the same state (seed them)")
	}
}

// checkInference: a query with Learn false must leave the model as it
// was, fresh or taught, and answer alike when repeated.
func (s *suite) checkInference(t testing.TB) {
	for _, taught := range []bool{false, true} {
		m := s.fresh(t)
		state := "a fresh model"
		if taught {
			s.teach(t, m, seedTeach)
			state = "a taught model"
		}
		var saved []byte
		if isSaver(m) {
			saved = s.save(t, m)
		}
		ev, q := s.random(0), s.query(inferStep, false)
		first := s.prior(t, m, ev, q)
		if !same(first, s.prior(t, m, ev, q)) {
			t.Fatalf("%s answers the same query (step %d, Learn false) differently the second time: a query without Learn must change nothing, and an answer depend on the model and the query only", state, q.Step)
		}
		// Evidence it would learn from, were these training calls.
		for i := range uint64(5) {
			s.prior(t, m, s.clusters(seedInquiry, i+1), s.query(i+1, false))
		}
		if !same(first, s.prior(t, m, ev, q)) {
			t.Errorf("after 5 queries with Learn false, %s answers a query differently: it changed without learning", state)
		}
		if saved != nil && !bytes.Equal(saved, s.save(t, m)) {
			t.Errorf("after queries with Learn false, %s's checkpoint differs: it changed without learning", state)
		}
	}
}

// checkLearning: training calls on structured evidence must change the
// model, the same way in every instance.
func (s *suite) checkLearning(t testing.TB) {
	m := s.fresh(t)
	probe, q := s.clusters(seedProbe, 1), s.query(inferStep, false)
	before := s.prior(t, m, probe, q)
	var saved []byte
	if isSaver(m) {
		saved = s.save(t, m)
	}
	s.teach(t, m, seedTeach)
	after := s.prior(t, m, probe, q)
	if same(before, after) {
		t.Errorf("after %d training calls (Warmup %d + LearnSteps %d) on three clusters, the model gives the same priors as when fresh: it did not learn (or give Config.Warmup)",
			s.steps(), s.cfg.Warmup, s.cfg.LearnSteps)
	}
	if saved != nil && bytes.Equal(saved, s.save(t, m)) {
		t.Errorf("after %d training calls the model's checkpoint is byte for byte a fresh one's: what it learned would not be saved", s.steps())
	}
	twin := s.fresh(t)
	s.teach(t, twin, seedTeach)
	if !same(after, s.prior(t, twin, probe, q)) {
		t.Errorf("two models taught the same %d calls answer the same query differently: learning must depend on the model and the calls only (seed from PriorQuery.Step)", s.steps())
	}
	if saved != nil && !bytes.Equal(s.save(t, m), s.save(t, twin)) {
		t.Errorf("two models taught the same %d calls save different checkpoints", s.steps())
	}
}

// checkCheckpoint: a checkpoint restored into a fresh instance makes it
// the saved model, to the next training call.
func (s *suite) checkCheckpoint(t testing.TB) {
	m := s.fresh(t)
	s.teach(t, m, seedTeach)
	good := s.save(t, m)
	other := s.fresh(t)
	if bytes.Equal(good, s.save(t, other)) {
		t.Fatal("a taught model's checkpoint is a fresh one's: the round trip would prove nothing (see Learning)")
	}
	if err := s.restore(t, other, good); err != nil {
		t.Fatalf("Restore of a checkpoint Save just wrote: %v", err)
	}
	if !bytes.Equal(good, s.save(t, other)) {
		t.Error("a model restored from a checkpoint saves different bytes")
	}
	ev, q := s.random(0), s.query(inferStep, false)
	if !same(s.prior(t, m, ev, q), s.prior(t, other, ev, q)) {
		t.Error("a model restored from a checkpoint answers a query differently from the model saved")
	}
	next := s.steps() + 1
	ev, q = s.clusters(seedTeach, next), s.query(next, true)
	if !same(s.prior(t, m, ev, q), s.prior(t, other, ev, q)) {
		t.Error("a model restored from a checkpoint answers the next training call differently from the model saved")
	}
	if !bytes.Equal(s.save(t, m), s.save(t, other)) {
		t.Error("after the same training call, a model restored from a checkpoint and the model saved save different bytes: the checkpoint misses some of the state learning uses")
	}
}

// checkDamaged: Restore must refuse what is not a whole checkpoint and
// leave the model as it was.
func (s *suite) checkDamaged(t testing.TB) {
	donor := s.fresh(t)
	s.teach(t, donor, seedTeach)
	good := s.save(t, donor)
	if len(good) < 2 {
		t.Fatalf("a checkpoint of %d bytes: nothing to damage", len(good))
	}
	m := s.fresh(t) // taught otherwise, so that a partial restore shows
	s.teach(t, m, seedOther)
	was := s.save(t, m)
	if bytes.Equal(was, good) {
		t.Fatal("models taught different evidence save the same checkpoint: a partial restore would not show")
	}
	ev, q := s.random(0), s.query(inferStep, false)
	answer := s.prior(t, m, ev, q)
	unchanged := func(what string) {
		t.Helper()
		if !bytes.Equal(was, s.save(t, m)) || !same(answer, s.prior(t, m, ev, q)) {
			t.Fatalf("a refused Restore of %s changed the model: it must check everything before it replaces anything", what)
		}
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0xff
	for _, c := range []struct {
		what string
		data []byte
	}{
		{"an empty input", nil},
		{"64 KiB of zero bytes", make([]byte, 64<<10)},
		{"the first half of a checkpoint", good[:len(good)/2]},
		{"a checkpoint with its last byte cut", good[:len(good)-1]},
	} {
		if err := s.restore(t, m, c.data); err == nil {
			t.Errorf("Restore of %s succeeded; want an error", c.what)
			return // the model is no longer the one to compare with
		}
		unchanged(c.what)
	}
	const what = "a checkpoint with its middle byte flipped"
	err := s.restore(t, m, flipped)
	switch {
	case err != nil:
		unchanged(what)
	case s.cfg.Checksummed:
		t.Errorf("Restore of %s succeeded; Config.Checksummed says the format has a checksum, so want an error", what)
	default:
		s.valid(t, "after Restore of "+what+", the model's prior of random evidence", s.prior(t, m, ev, q), q)
	}
}
