package priortest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/module"
)

// drift is a small sound prior model for the suite's own tests: every
// item's prior is, per dimension, the Gaussian of the evidence's means it
// has learned (an exponential average of their mean and spread), with
// category 0 for an item some expert saw and none for the others. A flaw
// breaks it in one way a check must catch.
type drift struct {
	d     int
	flaw  flaw
	steps uint64
	mean  []float64
	vari  []float64
	calls int
}

type flaw string

const (
	sound            flaw = ""
	nanMu            flaw = "gives a NaN mean"
	unwritten        flaw = "leaves its last row unwritten"
	wideLogVar       flaw = "gives a log-variance of 31"
	badConcept       flaw = "gives category bus.MaxConcepts"
	panics           flaw = "panics"
	unseeded         flaw = "starts differently in every instance"
	nondeterministic flaw = "answers differently at every call"
	learnsAlways     flaw = "learns from Learn false"
	lazy             flaw = "never learns"
	forgetful        flaw = "saves no variances"
	gullible         flaw = "restores whatever it is given"
	partial          flaw = "changes before it refuses a checkpoint"
	unchecked        flaw = "checks no checksum"
)

var instances atomic.Int64

func newDrift(d int, f flaw) *drift {
	m := &drift{d: d, flaw: f, mean: make([]float64, d), vari: make([]float64, d)}
	for k := range m.vari {
		m.vari[k] = 1
	}
	if f == unseeded {
		m.mean[0] = float64(instances.Add(1))
	}
	return m
}

var (
	_ module.PriorModel = (*drift)(nil)
	_ module.Saver      = (*drift)(nil)
)

func (m *drift) PriorSpec() module.PriorSpec { return module.PriorSpec{Name: "drift", Latent: m.d} }

func (m *drift) Prior(out []module.PriorOut, ev []module.Evidence, q module.PriorQuery) error {
	if m.flaw == panics {
		panic("drift: a deliberate panic")
	}
	m.calls++
	for t, o := range out {
		for i := range q.B {
			if m.flaw == unwritten && i == q.B-1 {
				continue
			}
			seen := false
			for k := range q.D {
				j := i*q.D + k
				o.Mu[j], o.LogVar[j] = float32(m.mean[k]), float32(math.Log(m.vari[k]))
				if m.flaw == nondeterministic {
					o.Mu[j] += float32(m.calls) / 1024
				}
				seen = seen || ev[t].Prec[j] > 0
			}
			if seen {
				o.Concept[i], o.Prob[i] = 0, 1
			}
		}
		switch m.flaw {
		case nanMu:
			o.Mu[0] = float32(math.NaN())
		case wideLogVar:
			o.LogVar[0] = 31
		case badConcept:
			o.Concept[0] = bus.MaxConcepts
		}
	}
	if (q.Learn && m.flaw != lazy) || m.flaw == learnsAlways {
		m.learn(ev, q)
	}
	return nil
}

// learn moves each dimension's mean and variance a twentieth of the way
// towards every mean the evidence gives.
func (m *drift) learn(ev []module.Evidence, q module.PriorQuery) {
	m.steps++
	for _, e := range ev {
		for j, p := range e.Prec {
			if p == 0 {
				continue
			}
			k, x := j%q.D, float64(e.Shift[j]/p)
			m.mean[k] += (x - m.mean[k]) / 20
			m.vari[k] = min(max(m.vari[k]+((x-m.mean[k])*(x-m.mean[k])-m.vari[k])/20, 1e-6), 1e6)
		}
	}
}

const driftMagic = "drift-1\x00"

func (m *drift) size() int { return len(driftMagic) + 4 + 8 + 16*m.d + 4 }

// Save writes the magic, D, the steps, the means and variances as float64
// and a CRC-32 of it all.
func (m *drift) Save(w io.Writer) error {
	b := append([]byte(driftMagic), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(b[len(driftMagic):], uint32(m.d))
	b = binary.LittleEndian.AppendUint64(b, m.steps)
	for _, v := range m.mean {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	for _, v := range m.vari {
		if m.flaw == forgetful {
			v = 1
		}
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	_, err := w.Write(b)
	return err
}

// Restore reads exactly one checkpoint and checks all of it before it
// changes anything (but for its flaws).
func (m *drift) Restore(r io.Reader) error {
	b := make([]byte, m.size())
	_, err := io.ReadFull(r, b)
	if m.flaw == gullible {
		m.decode(b)
		return nil
	}
	if m.flaw == partial {
		m.decode(b)
	}
	n := len(b) - 4
	switch {
	case err != nil:
		return fmt.Errorf("drift checkpoint: %w", err)
	case string(b[:len(driftMagic)]) != driftMagic:
		return errors.New("drift checkpoint: bad magic")
	case binary.LittleEndian.Uint32(b[len(driftMagic):]) != uint32(m.d):
		return errors.New("drift checkpoint: another latent size")
	case m.flaw != unchecked && crc32.ChecksumIEEE(b[:n]) != binary.LittleEndian.Uint32(b[n:]):
		return errors.New("drift checkpoint: checksum mismatch")
	}
	for i := len(driftMagic) + 12; i < n; i += 8 {
		v := math.Float64frombits(binary.LittleEndian.Uint64(b[i:]))
		if math.IsNaN(v) || math.IsInf(v, 0) || (i >= len(driftMagic)+12+8*m.d && !(v > 0)) {
			return errors.New("drift checkpoint: a value out of range")
		}
	}
	m.decode(b)
	return nil
}

func (m *drift) decode(b []byte) {
	at := len(driftMagic) + 4
	m.steps = binary.LittleEndian.Uint64(b[at:])
	for k := range m.d {
		m.mean[k] = math.Float64frombits(binary.LittleEndian.Uint64(b[at+8+8*k:]))
		m.vari[k] = math.Float64frombits(binary.LittleEndian.Uint64(b[at+8+8*(m.d+k):]))
	}
}

func driftConfig(f flaw) Config {
	return Config{New: func() (module.PriorModel, error) { return newDrift(4, f), nil }, Checksummed: true, LearnSteps: 10}
}

// TestSoundModelPasses: a sound model that is not the concept module
// passes every check, the wire's included.
func TestSoundModelPasses(t *testing.T) {
	Run(t, driftConfig(sound))
}

// TestChecksCatchFlaws runs each check on a model with a flaw it must
// catch, and on the sound model, which it must pass.
func TestChecksCatchFlaws(t *testing.T) {
	for _, tc := range []struct {
		flaw        flaw
		check       string
		checksummed bool
		wantFail    bool
	}{
		{nanMu, "Outputs", true, true},
		{unwritten, "Outputs", true, true},
		{wideLogVar, "Outputs", true, true},
		{badConcept, "Outputs", true, true},
		{panics, "Outputs", true, true},
		{unseeded, "Outputs", true, true},
		{unseeded, "Inference", true, true},
		{nondeterministic, "InferenceDoesNotLearn", true, true},
		{learnsAlways, "InferenceDoesNotLearn", true, true},
		{learnsAlways, "ForgedTraining", true, true},
		{lazy, "Learning", true, true},
		{forgetful, "Checkpoint", true, true},
		{gullible, "DamagedCheckpoints", true, true},
		{partial, "DamagedCheckpoints", true, true},
		{unchecked, "DamagedCheckpoints", true, true},
		// Without a checksum, a restore of a flipped byte that still
		// gives valid priors is taken.
		{unchecked, "DamagedCheckpoints", false, false},
	} {
		t.Run(fmt.Sprintf("%s/%s", tc.check, strings.ReplaceAll(string(tc.flaw), " ", "_")), func(t *testing.T) {
			cfg := driftConfig(tc.flaw)
			cfg.Checksummed = tc.checksummed
			r := runCheck(t, tc.check, cfg)
			switch {
			case tc.wantFail && !r.Failed():
				t.Errorf("check %s passed a model that %s", tc.check, tc.flaw)
			case !tc.wantFail && r.Failed():
				t.Errorf("check %s failed a model that %s: %s", tc.check, tc.flaw, r.messages())
			default:
				t.Logf("check %s: %s", tc.check, r.messages())
			}
			cfg = driftConfig(sound)
			cfg.Checksummed = tc.checksummed
			if r := runCheck(t, tc.check, cfg); r.Failed() {
				t.Errorf("check %s failed the sound model: %s", tc.check, r.messages())
			}
		})
	}
}

// runCheck runs the check of that name on a recorder, as Run would.
func runCheck(t *testing.T, name string, cfg Config) *recorder {
	t.Helper()
	var c *check
	for i := range checks {
		if checks[i].name == name {
			c = &checks[i]
		}
	}
	for i := range wireChecks {
		if wireChecks[i].name == name {
			c = &wireChecks[i]
		}
	}
	if c == nil {
		t.Fatalf("no check %s", name)
	}
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() { // a check's Fatal ends this goroutine, as testing's does a test's
		defer close(done)
		c.run(newSuite(r, cfg), r)
	}()
	<-done
	return r
}

// recorder is a testing.TB that records failures instead of failing the
// test, so that a test can see a check fail. The rest (Cleanup, TempDir,
// Helper, Log, …) is the real test's: a check's servers live until it
// ends.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed bool
	msgs   []string
}

func (r *recorder) note(failed bool, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = r.failed || failed
	r.msgs = append(r.msgs, msg)
}

func (r *recorder) Error(args ...any)                 { r.note(true, fmt.Sprint(args...)) }
func (r *recorder) Errorf(format string, args ...any) { r.note(true, fmt.Sprintf(format, args...)) }
func (r *recorder) Fatal(args ...any)                 { r.Error(args...); runtime.Goexit() }
func (r *recorder) Fatalf(format string, args ...any) { r.Errorf(format, args...); runtime.Goexit() }
func (r *recorder) Fail()                             { r.note(true, "Fail") }
func (r *recorder) FailNow()                          { r.Fail(); runtime.Goexit() }
func (r *recorder) Skip(args ...any) {
	r.note(false, "skipped: "+fmt.Sprint(args...))
	runtime.Goexit()
}
func (r *recorder) Skipf(format string, args ...any) { r.Skip(fmt.Sprintf(format, args...)) }
func (r *recorder) SkipNow()                         { r.Skip() }
func (r *recorder) Skipped() bool                    { return false }

func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *recorder) messages() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) == 0 {
		return "(nothing said)"
	}
	return strings.Join(r.msgs, "; ")
}

// TestRecorderFatalEndsTheCheck: the recorder's Fatal must stop a check
// where it is, as a real test's does, or the checks above would run on
// past their failures.
func TestRecorderFatalEndsTheCheck(t *testing.T) {
	r := &recorder{TB: t}
	reached := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Fatal("stop")
		reached = true
	}()
	<-done
	if !r.Failed() || reached {
		t.Fatalf("after Fatal: failed %v, went on %v", r.Failed(), reached)
	}
}

// TestValidNamesTheFault: the Outputs rules say what is wrong and where.
func TestValidNamesTheFault(t *testing.T) {
	s := newSuite(t, driftConfig(sound))
	q := s.query(1, false)
	out := s.prior(t, newDrift(4, sound), s.random(0), q)
	out[1].LogVar[5] = -40
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.valid(r, "a test", out, q)
	}()
	<-done
	if msg := r.messages(); !r.Failed() || !strings.Contains(msg, "term 1: LogVar[5] = -40") {
		t.Fatalf("valid of a log-variance of −40: failed %v, said %q", r.Failed(), msg)
	}
	if !bytes.Contains([]byte(r.messages()), []byte("drift")) {
		t.Errorf("the failure does not name the model: %q", r.messages())
	}
}
