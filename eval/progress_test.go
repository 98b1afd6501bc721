package eval_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/eval"
	"github.com/serket-go/serket/modules/fmnist3"
)

// phaseLog collects eval.Progress reports, phase by phase.
type phaseLog struct {
	phases []string
	seen   map[string][]eval.Progress
}

func (l *phaseLog) add(p eval.Progress) {
	if l.seen == nil {
		l.seen = map[string][]eval.Progress{}
	}
	if len(l.phases) == 0 || l.phases[len(l.phases)-1] != p.Phase {
		l.phases = append(l.phases, p.Phase)
	}
	l.seen[p.Phase] = append(l.seen[p.Phase], p)
}

// check fails t unless phase started at 0, never went back, kept its total
// and unit, and ended exactly once at its total, having moved in between
// when it has more than one unit.
func (l *phaseLog) check(t *testing.T, phase string, total int) {
	t.Helper()
	ps := l.seen[phase]
	if len(ps) < 2 {
		t.Fatalf("%s: %d reports (%v), want a start and an end", phase, len(ps), ps)
	}
	first, last := ps[0], ps[len(ps)-1]
	if first.Done != 0 || last.Done != total || first.Total != total || first.Unit == "" || first.Detail == "" {
		t.Fatalf("%s: from %+v to %+v, want 0 to a total of %d with a unit and a detail", phase, first, last, total)
	}
	for i, p := range ps[1:] {
		if p.Done < ps[i].Done || p.Total != total || p.Unit != first.Unit {
			t.Fatalf("%s: %+v after %+v", phase, p, ps[i])
		}
		if p.Done == total && i+2 != len(ps) {
			t.Fatalf("%s reached its total before its last report: %v", phase, ps)
		}
	}
	if total > 1 && len(ps) < 3 {
		t.Errorf("%s: only a start and an end (%v): a bar would not move", phase, ps)
	}
}

// Every phase of an evaluation of the built-in modules, the judges'
// training included, tells its caller that it starts, how far it has got,
// and that it has finished, with counts that reach their totals; the
// phases' times are kept under the same names. The same evaluation again
// gives the same figures; a negative size is refused.
func TestEvaluateReportsEveryPhase(t *testing.T) {
	dir := datasettest.Dir(t)
	m, err := fmnist3.Open(dir, 8, 32)
	if err != nil {
		t.Fatal(err)
	}
	labels, err := eval.ReadLabels(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := serve(t, "fm", labels, m.Vision, m.Language, m.Audio)
	var l phaseLog
	const items, prior, iwaeItems, probeTrain = 30, 20, 12, 60
	r, err := p.Evaluate(context.Background(), eval.Config{Items: items, Prior: prior, IWAEItems: iwaeItems, IWAEK: 150, ProbeTrain: probeTrain,
		Judges: eval.JudgeConfig{Classifier: eval.ClassifierConfig{Epochs: 2, Batch: 60}}, Progress: l.add})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"judge audio", "judge vision", eval.PhaseCoherence, eval.PhaseLikelihoods, eval.PhaseLatent}
	if !slices.Equal(l.phases, want) {
		t.Fatalf("phases %q, want %q, each once", l.phases, want)
	}
	train, _, err := labels.Split(dataset.Train, 0)
	if err != nil {
		t.Fatal(err)
	}
	l.check(t, "judge audio", 2*(len(train)/60))
	l.check(t, "judge vision", 2*(len(train)/60))
	k := len(p.Modules) // the joint pass scores every module, each other pass one fewer
	l.check(t, eval.PhaseCoherence, ((1<<k-1)*items+prior)*k)
	l.check(t, eval.PhaseLikelihoods, (k+k*(k-1))*iwaeItems)
	l.check(t, eval.PhaseLatent, 1+k+1)
	if !strings.Contains(l.seen[eval.PhaseLikelihoods][0].Detail, "K = 150") {
		t.Errorf("the likelihoods' detail %q does not give K", l.seen[eval.PhaseLikelihoods][0].Detail)
	}
	for _, ph := range want[2:] {
		if _, ok := r.Seconds[ph]; !ok {
			t.Errorf("no time for phase %q in %v", ph, r.Seconds)
		}
	}
	if len(r.Probe) != 4 || r.ProbeTrain != probeTrain || r.IWAEItems != iwaeItems {
		t.Errorf("probes %v from %d items, IWAE on %d: want 4 probes from %d, IWAE on %d", r.Probe, r.ProbeTrain, r.IWAEItems, probeTrain, iwaeItems)
	}
	again, err := p.Evaluate(context.Background(), eval.Config{Items: items, Prior: prior, IWAEItems: iwaeItems, IWAEK: 150, ProbeTrain: probeTrain,
		Judges: eval.JudgeConfig{Classifier: eval.ClassifierConfig{Epochs: 2, Batch: 60}}})
	if err != nil {
		t.Fatal(err)
	}
	if again.LogPX != r.LogPX || !maps.Equal(again.Probe, r.Probe) || fmt.Sprint(again.Coherence) != fmt.Sprint(r.Coherence) {
		t.Errorf("evaluated twice: log p(x) %v and %v, probes %v and %v, coherence %v and %v", r.LogPX, again.LogPX, r.Probe, again.Probe, r.Coherence, again.Coherence)
	}
	if _, err := p.Evaluate(context.Background(), eval.Config{IWAEK: -1}); err == nil || !strings.Contains(err.Error(), "IWAEK") {
		t.Errorf("K = −1: %v, want an error naming IWAEK", err)
	}
}
