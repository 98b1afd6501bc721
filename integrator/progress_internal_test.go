package integrator

import (
	"bytes"
	"errors"
	"log/slog"
	"maps"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/internal/lograte"
)

// progressClock is a progress whose clock the test sets and whose
// reports it decodes.
type progressClock struct {
	*progress
	t       *testing.T
	clock   time.Time
	reports []bus.TrainProgress
	fail    error // what publishing returns
	log     bytes.Buffer
}

func newProgressClock(t *testing.T) *progressClock {
	c := &progressClock{t: t, clock: time.Unix(1_800_000_000, 0)}
	send := func(wire []byte) error {
		var m bus.TrainProgress
		if err := bus.Unmarshal(wire, &m, bus.Expect{}); err != nil {
			t.Errorf("a report does not decode: %v", err)
		}
		if c.fail == nil {
			c.reports = append(c.reports, m)
		}
		return c.fail
	}
	c.progress = newProgress(send, slog.New(slog.NewTextHandler(&c.log, nil)), lograte.New(10*time.Second), "abc123", 2)
	c.now = func() time.Time { return c.clock }
	return c
}

// at sets the clock to ms milliseconds after the start.
func (c *progressClock) at(ms int) {
	c.clock = time.Unix(1_800_000_000, 0).Add(time.Duration(ms) * time.Millisecond)
}

// last is the last report, and whether it is new since n were counted.
func (c *progressClock) last(n int) (bus.TrainProgress, bool) {
	if len(c.reports) == n {
		return bus.TrainProgress{}, false
	}
	return c.reports[len(c.reports)-1], len(c.reports) == n+1
}

// toyStep is a step's statistics as a run makes them.
func toyStep(step uint64, elbo float64, items int, missing ...string) *StepStats {
	return &StepStats{Step: step, Epoch: int(step-1) / 6, Progress: float64(step) / 12, ELBO: elbo, Beta: float32(step) / 16, Items: items, Missing: missing,
		Terms: []TermStats{{ELBO: elbo / 2, KL: -elbo / 8, LogLik: map[string]float64{"a": elbo / 4, "b": elbo / 8}}, {ELBO: 99, KL: 99}}}
}

// TestProgressAveragesAtMostEveryInterval drives the aggregator through
// two epochs on a set clock: the first step reports at once, later steps
// when a quarter second has passed since the last report, with the means
// of the steps since; every epoch's end reports, with what is left and
// the evaluation; a rollback's unreported steps are not reported.
func TestProgressAveragesAtMostEveryInterval(t *testing.T) {
	c := newProgressClock(t)
	type want struct {
		steps          int32
		step           uint64
		elbo, sps      float64
		missed         map[string]int32
		end, tested    bool
		items          int64
		testELBO, beta float64
	}
	check := func(what string, n int, w want) {
		t.Helper()
		r, ok := c.last(n)
		if !ok {
			t.Fatalf("%s: %d reports, want 1 new", what, len(c.reports)-n)
		}
		if r.Steps != w.steps || r.Step != w.step || r.ELBO != w.elbo || r.Items != w.items || math.Abs(r.SamplesPerSec-w.sps) > 1e-9 ||
			!maps.Equal(r.Missed, w.missed) || r.EpochEnd != w.end || r.Tested != w.tested || r.TestELBO != w.testELBO || float64(r.Beta) != w.beta {
			t.Errorf("%s: report %+v\nwant %+v", what, r, w)
		}
		if r.ID != "abc123" || r.Epochs != 2 || r.Sender != Name {
			t.Errorf("%s: run %q of %d epochs from %q", what, r.ID, r.Epochs, r.Sender)
		}
		if w.steps > 0 { // the joint term's means: half, an eighth and a quarter of the ELBO's
			if r.JointELBO != w.elbo/2 || r.KL != -w.elbo/8 || !maps.Equal(r.LogLik, map[string]float64{"a": w.elbo / 4, "b": w.elbo / 8}) {
				t.Errorf("%s: joint ELBO %v, KL %v, log-likelihoods %v; want the means of the steps' joint term", what, r.JointELBO, r.KL, r.LogLik)
			}
		} else if r.JointELBO != 0 || r.KL != 0 || len(r.LogLik) != 0 {
			t.Errorf("%s: a report of no step has figures %v %v %v", what, r.JointELBO, r.KL, r.LogLik)
		}
	}
	quiet := func(what string, n int) {
		t.Helper()
		if len(c.reports) != n {
			t.Errorf("%s: %d new reports, want none", what, len(c.reports)-n)
		}
	}

	c.begin()
	c.at(100)
	c.step(toyStep(1, -10, 10))
	check("the first step", 0, want{steps: 1, step: 1, elbo: -10, items: 10, sps: 10 / 0.1, beta: 1. / 16})
	c.at(200)
	c.step(toyStep(2, -8, 10, "b"))
	c.at(349)
	c.step(toyStep(3, -6, 10))
	quiet("249 ms after", 1)
	c.at(350)
	c.step(toyStep(4, -4, 10, "a", "b"))
	check("250 ms after", 1, want{steps: 3, step: 4, elbo: -6, items: 30, sps: 30 / 0.25, missed: map[string]int32{"a": 1, "b": 2}, beta: 4. / 16})
	c.at(400)
	c.step(toyStep(5, -2, 10))
	c.at(420)
	c.step(toyStep(6, -1, 5))
	quiet("50 ms after", 2)
	c.at(500)
	c.epochEnd(&EpochStats{Epoch: 0, LastStep: 6, Beta: 6. / 16, SamplesPerSec: 77, TestELBO: -9, TestKL: 1.5, TestLogLik: map[string]float64{"a": -4}}, true)
	check("the epoch's end", 2, want{steps: 2, step: 6, elbo: -1.5, items: 15, sps: 77, end: true, tested: true, testELBO: -9, beta: 6. / 16})
	if r := c.reports[2]; r.Progress != 0.5 || r.TestKL != 1.5 || !maps.Equal(r.TestLogLik, map[string]float64{"a": -4}) || r.Epoch != 0 {
		t.Errorf("the epoch's end: progress %v, test KL %v, log-likelihoods %v, epoch %d", r.Progress, r.TestKL, r.TestLogLik, r.Epoch)
	}

	// The next epoch: its first step is within the interval of the epoch's
	// end; it is rolled back before its report is due.
	c.at(600)
	c.begin()
	c.at(700)
	c.step(toyStep(7, -100, 10, "a"))
	quiet("200 ms after the epoch's end", 3)
	c.at(800)
	c.begin() // rolled back to step 6
	c.at(900)
	c.step(toyStep(7, -0.5, 20))
	check("the step again, after the rollback", 3, want{steps: 1, step: 7, elbo: -0.5, items: 20, sps: 20 / 0.1, beta: 7. / 16})
	if r := c.reports[3]; r.Epoch != 1 || r.Progress != 7./12 || r.Tested || r.TestLogLik != nil {
		t.Errorf("mid-epoch: epoch %d, progress %v, tested %v %v", r.Epoch, r.Progress, r.Tested, r.TestLogLik)
	}
	// An epoch's end with every step reported, not evaluated.
	c.at(950)
	c.epochEnd(&EpochStats{Epoch: 1, LastStep: 7, Beta: 7. / 16, SamplesPerSec: 55}, false)
	check("an epoch's end of no new step", 4, want{step: 7, sps: 55, end: true, beta: 7. / 16})
	if r := c.reports[4]; r.Progress != 1 || r.TestLogLik != nil {
		t.Errorf("the last epoch's end: progress %v, test log-likelihoods %v", r.Progress, r.TestLogLik)
	}
}

// TestProgressNeverStopsTraining: a report that cannot be encoded (a
// non-finite ELBO) or sent is dropped and counted, logged once per
// interval, and the next starts afresh.
func TestProgressNeverStopsTraining(t *testing.T) {
	c := newProgressClock(t)
	c.begin()
	c.at(100)
	c.step(toyStep(1, math.NaN(), 10))
	c.fail = errors.New("nats: connection closed")
	c.at(400)
	c.step(toyStep(2, -3, 10))
	c.fail = nil
	c.at(700)
	c.step(toyStep(3, -2, 10))
	if c.failed != 2 || len(c.reports) != 1 {
		t.Fatalf("%d failed, %d sent; want 2 and 1", c.failed, len(c.reports))
	}
	if r := c.reports[0]; r.Steps != 1 || r.Step != 3 || r.ELBO != -2 {
		t.Errorf("after the failures: %d steps to step %d, ELBO %v; want step 3 alone, -2", r.Steps, r.Step, r.ELBO)
	}
	if lines := strings.Count(c.log.String(), "\n"); lines != 1 || !strings.Contains(c.log.String(), "elbo") {
		t.Errorf("%d log lines, want 1 naming the field at fault:\n%s", lines, c.log.String())
	}
}

// TestProgressStepAllocatesNothing: in the steady state a step allocates
// nothing, whether it reports or not.
func TestProgressStepAllocatesNothing(t *testing.T) {
	var sent int
	p := newProgress(func([]byte) error { sent++; return nil }, slog.New(slog.DiscardHandler), lograte.New(10*time.Second), "abc123", 2)
	clock := time.Unix(1_800_000_000, 0)
	p.now = func() time.Time { return clock }
	ss := toyStep(3, -5, 10, "b")
	p.step(ss) // grows the buffers once
	for _, tick := range []time.Duration{time.Millisecond, time.Second} {
		before := sent
		if n := testing.AllocsPerRun(100, func() { clock = clock.Add(tick); p.step(ss) }); n != 0 {
			t.Errorf("%v a step: %v allocations per step, want 0", tick, n)
		}
		if reported := sent > before; reported != (tick == time.Second) {
			t.Errorf("%v a step: reported %v", tick, reported)
		}
	}
}
