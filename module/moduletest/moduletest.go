// Package moduletest is the conformance suite of serket modalities. Every
// modality, built in or plugged in, runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		moduletest.Run(t, moduletest.Config{New: func() (module.Modality, error) { return mymod.New(cfg) }})
//	}
//
// It checks the Modality contract (shapes, finiteness, determinism, the
// decoder's gradient against finite differences, zero-weight rows), each
// optional capability the modality has (Learner: ascent on the decoder and
// encoder gradients and Discard; Loader; Parser; Renderer; Saver: round trip
// and refusal of damaged checkpoints), and the wire: the modality served by
// module.Run on an in-process nats-server answers encode and decode
// requests and a whole training step exactly as calling it directly does,
// and survives malformed and stale messages, counting them in its stats.
package moduletest

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/module"
)

// Config configures the suite.
type Config struct {
	// New returns a fresh modality. Two calls must return modalities with
	// identical parameters (seed your initialisation). Required.
	New func() (module.Modality, error)

	// IDs are sample ids a Loader must load; default 0 to 7.
	IDs []uint64
	// BadIDs are ids a Loader must refuse with an error (optional).
	BadIDs []uint64
	// Inputs are raw observations a Parser must accept (required for a Parser).
	Inputs []bus.Payload
	// BadInputs are raw observations a Parser must refuse.
	BadInputs []bus.Payload

	// GradTol is the tolerance of the finite-difference check, relative to
	// the gradient's norm; default 1e-2. GradStep is the step; default 0.1
	// (see testDecodeGradient for why it is large).
	GradTol, GradStep float64
	// GradCoords bounds how many coordinates of dz are checked; default 48.
	GradCoords int
	// LearnSteps is how many Learn calls the ascent checks take; default 5.
	LearnSteps int
	// Timeout bounds each wire exchange; default 10 s.
	Timeout time.Duration
}

func (c *Config) defaults() {
	if len(c.IDs) == 0 {
		c.IDs = []uint64{0, 1, 2, 3, 4, 5, 6, 7}
	}
	if c.GradTol == 0 {
		c.GradTol = 1e-2
	}
	if c.GradStep == 0 {
		c.GradStep = 0.1
	}
	if c.GradCoords == 0 {
		c.GradCoords = 48
	}
	if c.LearnSteps == 0 {
		c.LearnSteps = 5
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
}

// Run runs the whole suite as subtests of t.
func Run(t *testing.T, cfg Config) {
	t.Helper()
	if cfg.New == nil {
		t.Fatal("moduletest: Config.New is required")
	}
	cfg.defaults()
	s := &suite{cfg: cfg}
	m := s.fresh(t)
	if _, ok := module.As[module.Parser](m); ok && len(cfg.Inputs) == 0 {
		t.Fatal("moduletest: the modality is a Parser; give Config.Inputs")
	}
	if _, ok := module.As[module.Loader](m); !ok && len(cfg.Inputs) == 0 {
		t.Fatal("moduletest: the modality is neither a Loader nor a Parser; the suite has no data to test it on")
	}
	t.Run("Spec", s.testSpec)
	t.Run("Encode", s.testEncode)
	t.Run("DecodeGradient", s.testDecodeGradient)
	t.Run("ZeroWeightRows", s.testZeroWeight)
	if _, ok := module.As[module.Learner](m); ok {
		t.Run("LearnAscendsDecoder", s.testLearnDecoder)
		t.Run("LearnAscendsEncoder", s.testLearnEncoder)
		t.Run("Discard", s.testDiscard)
	}
	if _, ok := module.As[module.MultiDecoder](m); ok {
		t.Run("MultiDecoder", s.testMultiDecoder)
	}
	if _, ok := module.As[module.Scorer](m); ok {
		t.Run("Scorer", s.testScorer)
	}
	if x, _ := s.data(t, m); x != nil {
		if _, ok := x.(module.Picker); ok {
			t.Run("Picker", s.testPicker)
		}
	}
	if _, ok := module.As[module.Loader](m); ok {
		t.Run("Loader", s.testLoader)
		if _, ok := module.As[module.Recycler](m); ok {
			t.Run("Recycler", s.testRecycler)
		}
	}
	if _, ok := module.As[module.Parser](m); ok {
		t.Run("Parser", s.testParser)
	}
	if _, ok := module.As[module.Renderer](m); ok {
		t.Run("Renderer", s.testRenderer)
	}
	if _, ok := module.As[module.Saver](m); ok {
		t.Run("Checkpoint", s.testCheckpoint)
	}
	t.Run("Wire", s.testWire)
}

type suite struct {
	cfg Config
	// session is the training session the wire checks enrolled the
	// served module in (the integrator's messages carry it).
	session string
}

func (s *suite) fresh(t *testing.T) module.Modality {
	t.Helper()
	m, err := s.cfg.New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// data returns a batch for m: from its Loader if it has one, else parsed Inputs.
func (s *suite) data(t *testing.T, m module.Modality) (module.Batch, []bool) {
	t.Helper()
	if l, ok := module.As[module.Loader](m); ok {
		x, present, err := l.LoadBatch(s.cfg.IDs)
		if err != nil {
			t.Fatalf("LoadBatch(%v): %v", s.cfg.IDs, err)
		}
		return x, present
	}
	x, err := m.(module.Parser).Parse(s.cfg.Inputs)
	if err != nil {
		t.Fatalf("Parse(Inputs): %v", err)
	}
	present := make([]bool, x.Len())
	for i := range present {
		present[i] = true
	}
	return x, present
}

func (s *suite) encode(t *testing.T, m module.Modality, x module.Batch) (mu, logvar []float32) {
	t.Helper()
	d := width(m.Spec())
	mu, logvar = make([]float32, x.Len()*d), make([]float32, x.Len()*d)
	if err := m.Encode(x, mu, logvar); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return mu, logvar
}

func (s *suite) decode(t *testing.T, m module.Modality, z []float32, x module.Batch, w []float32) (ll, dz []float32) {
	t.Helper()
	ll, dz = make([]float32, x.Len()), make([]float32, len(z))
	if err := m.Decode(z, x, w, ll, dz); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return ll, dz
}

// decodeTerms decodes the latents z of x with the rows' weights ws as the
// SDK decodes a training step's terms: all in one module.DecodeTerms (one
// DecodeMany for a MultiDecoder, whose batched products may round
// otherwise than one Decode per term).
func decodeTerms(t *testing.T, m module.Modality, z []bus.Tensor, x module.Batch, ws [][]float32) (lls, dzs [][]float32) {
	t.Helper()
	var zs [][]float32
	for i := range z {
		zs = append(zs, z[i].Data)
		lls, dzs = append(lls, make([]float32, x.Len())), append(dzs, make([]float32, len(z[i].Data)))
	}
	if err := module.DecodeTerms(m, zs, x, ws, lls, dzs); err != nil {
		t.Fatalf("DecodeTerms: %v", err)
	}
	return lls, dzs
}

func randn(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func ones(n int, present []bool) []float32 {
	w := make([]float32, n)
	for i := range w {
		if present == nil || present[i] {
			w[i] = 1
		}
	}
	return w
}

func finite(t *testing.T, what string, v []float32) {
	t.Helper()
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			t.Fatalf("%s[%d] = %v", what, i, x)
		}
	}
}

func (s *suite) testSpec(t *testing.T) {
	spec := s.fresh(t).Spec()
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
}

func (s *suite) testEncode(t *testing.T) {
	m := s.fresh(t)
	x, _ := s.data(t, m)
	if x.Len() == 0 {
		t.Fatal("the test batch is empty")
	}
	mu, lv := s.encode(t, m, x)
	finite(t, "mu", mu)
	finite(t, "logvar", lv)
	mu2, lv2 := s.encode(t, m, x)
	if !slices.Equal(mu, mu2) || !slices.Equal(lv, lv2) {
		t.Fatal("Encode is not deterministic: two calls on the same batch differ")
	}
}

// testDecodeGradient checks dz = w·∂ll/∂z against central differences of
// w_i·ll_i, one row at a time (row i of dz depends on row i of z only).
// ll is float32 and large (hundreds of nats) while an untrained decoder's
// gradient is small (~0.01), so the step is large (GradStep, 0.1): the
// rounding of ll over 2h then stays well under the tolerance, and the
// truncation error of a smooth decoder is smaller still. Measured on the
// built-in modalities: 0.002 for a correct gradient, 0.034 for one 5% off.
func (s *suite) testDecodeGradient(t *testing.T) {
	m := s.fresh(t)
	x, present := s.data(t, m)
	b, d := x.Len(), width(m.Spec())
	r := rand.New(rand.NewPCG(1, 2))
	z := randn(r, b*d)
	w := make([]float32, b)
	for i := range w {
		if present[i] {
			w[i] = 0.5 + r.Float32()
		}
	}
	_, dz := s.decode(t, m, z, x, w)
	finite(t, "dz", dz)
	coords := r.Perm(len(z))
	if len(coords) > s.cfg.GradCoords {
		coords = coords[:s.cfg.GradCoords]
	}
	h := s.cfg.GradStep
	var excess, norm float64
	for _, c := range coords {
		row := c / d
		if w[row] == 0 {
			continue
		}
		old := z[c]
		z[c] = old + float32(h)
		llp, _ := s.decode(t, m, z, x, w)
		z[c] = old - float32(h)
		llm, _ := s.decode(t, m, z, x, w)
		z[c] = old
		fd := float64(w[row]) * (float64(llp[row]) - float64(llm[row])) / (2 * h)
		e := fd - float64(dz[c])
		excess += e * e
		norm += fd*fd + float64(dz[c])*float64(dz[c])
	}
	if l, ok := module.As[module.Learner](m); ok {
		l.Discard()
	}
	if norm == 0 {
		t.Fatal("dz and the finite differences are all zero: the check cannot tell anything")
	}
	if rel := math.Sqrt(excess / norm); rel > s.cfg.GradTol {
		t.Fatalf("dz disagrees with finite differences: relative error %.3g > %.3g over %d coordinates", rel, s.cfg.GradTol, len(coords))
	}
}

func (s *suite) testZeroWeight(t *testing.T) {
	m := s.fresh(t)
	x, _ := s.data(t, m)
	b, d := x.Len(), width(m.Spec())
	z := randn(rand.New(rand.NewPCG(3, 4)), b*d)
	w := ones(b, nil)
	w[0] = 0
	ll := make([]float32, b)
	dz := make([]float32, b*d)
	for i := range dz {
		dz[i], ll[i%b] = 42, 42 // must be overwritten
	}
	if err := m.Decode(z, x, w, ll, dz); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if ll[0] != 0 {
		t.Errorf("ll of a zero-weight row is %v, want 0", ll[0])
	}
	for k := 0; k < d; k++ {
		if dz[k] != 0 {
			t.Fatalf("dz of a zero-weight row has %v at %d, want 0", dz[k], k)
		}
	}
	for i := 1; i < b; i++ {
		if ll[i] == 42 {
			t.Fatalf("Decode left ll[%d] unwritten", i)
		}
	}
	if l, ok := module.As[module.Learner](m); ok {
		l.Discard()
	}
}

// testScorer: LogLik must give the log-likelihoods Decode gives with unit
// weights, and leave no gradient behind.
func (s *suite) testScorer(t *testing.T) {
	m := s.fresh(t)
	x, _ := s.data(t, m)
	b, d := x.Len(), width(m.Spec())
	z := randn(rand.New(rand.NewPCG(5, 6)), b*d)
	want, _ := s.decode(t, m, z, x, ones(b, nil))
	if l, ok := module.As[module.Learner](m); ok {
		l.Discard()
	}
	got := make([]float32, b)
	if err := m.(module.Scorer).LogLik(z, x, got); err != nil {
		t.Fatalf("LogLik: %v", err)
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-4*math.Max(1, math.Abs(float64(want[i]))) {
			t.Fatalf("LogLik row %d = %v, Decode's ll = %v", i, got[i], want[i])
		}
	}
}

// testPicker: Pick must give the rows asked for, in order, with repeats:
// the posterior of a picked batch is the picked rows of the posterior.
func (s *suite) testPicker(t *testing.T) {
	m := s.fresh(t)
	x, _ := s.data(t, m)
	b, d := x.Len(), width(m.Spec())
	if b < 2 {
		t.Skip("needs a batch of two rows or more")
	}
	rows := []int{b - 1, 0, b - 1}
	y := x.(module.Picker).Pick(rows)
	if y.Len() != len(rows) {
		t.Fatalf("Pick(%v) has %d rows", rows, y.Len())
	}
	mu, _ := s.encode(t, m, x)
	pmu, _ := s.encode(t, m, y)
	for i, r := range rows {
		for k := 0; k < d; k++ {
			if math.Abs(float64(pmu[i*d+k]-mu[r*d+k])) > 1e-5 {
				t.Fatalf("row %d of Pick(%v) encodes to %v at %d, row %d of the batch to %v", i, rows, pmu[i*d+k], k, r, mu[r*d+k])
			}
		}
	}
}

// testLearnDecoder: Learn with the decoder gradients and zero expert
// gradients must raise the log-likelihood of the batch at fixed z.
func (s *suite) testLearnDecoder(t *testing.T) {
	m := s.fresh(t)
	l := m.(module.Learner)
	x, present := s.data(t, m)
	b, d := x.Len(), width(m.Spec())
	z := randn(rand.New(rand.NewPCG(5, 6)), b*d)
	w := ones(b, present)
	sum := func(ll []float32) (f float64) {
		for _, v := range ll {
			f += float64(v)
		}
		return f
	}
	before := 0.0
	zero := make([]float32, b*d)
	for i := 0; i < s.cfg.LearnSteps; i++ {
		s.encode(t, m, x)
		ll, _ := s.decode(t, m, z, x, w)
		if i == 0 {
			before = sum(ll)
		}
		if err := l.Learn(zero, zero); err != nil {
			t.Fatalf("Learn: %v", err)
		}
	}
	l.Discard()
	ll, _ := s.decode(t, m, z, x, w)
	l.Discard()
	if after := sum(ll); !(after > before) {
		t.Fatalf("%d Learn steps on the decoder gradient did not raise Σ log p(x|z): %v → %v (a sign error?)", s.cfg.LearnSteps, before, after)
	}
}

// testLearnEncoder: one Learn with dmu = g and dlogvar = h (and no decoder
// gradient) must move mu along g and logvar along h: <Δmu, g> > 0 and
// <Δlogvar, h> > 0, whatever the optimizer, to first order.
func (s *suite) testLearnEncoder(t *testing.T) {
	m := s.fresh(t)
	l := m.(module.Learner)
	x, _ := s.data(t, m)
	b, d := x.Len(), width(m.Spec())
	r := rand.New(rand.NewPCG(7, 8))
	g, h := randn(r, b*d), randn(r, b*d)
	mu0, lv0 := s.encode(t, m, x)
	if err := l.Learn(g, h); err != nil {
		t.Fatalf("Learn: %v", err)
	}
	mu1, lv1 := s.encode(t, m, x)
	var dmu, dlv float64
	for i := range g {
		dmu += float64(g[i]) * float64(mu1[i]-mu0[i])
		dlv += float64(h[i]) * float64(lv1[i]-lv0[i])
	}
	if !(dmu > 0) {
		t.Errorf("Learn(dmu=g, …) moved mu against g: <Δmu, g> = %v (a sign error in the encoder's backward pass?)", dmu)
	}
	if !(dlv > 0) {
		t.Errorf("Learn(…, dlogvar=h) moved logvar against h: <Δlogvar, h> = %v (a sign error in the encoder's backward pass?)", dlv)
	}
}

// testDiscard: gradients accumulated by Decode and then discarded must not
// move a fresh modality's parameters.
func (s *suite) testDiscard(t *testing.T) {
	m := s.fresh(t)
	l := m.(module.Learner)
	x, present := s.data(t, m)
	b, d := x.Len(), width(m.Spec())
	z := randn(rand.New(rand.NewPCG(9, 10)), b*d)
	mu0, _ := s.encode(t, m, x)
	ll0, _ := s.decode(t, m, z, x, ones(b, present))
	l.Discard()
	zero := make([]float32, b*d)
	s.encode(t, m, x)
	if err := l.Learn(zero, zero); err != nil {
		t.Fatalf("Learn: %v", err)
	}
	mu1, _ := s.encode(t, m, x)
	ll1, _ := s.decode(t, m, z, x, ones(b, present))
	l.Discard()
	if !slices.Equal(mu0, mu1) || !slices.Equal(ll0, ll1) {
		t.Fatal("after Discard, a Learn with zero gradients still changed the model: Discard did not clear the decoder gradients")
	}
}

func (s *suite) testLoader(t *testing.T) {
	m := s.fresh(t)
	l := m.(module.Loader)
	x, present, err := l.LoadBatch(s.cfg.IDs)
	if err != nil {
		t.Fatal(err)
	}
	if x.Len() != len(s.cfg.IDs) || len(present) != len(s.cfg.IDs) {
		t.Fatalf("LoadBatch of %d ids gave %d rows and %d flags", len(s.cfg.IDs), x.Len(), len(present))
	}
	x2, _, _ := l.LoadBatch(s.cfg.IDs)
	mu1, _ := s.encode(t, m, x)
	mu2, _ := s.encode(t, m, x2)
	if !slices.Equal(mu1, mu2) {
		t.Fatal("LoadBatch is not deterministic")
	}
	for _, id := range s.cfg.BadIDs {
		if _, _, err := l.LoadBatch([]uint64{id}); err == nil {
			t.Errorf("LoadBatch(%d) succeeded; want an error", id)
		}
	}
}

func (s *suite) testParser(t *testing.T) {
	m := s.fresh(t)
	p := m.(module.Parser)
	x, err := p.Parse(s.cfg.Inputs)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if x.Len() != len(s.cfg.Inputs) {
		t.Fatalf("Parse of %d inputs gave %d rows", len(s.cfg.Inputs), x.Len())
	}
	mu, _ := s.encode(t, m, x)
	finite(t, "mu", mu)
	for i, in := range s.cfg.BadInputs {
		if _, err := p.Parse([]bus.Payload{in}); err == nil {
			t.Errorf("Parse(BadInputs[%d], %s) succeeded; want an error", i, in.Type)
		} else if err.Error() == "" {
			t.Errorf("Parse(BadInputs[%d]) gave an empty error", i)
		}
	}
}

func (s *suite) testRenderer(t *testing.T) {
	m := s.fresh(t)
	const n = 3
	z := randn(rand.New(rand.NewPCG(11, 12)), n*width(m.Spec()))
	out, err := m.(module.Renderer).Render(z, n)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if len(out) != n {
		t.Fatalf("Render of %d latents gave %d outputs", n, len(out))
	}
	for i, o := range out {
		if o.Type == "" || len(o.Data) == 0 {
			t.Errorf("output %d: type %q, %d bytes", i, o.Type, len(o.Data))
		}
	}
}

func (s *suite) testCheckpoint(t *testing.T) {
	// Train a little so that the checkpoint differs from a fresh start.
	m := s.fresh(t)
	x, present := s.data(t, m)
	b, d := x.Len(), width(m.Spec())
	if l, ok := module.As[module.Learner](m); ok {
		g := randn(rand.New(rand.NewPCG(13, 14)), b*d)
		s.encode(t, m, x)
		s.decode(t, m, g, x, ones(b, present))
		if err := l.Learn(g, g); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := m.(module.Saver).Save(&buf); err != nil {
		t.Fatalf("Save: %v", err)
	}
	good := buf.Bytes()
	want, _ := s.encode(t, m, x)

	// A batch is passed back only to the modality that made it (a
	// foreign module's lives in its child): other loads its own.
	other := s.fresh(t)
	xo, _ := s.data(t, other)
	before, _ := s.encode(t, other, xo)
	if l, ok := module.As[module.Learner](m); ok {
		_ = l
		if slices.Equal(before, want) {
			t.Fatal("a trained modality encodes like a fresh one; the checkpoint check would prove nothing")
		}
	}
	// Damaged checkpoints are refused and leave the modality unchanged.
	damaged := map[string][]byte{"empty": nil, "half": good[:len(good)/2], "last byte cut": good[:len(good)-1]}
	flip := bytes.Clone(good)
	flip[len(flip)/2] ^= 0x40
	damaged["one bit flipped"] = flip
	for name, data := range damaged {
		if err := other.(module.Saver).Restore(bytes.NewReader(data)); err == nil {
			t.Errorf("Restore of a %s checkpoint succeeded; want an error", name)
		}
		if got, _ := s.encode(t, other, xo); !slices.Equal(got, before) {
			t.Fatalf("a failed Restore (%s) changed the modality", name)
		}
	}
	if err := other.(module.Saver).Restore(bytes.NewReader(good)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got, _ := s.encode(t, other, xo); !slices.Equal(got, want) {
		t.Fatal("after Save and Restore the modality encodes differently")
	}
	// Training must continue identically: the optimizer state came along.
	if l, ok := module.As[module.Learner](m); ok {
		g := randn(rand.New(rand.NewPCG(15, 16)), b*d)
		for i, mm := range []module.Modality{m, other} {
			s.encode(t, mm, []module.Batch{x, xo}[i])
			if err := mm.(module.Learner).Learn(g, g); err != nil {
				t.Fatal(err)
			}
		}
		_ = l
		a, _ := s.encode(t, m, x)
		c, _ := s.encode(t, other, xo)
		if !slices.Equal(a, c) {
			t.Fatal("after Restore, one more Learn step differs from the original's: the optimizer state was not saved")
		}
	}
}

// testWire serves a fresh modality with module.Run on an in-process server
// and compares what comes over the bus with a reference instance called
// directly.
func (s *suite) testWire(t *testing.T) {
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := bus.Connect(bus.ConnConfig{Server: srv, Name: "moduletest"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)

	served, ref := s.fresh(t), s.fresh(t)
	spec := ref.Spec()
	name := spec.Name
	subj, _ := bus.NewSubjects("conformance")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan micro.Service, 1)
	done := make(chan error, 1)
	go func() {
		done <- module.Run(ctx, served, module.Options{Pipeline: "conformance", Conn: nc, Train: true, Checkpoint: filepath.Join(t.TempDir(), name+".ckpt"),
			Ready: func(svc micro.Service) { ready <- svc }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("module.Run: %v", err)
		}
	})
	var svc micro.Service
	select {
	case svc = <-ready:
	case err := <-done:
		t.Fatalf("module.Run returned before serving: %v", err)
	case <-time.After(s.cfg.Timeout):
		t.Fatal("module.Run did not start serving")
	}
	info := svc.Info()
	if info.Name != bus.ServiceName(name) || info.Metadata[bus.MetaLatent] == "" || info.Metadata[bus.MetaLikelihood] != spec.Likelihood || info.Metadata[bus.MetaPipeline] != "conformance" {
		t.Fatalf("service info %+v lacks the name or metadata", info)
	}
	if !slices.Contains(strings.Split(info.Metadata[bus.MetaTraining], ","), bus.TrainsRowWeights) {
		t.Fatalf("service info's %s is %q: a module that honours row weights (the training step below checks it) says so",
			bus.MetaTraining, info.Metadata[bus.MetaTraining])
	}
	if got := info.Metadata[bus.MetaPrivate]; got != strconv.Itoa(spec.Private) {
		t.Fatalf("service info's %s is %q, want the modality's private latent, %d", bus.MetaPrivate, got, spec.Private)
	}

	var request requester = func(subject string, in bus.Message, out bus.Message, e bus.Expect) error {
		t.Helper()
		in.(interface{ SetSender(string) }).SetSender("moduletest")
		b, err := bus.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := nc.Request(subject, b, s.cfg.Timeout)
		if err != nil {
			t.Fatalf("request %s: %v", subject, err)
		}
		if desc := msg.Header.Get(micro.ErrorHeader); desc != "" {
			return &serviceError{desc}
		}
		return bus.UnmarshalFrom(subject, msg.Data, out, e)
	}

	if spec.Private > 0 {
		// What the SDK decodes, it decodes with private draws of its own:
		// the exact comparisons below do not hold, these do.
		t.Run("Private", func(t *testing.T) { s.wirePrivate(t, nc, subj, ref, request) })
		t.Run("BadMessages", func(t *testing.T) { s.wireBad(t, nc, subj, ref) })
		return
	}
	if _, ok := module.As[module.Parser](ref); ok {
		t.Run("Encode", func(t *testing.T) { s.wireEncode(t, ref, request, subj) })
	}
	if _, ok := module.As[module.Renderer](ref); ok {
		t.Run("Decode", func(t *testing.T) { s.wireDecode(t, ref, request, subj) })
	}
	if _, ok := module.As[module.Loader](ref); ok {
		t.Run("EvaluationItems", func(t *testing.T) { s.wireItems(t, ref, request, subj) })
	}
	if _, ok := module.As[module.Featurer](ref); ok {
		t.Run("Features", func(t *testing.T) { s.wireFeatures(t, ref, request, subj) })
	}
	_, learner := module.As[module.Learner](ref)
	_, loader := module.As[module.Loader](ref)
	if learner && loader {
		t.Run("TrainingStep", func(t *testing.T) { s.wireStep(t, nc, subj, ref) })
	}
	t.Run("BadMessages", func(t *testing.T) { s.wireBad(t, nc, subj, ref) })
}

// requester sends a request message and decodes the reply (see testWire).
type requester func(subject string, in, out bus.Message, e bus.Expect) error

// wireItems checks evaluation's requests about the module's own items:
// encoding them by sample id, and scoring them under two latents each,
// against calling the modality directly.
func (s *suite) wireItems(t *testing.T, ref module.Modality, request requester, subj bus.Subjects) {
	name, d := ref.Spec().Name, ref.Spec().Latent
	ids := s.cfg.IDs
	x, present, err := ref.(module.Loader).LoadBatch(ids)
	if err != nil {
		t.Fatal(err)
	}
	var enc bus.EncodeReply
	if err := request(subj.Encode(name), &bus.EncodeRequest{IDs: ids}, &enc, bus.Expect{Latent: d, Batch: len(ids)}); err != nil {
		t.Fatal(err)
	}
	mu, lv := s.encode(t, ref, x)
	if !slices.Equal(enc.Mu.Data, mu) || !slices.Equal(enc.LogVar.Data, lv) || !slices.Equal(enc.Present, present) {
		t.Fatal("encoding items by sample id over the wire differs from LoadBatch and Encode")
	}
	p, ok := x.(module.Picker)
	if !ok {
		return // a score of one latent per item needs no Picker, but the suite compares two
	}
	z := randn(rand.New(rand.NewPCG(21, 22)), 2*len(ids)*d)
	var sc bus.ScoreReply
	if err := request(subj.Score(name), &bus.ScoreRequest{IDs: ids, Z: bus.Matrix(2*len(ids), d, z)}, &sc, bus.Expect{Batch: 2 * len(ids)}); err != nil {
		t.Fatal(err)
	}
	rows := make([]int, 2*len(ids))
	for i := range rows {
		rows[i] = i / 2
	}
	want := make([]float32, len(rows))
	if sco, ok := module.As[module.Scorer](ref); ok {
		if err := sco.LogLik(z, p.Pick(rows), want); err != nil {
			t.Fatal(err)
		}
	} else {
		want, _ = s.decode(t, ref, z, p.Pick(rows), ones(len(rows), nil))
		if l, ok := module.As[module.Learner](ref); ok {
			l.Discard()
		}
	}
	for i := range want {
		if !present[i/2] {
			want[i] = 0
		}
	}
	if !slices.Equal(sc.LL.Data, want) || !slices.Equal(sc.Present, present) {
		t.Fatal("scoring items under latents over the wire differs from calling the modality directly")
	}
}

// wireFeatures checks the features of the module's items and of its
// decoder's means over the wire against calling the Featurer directly, and
// that they are finite vectors of FeatureLen.
func (s *suite) wireFeatures(t *testing.T, ref module.Modality, request requester, subj bus.Subjects) {
	name, d := ref.Spec().Name, ref.Spec().Latent
	f := ref.(module.Featurer)
	fl := f.FeatureLen()
	if fl < 1 {
		t.Fatalf("FeatureLen %d", fl)
	}
	z := randn(rand.New(rand.NewPCG(23, 24)), 3*d)
	want := make([]float32, 3*fl)
	if err := f.Means(z, 3, want); err != nil {
		t.Fatal(err)
	}
	finite(t, "means", want)
	var ids []uint64
	if ld, ok := module.As[module.Loader](ref); ok {
		ids = s.cfg.IDs
		x, _, err := ld.LoadBatch(ids)
		if err != nil {
			t.Fatal(err)
		}
		items := make([]float32, len(ids)*fl)
		if err := f.Features(x, items); err != nil {
			t.Fatal(err)
		}
		finite(t, "features", items)
		want = append(items, want...)
	}
	var rep bus.FeatureReply
	if err := request(subj.Features(name), &bus.FeatureRequest{IDs: ids, Z: bus.Matrix(3, d, z)}, &rep, bus.Expect{Batch: len(ids) + 3}); err != nil {
		t.Fatal(err)
	}
	if rep.X.Cols() != fl || !slices.Equal(rep.X.Data, want) {
		t.Fatal("features over the wire differ from calling Features and Means directly")
	}
}

// rowWeights are b row weights in [0, 1], a zero among them.
func rowWeights(b int) []float32 {
	w := make([]float32, b)
	for i := range w {
		w[i] = [...]float32{0.5, 0, 1, 0.25}[i%4]
	}
	return w
}

type serviceError struct{ desc string }

func (e *serviceError) Error() string { return "service error: " + e.desc }

// wireStep runs two training steps over the bus, playing the integrator, and
// the same steps on ref directly; the messages must match exactly.
func (s *suite) wireStep(t *testing.T, nc *nats.Conn, subj bus.Subjects, ref module.Modality) {
	name, d := ref.Spec().Name, ref.Spec().Latent
	ids := s.cfg.IDs
	b := len(ids)
	x, present, err := ref.(module.Loader).LoadBatch(ids)
	if err != nil {
		t.Fatal(err)
	}
	posts := subscribe(t, nc, subj.Post(name))
	zgrads := subscribe(t, nc, subj.ZGrad(name))
	plan := []bus.Term{{Subset: []string{name}, Targets: []string{name}}, {Subset: []string{"someone-else"}, Targets: []string{name}}}
	r := rand.New(rand.NewPCG(19, 20))
	run := bus.NewToken()
	s.session = bus.NewToken()
	if st := s.control(t, nc, subj, name, bus.Control{Op: bus.OpEnrol, ID: run, Adopt: true}); st.Err != "" || st.ID != run || st.Instance == "" {
		t.Fatalf("enrolling the module in a training run: it answered %+v; want the run, its instance and no error", st)
	}
	// A step of no session is refused: the first posterior must be of
	// the session's step 1, not of this one.
	publish(t, nc, subj.Step(), &bus.StepBegin{Step: 99, Train: true, IDs: ids, Plan: plan})
	h := bus.Header{Run: s.session}
	var ref1 []byte // ref as the run's checkpoint of step 1 holds it
	for step := uint64(1); step <= 2; step++ {
		publishAs(t, nc, subj.Step(), &bus.StepBegin{Header: h, Step: step, Train: true, IDs: ids, Plan: plan, Lambda: map[string]float32{name: 2}}, "integrator")
		var post bus.Posterior
		s.receive(t, posts, &post, bus.Expect{Latent: d, Batch: b})
		mu, lv := s.encode(t, ref, x)
		if post.Step != step || post.Run != s.session || !slices.Equal(post.Mu.Data, mu) || !slices.Equal(post.LogVar.Data, lv) || !slices.Equal(post.Present, present) {
			t.Fatalf("step %d: the posterior sent over the bus (step %d, session %q) differs from calling Encode directly", step, post.Step, post.Run)
		}
		z := []bus.Tensor{bus.Matrix(b, d, randn(r, b*d)), bus.Matrix(b, d, randn(r, b*d))}
		lat := &bus.Latent{Header: h, Step: step, Members: []string{name}, Z: z}
		if step == 2 { // the second term's rows weighed, as a mixture's strata are
			lat.W = []bus.Tensor{{}, bus.Vector(rowWeights(b))}
		}
		publishAs(t, nc, subj.Latent(), lat, "integrator")
		var zg bus.ZGrad
		s.receive(t, zgrads, &zg, bus.Expect{Latent: d, Batch: b, Terms: 2})
		if zg.Step != step || len(zg.Terms) != 2 {
			t.Fatalf("step %d: ZGrad for step %d with %d terms, want 2 terms", step, zg.Step, len(zg.Terms))
		}
		var ws [][]float32
		for i := range z {
			w := ones(b, present)
			for k := range w {
				w[k] *= 2 // the lambda of the StepBegin
				if len(lat.W) > 0 && !lat.W[i].Empty() {
					w[k] *= lat.W[i].Data[k]
				}
			}
			ws = append(ws, w)
		}
		lls, dzs := decodeTerms(t, ref, z, x, ws)
		for i, tg := range zg.Terms {
			if tg.Term != i || !slices.Equal(tg.LogLik.Data, lls[i]) || !slices.Equal(tg.DZ.Data, dzs[i]) {
				t.Fatalf("step %d term %d: the decoder result sent over the bus differs from decoding directly (module.DecodeTerms)", step, i)
			}
		}
		dmu, dlv := randn(r, b*d), randn(r, b*d)
		publishAs(t, nc, subj.EGrad(name), &bus.ExpertGrad{Header: h, Step: step, DMu: bus.Matrix(b, d, dmu), DLogVar: bus.Matrix(b, d, dlv)}, "integrator")
		if err := ref.(module.Learner).Learn(dmu, dlv); err != nil {
			t.Fatal(err)
		}
		if step == 1 {
			ref1 = s.checkpointOf(t, ref)
			s.saveOverTheWire(t, nc, subj, name, run, 1)
		}
	}
	// The second step's posterior already proved that the first step's
	// Learn happened identically; an evaluation step (Train false) proves
	// the second's, is scored like a training step, and learns nothing.
	publishAs(t, nc, subj.Step(), &bus.StepBegin{Header: h, Step: 3, Train: false, IDs: ids, Plan: plan}, "integrator")
	var post bus.Posterior
	s.receive(t, posts, &post, bus.Expect{Latent: d, Batch: b})
	mu, _ := s.encode(t, ref, x)
	if !slices.Equal(post.Mu.Data, mu) {
		t.Fatal("step 3: the posterior differs from the reference's after two identical learning steps")
	}
	z := []bus.Tensor{bus.Matrix(b, d, randn(r, b*d)), bus.Matrix(b, d, randn(r, b*d))}
	publishAs(t, nc, subj.Latent(), &bus.Latent{Header: h, Step: 3, Members: []string{name}, Z: z}, "integrator")
	var zg bus.ZGrad
	s.receive(t, zgrads, &zg, bus.Expect{Latent: d, Batch: b, Terms: 2})
	lls, _ := decodeTerms(t, ref, z, x, [][]float32{ones(b, present), ones(b, present)})
	ref.(module.Learner).Discard()
	if zg.Step != 3 || len(zg.Terms) != 2 || !slices.Equal(zg.Terms[0].LogLik.Data, lls[0]) || !slices.Equal(zg.Terms[1].LogLik.Data, lls[1]) {
		t.Fatal("step 3 (evaluation): the log-likelihoods sent differ from decoding directly (module.DecodeTerms)")
	}
	publishAs(t, nc, subj.Step(), &bus.StepBegin{Header: h, Step: 4, Train: true, IDs: ids, Plan: plan}, "integrator")
	s.receive(t, posts, &post, bus.Expect{Latent: d, Batch: b})
	if !slices.Equal(post.Mu.Data, mu) {
		t.Fatal("step 4: the model changed during an evaluation step")
	}
	// Leave the step: a latent without this module abandons it.
	publishAs(t, nc, subj.Latent(), &bus.Latent{Header: h, Step: 4, Members: []string{"someone-else"}, Z: []bus.Tensor{bus.Matrix(b, d, make([]float32, b*d)), bus.Matrix(b, d, make([]float32, b*d))}}, "integrator")
	if ref1 != nil {
		s.restoreOverTheWire(t, nc, subj, ref, ref1, run, posts)
	}
}

// checkpointOf is what ref saves, or nil if it cannot save.
func (s *suite) checkpointOf(t *testing.T, ref module.Modality) []byte {
	t.Helper()
	sv, ok := module.As[module.Saver](ref)
	if !ok {
		return nil
	}
	var buf bytes.Buffer
	if err := sv.Save(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// saveOverTheWire asks the module, as its run's integrator, to save its
// checkpoint of the step; one that can save must.
func (s *suite) saveOverTheWire(t *testing.T, nc *nats.Conn, subj bus.Subjects, name, run string, step uint64) {
	t.Helper()
	st := s.control(t, nc, subj, name, bus.Control{Op: bus.OpSave, ID: run, Step: step})
	_, saver := module.As[module.Saver](s.fresh(t))
	switch {
	case saver && (st.Err != "" || st.ID != run || st.Step != step || !st.Keeps):
		t.Fatalf("saving the run's checkpoint of step %d over the wire: %+v", step, st)
	case !saver && (st.Err == "" || st.Keeps):
		t.Fatalf("a module that cannot save said it saved: %+v", st)
	}
}

// restoreOverTheWire rolls the module back to the run's checkpoint of step
// 1 over the wire: its next posterior must be that of ref as it was after
// step 1 (saved as ref1).
func (s *suite) restoreOverTheWire(t *testing.T, nc *nats.Conn, subj bus.Subjects, ref module.Modality, ref1 []byte, run string, posts chan *nats.Msg) {
	t.Helper()
	name, d := ref.Spec().Name, ref.Spec().Latent
	if st := s.control(t, nc, subj, name, bus.Control{Op: bus.OpRestore, ID: run, Step: 1}); st.Err != "" || st.Step != 1 {
		t.Fatalf("restoring the run's checkpoint of step 1 over the wire: %+v", st)
	}
	back := s.fresh(t)
	if err := back.(module.Saver).Restore(bytes.NewReader(ref1)); err != nil {
		t.Fatal(err)
	}
	x, _, err := back.(module.Loader).LoadBatch(s.cfg.IDs)
	if err != nil {
		t.Fatal(err)
	}
	mu, _ := s.encode(t, back, x)
	h := bus.Header{Run: s.session}
	publishAs(t, nc, subj.Step(), &bus.StepBegin{Header: h, Step: 5, Train: false, IDs: s.cfg.IDs, Plan: []bus.Term{{Subset: []string{name}}}}, "integrator")
	var post bus.Posterior
	s.receive(t, posts, &post, bus.Expect{Latent: d, Batch: len(s.cfg.IDs)})
	if post.Step != 5 || !slices.Equal(post.Mu.Data, mu) {
		t.Fatal("after restoring the checkpoint of step 1 the module does not encode as it did after step 1")
	}
	publishAs(t, nc, subj.Latent(), &bus.Latent{Header: h, Step: 5, Members: []string{"someone-else"}, Z: []bus.Tensor{bus.Matrix(len(s.cfg.IDs), d, make([]float32, len(s.cfg.IDs)*d))}}, "integrator")
}

// control sends c to the module as its run's integrator, in the suite's
// session, and returns the answer.
func (s *suite) control(t *testing.T, nc *nats.Conn, subj bus.Subjects, name string, c bus.Control) bus.RunState {
	t.Helper()
	c.Run = s.session
	c.SetSender("integrator")
	b, err := bus.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := nc.Request(subj.Control(name), b, s.cfg.Timeout)
	if err != nil {
		t.Fatalf("%s request: %v", c.Op, err)
	}
	var st bus.RunState
	if err := bus.Unmarshal(msg.Data, &st, bus.Expect{}); err != nil {
		t.Fatalf("%s answer: %v", c.Op, err)
	}
	return st
}

// wireBad sends malformed, wrong-version, NaN and stale messages and checks
// that they are counted in the service's stats and that the module still
// answers afterwards.
func (s *suite) wireBad(t *testing.T, nc *nats.Conn, subj bus.Subjects, ref module.Modality) {
	name, d := ref.Spec().Name, ref.Spec().Latent
	_, learner := module.As[module.Learner](ref)
	_, loader := module.As[module.Loader](ref)
	training := learner && loader
	if training {
		nc.Publish(subj.Step(), []byte("not msgpack at all"))
		nan := make([]float32, d)
		nan[0] = float32(math.NaN())
		// Marshal refuses NaN, so build the bad message by hand.
		bad := bus.ExpertGrad{Step: 1, DMu: bus.Matrix(1, d, make([]float32, d)), DLogVar: bus.Matrix(1, d, make([]float32, d))}
		bad.SetSender("moduletest")
		raw, err := bus.Marshal(&bad)
		if err != nil {
			t.Fatal(err)
		}
		nc.Publish(subj.EGrad(name), patchFloat(raw, nan[0]))
		// A stale gradient: a step that is not running.
		stale := bus.ExpertGrad{Header: bus.Header{Run: s.session}, Step: 999, DMu: bus.Matrix(1, d, make([]float32, d)), DLogVar: bus.Matrix(1, d, make([]float32, d))}
		stale.SetSender("integrator")
		raw, _ = bus.Marshal(&stale)
		nc.Publish(subj.EGrad(name), raw)
	}
	// A request with a wrong version gets an error reply, counted by micro.
	msg, err := nc.Request(subj.Decode(name), wrongVersion(t, d), s.cfg.Timeout)
	if err != nil {
		t.Fatalf("decode request with a wrong version: %v", err)
	}
	if msg.Header.Get(micro.ErrorHeader) == "" {
		t.Fatal("a decode request with a wrong wire version got no error reply")
	} else if !bytes.Contains([]byte(msg.Header.Get(micro.ErrorHeader)), []byte("version")) {
		t.Errorf("error reply %q does not say the version is wrong", msg.Header.Get(micro.ErrorHeader))
	}

	// Stats show the rejections; poll until the handlers have run.
	deadline := time.Now().Add(s.cfg.Timeout)
	for {
		st := stats(t, nc, bus.ServiceName(name))
		ok := st["decode"].NumErrors >= 1
		if training {
			ok = ok && data(st["train"]).Rejected >= 2 && data(st["train"]).Stale >= 1
		}
		if ok {
			if training && data(st["train"]).LastError == "" {
				t.Error("the train endpoint's stats lack the last error")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bad messages were not counted in the service's stats: %+v", st)
		}
		time.Sleep(20 * time.Millisecond) // polling another process's counters
	}
	// Still alive and correct.
	if _, ok := module.As[module.Renderer](ref); ok {
		var rep bus.DecodeReply
		in := &bus.DecodeRequest{Z: bus.Matrix(1, d, make([]float32, d))}
		in.SetSender("moduletest")
		b, _ := bus.Marshal(in)
		msg, err := nc.Request(subj.Decode(name), b, s.cfg.Timeout)
		if err != nil || bus.Unmarshal(msg.Data, &rep, bus.Expect{Batch: 1}) != nil {
			t.Fatalf("the module no longer answers after bad messages: %v", err)
		}
	}
}

type endpointData struct {
	Rejected  int    `json:"rejected"`
	Stale     int    `json:"stale"`
	LastError string `json:"last_error"`
}

func data(e *micro.EndpointStats) endpointData {
	var d endpointData
	if e != nil {
		json.Unmarshal(e.Data, &d)
	}
	return d
}

func stats(t *testing.T, nc *nats.Conn, service string) map[string]*micro.EndpointStats {
	t.Helper()
	subject, _ := micro.ControlSubject(micro.StatsVerb, service, "")
	msg, err := nc.Request(subject, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("STATS of %s: %v", service, err)
	}
	var st micro.Stats
	if err := json.Unmarshal(msg.Data, &st); err != nil {
		t.Fatal(err)
	}
	out := map[string]*micro.EndpointStats{}
	for _, e := range st.Endpoints {
		out[e.Name] = e
	}
	return out
}

func subscribe(t *testing.T, nc *nats.Conn, subject string) chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(subject, ch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

func publish(t *testing.T, nc *nats.Conn, subject string, m bus.Message) {
	t.Helper()
	publishAs(t, nc, subject, m, "moduletest")
}

// publishAs publishes m as sent by from.
func publishAs(t *testing.T, nc *nats.Conn, subject string, m bus.Message, from string) {
	t.Helper()
	m.(interface{ SetSender(string) }).SetSender(from)
	b, err := bus.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(subject, b); err != nil {
		t.Fatal(err)
	}
}

func (s *suite) receive(t *testing.T, ch chan *nats.Msg, m bus.Message, e bus.Expect) {
	t.Helper()
	select {
	case msg := <-ch:
		if err := bus.UnmarshalFrom(msg.Subject, msg.Data, m, e); err != nil {
			t.Fatal(err)
		}
	case <-time.After(s.cfg.Timeout):
		t.Fatalf("no %s arrived within %v", m.MessageType(), s.cfg.Timeout)
	}
}

// patchFloat replaces the first float32 0.0 of a tensor's data in an encoded
// message with v (the message's tensors are all zeros).
func patchFloat(raw []byte, v float32) []byte {
	out := bytes.Clone(raw)
	bits := math.Float32bits(v)
	// find the bin header of the first tensor: 0xc4 <len> then zeros
	for i := 0; i+6 <= len(out); i++ {
		if out[i] == 0xc4 && out[i+2] == 0 && out[i+3] == 0 && out[i+4] == 0 && out[i+5] == 0 {
			out[i+2], out[i+3], out[i+4], out[i+5] = byte(bits), byte(bits>>8), byte(bits>>16), byte(bits>>24)
			return out
		}
	}
	return out
}

// wrongVersion is a DecodeRequest whose header says wire version 127.
func wrongVersion(t *testing.T, d int) []byte {
	t.Helper()
	in := &bus.DecodeRequest{Z: bus.Matrix(1, d, make([]float32, d))}
	in.SetSender("moduletest")
	b, err := bus.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	// "v" is encoded as fixstr 0xa1 'v' followed by the positive fixint
	// of the version.
	i := bytes.Index(b, []byte{0xa1, 'v', bus.WireVersion})
	if i < 0 {
		t.Fatal("cannot find the version field in the encoding")
	}
	out := bytes.Clone(b)
	out[i+2] = 0x7f // version 127
	return out
}

// width is a row of the modality's own latent: the shared D and its
// private P.
func width(spec module.Spec) int { return spec.Latent + spec.Private }

// shared is the shared columns of whole (rows of D + P).
func shared(whole []float32, spec module.Spec) []float32 {
	w, d := width(spec), spec.Latent
	out := make([]float32, 0, len(whole)/w*d)
	for r := 0; r < len(whole); r += w {
		out = append(out, whole[r:r+d]...)
	}
	return out
}

// wirePrivate checks a modality with a private latent over the wire: the
// posterior the module shows (encoded on request and in a training step)
// is the shared part of its Encode, a latent of D decodes (the module
// drawing the private part), and a training step answers both of its
// terms with finite gradients of D and learns.
func (s *suite) wirePrivate(t *testing.T, nc *nats.Conn, subj bus.Subjects, ref module.Modality, request requester) {
	spec := ref.Spec()
	name, d := spec.Name, spec.Latent
	x, present := s.data(t, ref)
	b := x.Len()
	mu, lv := s.encode(t, ref, x)
	var enc bus.EncodeReply
	in := &bus.EncodeRequest{Observations: s.cfg.Inputs}
	if _, ok := module.As[module.Loader](ref); ok {
		in = &bus.EncodeRequest{IDs: s.cfg.IDs}
	}
	if err := request(subj.Encode(name), in, &enc, bus.Expect{Latent: d, Batch: b}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(enc.Mu.Data, shared(mu, spec)) || !slices.Equal(enc.LogVar.Data, shared(lv, spec)) {
		t.Fatal("the encode endpoint's posterior is not the shared part of Encode's")
	}
	if _, ok := module.As[module.Renderer](ref); ok {
		var rep bus.DecodeReply
		z := randn(rand.New(rand.NewPCG(17, 18)), 2*d)
		if err := request(subj.Decode(name), &bus.DecodeRequest{Z: bus.Matrix(2, d, z)}, &rep, bus.Expect{Batch: 2}); err != nil || len(rep.Outputs) != 2 {
			t.Fatalf("decoding two shared latents: %v, %d outputs", err, len(rep.Outputs))
		}
	}
	_, learner := module.As[module.Learner](ref)
	_, loader := module.As[module.Loader](ref)
	if !learner || !loader {
		return
	}
	posts, zgrads := subscribe(t, nc, subj.Post(name)), subscribe(t, nc, subj.ZGrad(name))
	plan := []bus.Term{{Subset: []string{name}, Targets: []string{name}}, {Subset: []string{"someone-else"}, Targets: []string{name}}}
	s.session = bus.NewToken()
	if st := s.control(t, nc, subj, name, bus.Control{Op: bus.OpEnrol, ID: bus.NewToken(), Adopt: true}); st.Err != "" {
		t.Fatalf("enrolling the module: %+v", st)
	}
	h := bus.Header{Run: s.session}
	r := rand.New(rand.NewPCG(19, 20))
	var first []float32
	for step := uint64(1); step <= 2; step++ {
		publishAs(t, nc, subj.Step(), &bus.StepBegin{Header: h, Step: step, Train: true, IDs: s.cfg.IDs, Plan: plan, Beta: 1}, "integrator")
		var post bus.Posterior
		s.receive(t, posts, &post, bus.Expect{Latent: d, Batch: b})
		if step == 1 && (!slices.Equal(post.Mu.Data, shared(mu, spec)) || !slices.Equal(post.Present, present)) {
			t.Fatal("the training step's posterior is not the shared part of Encode's")
		}
		if step == 2 && slices.Equal(post.Mu.Data, first) {
			t.Fatal("the module's posterior did not change after a training step")
		}
		first = slices.Clone(post.Mu.Data)
		z := []bus.Tensor{bus.Matrix(b, d, randn(r, b*d)), bus.Matrix(b, d, randn(r, b*d))}
		publishAs(t, nc, subj.Latent(), &bus.Latent{Header: h, Step: step, Members: []string{name}, Z: z}, "integrator")
		var zg bus.ZGrad
		s.receive(t, zgrads, &zg, bus.Expect{Latent: d, Batch: b, Terms: 2})
		for _, tg := range zg.Terms {
			finite(t, "dz", tg.DZ.Data)
			finite(t, "loglik", tg.LogLik.Data)
		}
		publishAs(t, nc, subj.EGrad(name), &bus.ExpertGrad{Header: h, Step: step, DMu: bus.Matrix(b, d, randn(r, b*d)), DLogVar: bus.Matrix(b, d, randn(r, b*d))}, "integrator")
	}
}

// wireEncode checks the encode endpoint on raw inputs against calling
// Parse and Encode directly, and that it refuses a bad input.
func (s *suite) wireEncode(t *testing.T, ref module.Modality, request requester, subj bus.Subjects) {
	name, d := ref.Spec().Name, ref.Spec().Latent
	var rep bus.EncodeReply
	if err := request(subj.Encode(name), &bus.EncodeRequest{Observations: s.cfg.Inputs}, &rep, bus.Expect{Latent: d, Batch: len(s.cfg.Inputs)}); err != nil {
		t.Fatal(err)
	}
	x, err := ref.(module.Parser).Parse(s.cfg.Inputs)
	if err != nil {
		t.Fatal(err)
	}
	mu, lv := s.encode(t, ref, x)
	if !slices.Equal(rep.Mu.Data, mu) || !slices.Equal(rep.LogVar.Data, lv) {
		t.Fatal("the encode endpoint's posterior differs from calling Encode directly")
	}
	if rep.Sender != name {
		t.Errorf("reply sender %q, want %q", rep.Sender, name)
	}
	if len(s.cfg.BadInputs) > 0 {
		err := request(subj.Encode(name), &bus.EncodeRequest{Observations: s.cfg.BadInputs[:1]}, &rep, bus.Expect{})
		if err == nil {
			t.Fatal("encoding a bad input over the wire succeeded; want an error reply")
		}
	}
}

// wireDecode checks the decode endpoint against calling Render directly.
func (s *suite) wireDecode(t *testing.T, ref module.Modality, request requester, subj bus.Subjects) {
	name, d := ref.Spec().Name, ref.Spec().Latent
	z := randn(rand.New(rand.NewPCG(17, 18)), 2*d)
	var rep bus.DecodeReply
	if err := request(subj.Decode(name), &bus.DecodeRequest{Z: bus.Matrix(2, d, z)}, &rep, bus.Expect{Batch: 2}); err != nil {
		t.Fatal(err)
	}
	want, err := ref.(module.Renderer).Render(z, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if rep.Outputs[i].Type != want[i].Type || !bytes.Equal(rep.Outputs[i].Data, want[i].Data) {
			t.Fatalf("decode endpoint output %d differs from calling Render directly", i)
		}
	}
}
