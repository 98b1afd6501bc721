package integrator

import (
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/internal/lograte"
)

// progressEvery is the least time between two reports of a run's steps:
// a live view redraws a few times a second, and a run of fast steps puts
// a message on the bus a quarter second, not one a step.
const progressEvery = 250 * time.Millisecond

// progress is a run's account of itself on …train.progress
// (bus.TrainProgress), for live views of its training curves. The run
// feeds it every training step and every epoch's end; it sums the steps
// since its last report and reports their means when progressEvery has
// passed since that report (the run's first step at once), and at every
// epoch's end with the epoch's evaluation. A report never stops or slows
// training: one that cannot be sent is dropped, counted and logged at
// most once per interval. Its steps allocate nothing in the steady state:
// the report's map and slice and its encoding are reused.
type progress struct {
	publish func(wire []byte) error // sends an encoded report
	now     func() time.Time
	log     *slog.Logger
	limit   *lograte.Limiter
	failed  int // reports that could not be sent

	// msg is the next report: it holds the sums of its steps (ELBO,
	// JointELBO, KL, LogLik, Items) until report turns them into means.
	msg    bus.TrainProgress
	testLL map[string]float64 // the epoch's evaluation, reused
	wire   []byte             // msg's encoding, reused (Publish copies it)
	last   time.Time          // when the last report went out; zero before the first
	since  time.Time          // when the time the steps took began
}

// newProgress returns the progress of run id of epochs epochs, which
// publish sends.
func newProgress(publish func([]byte) error, log *slog.Logger, limit *lograte.Limiter, id string, epochs int) *progress {
	p := &progress{publish: publish, now: time.Now, log: log, limit: limit, testLL: map[string]float64{}}
	p.msg = bus.TrainProgress{ID: id, Epochs: int32(min(epochs, math.MaxInt32)), LogLik: map[string]float64{}, Missed: map[string]int32{}}
	p.msg.SetSender(Name)
	p.since = p.now()
	return p
}

// begin starts the time of an epoch's steps. The steps of an epoch that
// was cut short (a rollback) and were not reported yet are not reported.
func (p *progress) begin() {
	p.reset()
	p.since = p.now()
}

// step adds a training step's statistics, and reports if it is time.
func (p *progress) step(ss *StepStats) {
	m := &p.msg
	m.Steps++
	m.Items += int64(ss.Items)
	m.Step, m.Epoch, m.Progress, m.Beta = ss.Step, int32(ss.Epoch), ss.Progress, ss.Beta
	m.ELBO += ss.ELBO
	if len(ss.Terms) > 0 {
		m.JointELBO += ss.Terms[0].ELBO
		m.KL += ss.Terms[0].KL
		for mod, v := range ss.Terms[0].LogLik {
			m.LogLik[mod] += v
		}
	}
	for _, mod := range ss.Missing {
		m.Missed[mod]++
	}
	now := p.now()
	if !p.last.IsZero() && now.Sub(p.last) < progressEvery {
		return
	}
	if s := now.Sub(p.since).Seconds(); s > 0 {
		m.SamplesPerSec = float64(m.Items) / s
	}
	p.report(now)
}

// epochEnd reports the end of the epoch es (its means and evaluation
// done), with the steps not yet reported; tested says the run evaluated.
func (p *progress) epochEnd(es *EpochStats, tested bool) {
	m := &p.msg
	m.EpochEnd = true
	m.Step, m.Epoch, m.Beta = es.LastStep, int32(es.Epoch), es.Beta
	m.Progress = min(1, float64(es.Epoch+1)/float64(m.Epochs))
	m.SamplesPerSec = es.SamplesPerSec
	if tested {
		m.Tested, m.TestELBO, m.TestKL = true, es.TestELBO, es.TestKL
		clear(p.testLL)
		for mod, v := range es.TestLogLik {
			p.testLL[mod] = v
		}
		m.TestLogLik = p.testLL
	}
	p.report(p.now())
}

// report turns the sums of msg into means, sends it and starts the next.
func (p *progress) report(now time.Time) {
	m := &p.msg
	if n := float64(m.Steps); n > 0 {
		m.ELBO /= n
		m.JointELBO /= n
		m.KL /= n
		for mod := range m.LogLik {
			m.LogLik[mod] /= n
		}
	}
	var err error
	p.wire, err = bus.MarshalAppend(p.wire[:0], m, bus.DefaultMaxBytes)
	if err == nil {
		err = p.publish(p.wire)
	}
	if err != nil {
		p.failed++
		p.limit.Warn(p.log, "train progress", "cannot report the training's progress (logged once per 10 s; all are counted)",
			"step", m.Step, "failed", p.failed, "err", err)
	}
	p.last, p.since = now, now
	p.reset()
}

// reset empties msg for the next report's steps, keeping its storage.
func (p *progress) reset() {
	m := &p.msg
	clear(m.LogLik)
	clear(m.Missed)
	*m = bus.TrainProgress{Header: m.Header, ID: m.ID, Epochs: m.Epochs, LogLik: m.LogLik, Missed: m.Missed}
}

// newRunProgress is the progress of run r, sent on the pipeline's
// …train.progress.
func newRunProgress(r *run) *progress {
	nc, subject := r.ig.nc, r.ig.subj.TrainProgress()
	send := func(wire []byte) error {
		if err := nc.Publish(subject, wire); err != nil {
			return fmt.Errorf("publish %s: %w", subject, err)
		}
		return nil
	}
	return newProgress(send, r.log, r.limit, r.st.Run, r.cfg.Epochs)
}
