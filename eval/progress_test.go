package eval

import (
	"slices"
	"strings"
	"testing"

	"github.com/serket-go/serket/dataset"
)

// phaseLog collects Progress reports, phase by phase.
type phaseLog struct {
	phases []string
	seen   map[string][]Progress
}

func (l *phaseLog) add(p Progress) {
	if l.seen == nil {
		l.seen = map[string][]Progress{}
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

// Every phase of an evaluation, the judges' training included, tells its
// caller that it starts, how far it has got, and that it has finished, with
// counts that reach their totals; the phases' times are kept under the same
// names.
func TestEvaluateReportsEveryPhase(t *testing.T) {
	m := openSmall(t)
	var l phaseLog
	var j Judges
	var err error
	if j.Vision, err = m.TrainClassifier(dataset.Vision, ClassifierConfig{Epochs: 2, Progress: l.add}); err != nil {
		t.Fatal(err)
	}
	if j.Audio, err = m.TrainClassifier(dataset.Audio, ClassifierConfig{Epochs: 1, Batch: 60, Progress: l.add}); err != nil {
		t.Fatal(err)
	}
	const items, prior, iwaeItems, probeTrain = 30, 20, 12, 60
	r, err := m.Evaluate(j, Config{Items: items, Prior: prior, IWAEItems: iwaeItems, IWAEK: 150, ProbeTrain: probeTrain, Progress: l.add})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"judge vision", "judge audio", PhaseCoherence, PhaseLikelihoods, PhaseLatent}
	if !slices.Equal(l.phases, want) {
		t.Fatalf("phases %q, want %q, each once", l.phases, want)
	}
	train := len(m.Manifest.InSplit(dataset.Train))
	l.check(t, "judge vision", 2*(train/100)+1)
	l.check(t, "judge audio", train/60+1)
	l.check(t, PhaseCoherence, items+prior)
	k := len(m.Names()) // the joint pass decodes every modality, each other pass one fewer
	l.check(t, PhaseLikelihoods, (k+k*(k-1))*iwaeItems)
	l.check(t, PhaseLatent, 1+len(m.Names())+1)
	if !strings.Contains(l.seen[PhaseLikelihoods][0].Detail, "K = 150") {
		t.Errorf("the likelihoods' detail %q does not give K", l.seen[PhaseLikelihoods][0].Detail)
	}
	for _, p := range want[2:] {
		if _, ok := r.Seconds[p]; !ok {
			t.Errorf("no time for phase %q in %v", p, r.Seconds)
		}
	}
	if len(r.Probe) != 4 || r.ProbeTrain != probeTrain || r.IWAEItems != iwaeItems {
		t.Errorf("probes %v from %d items, IWAE on %d: want 4 probes from %d, IWAE on %d", r.Probe, r.ProbeTrain, r.IWAEItems, probeTrain, iwaeItems)
	}
}

// The default evaluation is the fast one; Thorough is today's published
// sizes (K = 1000 on 1000 items) and costs at least ten times as much; a
// field set by hand wins over either preset; a negative size is refused.
func TestConfigPresets(t *testing.T) {
	type sizes struct {
		items, prior, iwaeItems, iwaeK, probeTrain int
		seed                                       uint64
	}
	resolve := func(c Config) sizes {
		t.Helper()
		r, err := c.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		return sizes{r.Items, r.Prior, r.IWAEItems, r.IWAEK, r.ProbeTrain, r.Seed}
	}
	fast, thorough := resolve(Config{}), resolve(Config{Thorough: true})
	if want := (sizes{1000, 1000, 500, 100, 2000, 1}); fast != want {
		t.Errorf("default %+v, want %+v", fast, want)
	}
	if want := (sizes{1000, 1000, 1000, 1000, 5000, 1}); thorough != want {
		t.Errorf("thorough %+v, want %+v", thorough, want)
	}
	// The likelihoods are nearly all of the time and scale with items × K.
	if f, th := fast.iwaeItems*fast.iwaeK, thorough.iwaeItems*thorough.iwaeK; th < 10*f {
		t.Errorf("IWAE work: fast %d, thorough %d, want thorough ≥ 10× fast", f, th)
	}
	if got := resolve(Config{Thorough: true, IWAEK: 300, Seed: 4}); got.iwaeK != 300 || got.seed != 4 || got.iwaeItems != 1000 {
		t.Errorf("thorough with K = 300 and seed 4: %+v", got)
	}
	m := openSmall(t)
	if _, err := m.Evaluate(Judges{Vision: &Classifier{}, Audio: &Classifier{}}, Config{IWAEK: -1}); err == nil || !strings.Contains(err.Error(), "IWAEK") {
		t.Errorf("K = −1: %v, want an error naming IWAEK", err)
	}
}
