package integrator_test

import (
	"context"
	"encoding/json"
	"maps"
	"math"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/integrator"
)

// TestTrainReportsItsProgress trains two toy modules for two epochs while
// listening on …train.progress, as a live view does: every training step
// is in exactly one report, in order; each report's figures are the means
// of the steps it covers, as OnStep saw them; each epoch ends with a
// report that carries its evaluation as the metrics log has it.
func TestTrainReportsItsProgress(t *testing.T) {
	p := toyPipeline(t, 0, "a", "b")
	subj, _ := bus.NewSubjects("")
	view := p.conn("view")
	msgs := make(chan *nats.Msg, 4096)
	if _, err := view.ChanSubscribe(subj.TrainProgress(), msgs); err != nil {
		t.Fatal(err)
	}
	if err := view.Flush(); err != nil {
		t.Fatal(err)
	}

	const epochs, items, batch = 2, 3000, 10
	var steps []integrator.StepStats
	var lines []integrator.EpochStats
	began := time.Now()
	_, err := p.ig.Train(context.Background(), integrator.TrainConfig{
		Modules: []string{"a", "b"}, IDs: ids(items), Epochs: epochs, Batch: batch, Subsets: 1,
		EvalIDs: ids(3000)[:200], Deadline: 10 * time.Second,
		OnStep: func(s integrator.StepStats) {
			steps = append(steps, s.Clone())
			// A step of a millisecond at least, as a real model's: each
			// epoch's 300 outlast a report interval, so that reports come
			// mid-epoch too (the toy's steps take a fraction of that).
			time.Sleep(time.Millisecond)
		},
		Metrics: writerFunc(func(line []byte) {
			var es integrator.EpochStats
			if err := json.Unmarshal(line, &es); err != nil {
				t.Error(err)
			}
			lines = append(lines, es)
		}),
	})
	took := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != epochs*items/batch || len(lines) != epochs {
		t.Fatalf("%d steps and %d metric lines, want %d and %d", len(steps), len(lines), epochs*items/batch, epochs)
	}

	// The reports of one publisher arrive in order: the last epoch's end
	// is the last of them.
	var reports []bus.TrainProgress
	timeout := time.After(10 * time.Second)
	for len(reports) == 0 || !(reports[len(reports)-1].EpochEnd && reports[len(reports)-1].Epoch == epochs-1) {
		select {
		case m := <-msgs:
			var r bus.TrainProgress
			if err := bus.UnmarshalFrom(m.Subject, m.Data, &r, bus.Expect{}); err != nil {
				t.Fatalf("report %d: %v", len(reports), err)
			}
			reports = append(reports, r)
		case <-timeout:
			t.Fatalf("the last epoch's end never came; %d reports", len(reports))
		}
	}

	if r := reports[0]; r.Steps != 1 || r.Step != steps[0].Step {
		t.Errorf("the first report covers %d steps to step %d; want the run's first step (%d) alone, at once", r.Steps, r.Step, steps[0].Step)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want)) }
	i, ends := 0, 0            // the next step to be reported, the epochs ended
	mid := make([]int, epochs) // reports mid-epoch, the run's first one aside
	for k, r := range reports {
		if r.Sender != integrator.Name || !bus.ValidToken(r.ID) || r.ID != reports[0].ID || r.Epochs != epochs {
			t.Errorf("report %d is from %q of run %q of %d epochs; want the integrator's, of one run of %d", k, r.Sender, r.ID, r.Epochs, epochs)
		}
		if int(r.Steps) > len(steps)-i {
			t.Fatalf("report %d covers %d steps; only %d are left", k, r.Steps, len(steps)-i)
		}
		covered := steps[i : i+int(r.Steps)]
		i += len(covered)
		if len(covered) > 0 {
			last := covered[len(covered)-1]
			var elbo, joint, kl float64
			var n int64
			ll := map[string]float64{}
			for _, s := range covered {
				if s.Epoch != last.Epoch {
					t.Errorf("report %d covers steps of epochs %d and %d", k, s.Epoch, last.Epoch)
				}
				elbo += s.ELBO
				joint += s.Terms[0].ELBO
				kl += s.Terms[0].KL
				for m, v := range s.Terms[0].LogLik {
					ll[m] += v
				}
				n += int64(s.Items)
			}
			c := float64(len(covered))
			if r.Step != last.Step || int(r.Epoch) != last.Epoch || r.Items != n || r.Beta != last.Beta || (!r.EpochEnd && r.Progress != last.Progress) {
				t.Errorf("report %d: step %d, epoch %d, %d items, β %v, progress %v; want %d, %d, %d, %v, %v",
					k, r.Step, r.Epoch, r.Items, r.Beta, r.Progress, last.Step, last.Epoch, n, last.Beta, last.Progress)
			}
			if !near(r.ELBO, elbo/c) || !near(r.JointELBO, joint/c) || !near(r.KL, kl/c) {
				t.Errorf("report %d: ELBO %v, joint %v, KL %v; the means of its %d steps are %v, %v, %v", k, r.ELBO, r.JointELBO, r.KL, len(covered), elbo/c, joint/c, kl/c)
			}
			if len(r.LogLik) != len(ll) {
				t.Errorf("report %d: log-likelihoods of %v; want of %v", k, r.LogLik, ll)
			}
			for m, v := range ll {
				if got, ok := r.LogLik[m]; !ok || !near(got, v/c) {
					t.Errorf("report %d: %s's log-likelihood %v; the mean of its steps is %v", k, m, got, v/c)
				}
			}
			if !(r.SamplesPerSec > 0) || len(r.Missed) != 0 {
				t.Errorf("report %d: %v samples/s, missed %v; want a throughput and nobody missing", k, r.SamplesPerSec, r.Missed)
			}
		}
		if !r.EpochEnd {
			if r.Steps < 1 || r.Tested {
				t.Errorf("report %d mid-epoch: %d steps, tested %v", k, r.Steps, r.Tested)
			}
			if k > 0 && int(r.Epoch) < epochs {
				mid[r.Epoch]++
			}
			continue
		}
		// An epoch's end: every step of the epoch is reported by then,
		// and the evaluation is the metrics log's.
		if int(r.Epoch) != ends || i != (ends+1)*items/batch {
			t.Fatalf("report %d ends epoch %d after %d steps; want epoch %d's end after %d", k, r.Epoch, i, ends, (ends+1)*items/batch)
		}
		es := lines[ends]
		ends++
		if !r.Tested || r.TestELBO != es.TestELBO || r.TestKL != es.TestKL || !maps.Equal(r.TestLogLik, es.TestLogLik) || r.TestELBO == 0 {
			t.Errorf("epoch %d's end: tested %v, ELBO %v, KL %v, log-likelihoods %v; the metrics log says %v, %v, %v",
				r.Epoch, r.Tested, r.TestELBO, r.TestKL, r.TestLogLik, es.TestELBO, es.TestKL, es.TestLogLik)
		}
		if r.SamplesPerSec != es.SamplesPerSec || r.Step != es.LastStep || r.Progress != float64(ends)/epochs {
			t.Errorf("epoch %d's end: %v samples/s, step %d, progress %v; want the epoch's %v, %d, %v", r.Epoch, r.SamplesPerSec, r.Step, r.Progress, es.SamplesPerSec, es.LastStep, float64(ends)/epochs)
		}
	}
	if ends != epochs || i != len(steps) {
		t.Errorf("%d epochs ended and %d of %d steps reported", ends, i, len(steps))
	}
	// Each epoch's steps took more than a report interval after the last
	// report before them.
	for e, n := range mid {
		if n == 0 {
			t.Errorf("no report in the middle of epoch %d", e)
		}
	}
	// A report of steps waits a quarter second after the one before.
	if n, most := len(reports)-ends, 1+int(took/(250*time.Millisecond)); n > most {
		t.Errorf("%d reports of steps in %v; want at most %d, one a quarter second", n, took, most)
	}
	t.Logf("%d reports of %d steps; mid-epoch, the first aside: %v", len(reports), len(steps), mid)
}
