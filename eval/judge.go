package eval

import (
	"context"
	"fmt"
	"math"

	"github.com/serket-go/serket/dataset"
)

// A Judge tells the class of what one module's decoder generates: coherence
// is how often that class is the class of the item the generation came
// from. Judges learn from real, labelled items (the modules never see a
// label) and are independent of the model being measured.
type Judge interface {
	// Classes returns the class of the generation at each of the n
	// latents z (n×D).
	Classes(ctx context.Context, z []float32, n int) ([]int, error)
	// Kind says what the judge is, for the report ("a classifier of its
	// features", …); Accuracy is how often it tells the class of real
	// test items, or −1 where that is no measure of it.
	Kind() string
	Accuracy() float64
}

// JudgeConfig sets how judges are made.
type JudgeConfig struct {
	// Cache, if set, is a directory where a trained classifier is kept
	// (judge-<module>.ckpt) and found again, for the same features of the
	// same items.
	Cache string
	// Classifier trains a classifier judge.
	Classifier ClassifierConfig
	// Exemplars is how many training items of each class a ranking judge
	// draws its class's distinct items from; default 200.
	Exemplars int
	Progress  func(Progress)
}

// Judges makes a judge for every module that can have one: a module whose
// likelihood is categorical and that shows features is judged by ranking
// (the class whose items its decoder finds likeliest: how captions are
// judged); another that shows features by a classifier of them trained on
// the training items (images, speech, a sensor's readings). A module that
// shows no features has no judge; no names the reason for each.
func (p *Pipeline) Judges(ctx context.Context, cfg JudgeConfig) (judges map[string]Judge, no map[string]string, err error) {
	judges, no = map[string]Judge{}, map[string]string{}
	for _, m := range p.Modules {
		switch {
		case !m.Features || !m.Items:
			no[m.Name] = "it shows no features of its items (module.Featurer and module.Loader): nothing to judge its generations by"
		case m.Likelihood == "categorical":
			judges[m.Name], err = newRankJudge(ctx, m, cfg.Exemplars)
		default:
			judges[m.Name], err = m.classifierJudge(ctx, cfg)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	return judges, no, nil
}

// rankJudge tells the class of a generation by which class's distinct
// training items the decoder makes likeliest there: the class c with the
// largest log (1/N_c) Σ_k p(x_k | z) over its N_c distinct items, each
// scored from its features (one-hot for a categorical likelihood) and the
// decoder's mean m: log p(x | z) = Σ_f x_f log m_f. Distinct, so that a
// common item (a frequent caption) weighs no more than a rare one.
type rankJudge struct {
	m       *Module
	f       int
	byClass [][]float32 // each class's distinct items' features, N_c×F
}

func newRankJudge(ctx context.Context, m *Module, per int) (*rankJudge, error) {
	if per <= 0 {
		per = 200
	}
	c := len(m.p.Labels.Classes)
	ids, classes, err := m.p.Labels.Split(dataset.Train, 0)
	if err != nil {
		return nil, err
	}
	pick := make([]uint64, 0, c*per)
	taken := make([]int, c)
	for cls := range c { // class by class, so that rows are grouped
		for i, id := range ids {
			if classes[i] == cls && taken[cls] < per {
				pick, taken[cls] = append(pick, id), taken[cls]+1
			}
		}
		if taken[cls] == 0 {
			return nil, fmt.Errorf("eval: judging %s: no training item of class %q", m.Name, m.p.Labels.Classes[cls])
		}
	}
	x, f, err := m.Feats(ctx, pick, nil, 0)
	if err != nil {
		return nil, err
	}
	j := &rankJudge{m: m, f: f, byClass: make([][]float32, c)}
	row := 0
	for cls := range c {
		seen := map[string]bool{}
		for range taken[cls] {
			item := x[row*f : (row+1)*f]
			if key := fmt.Sprint(item); !seen[key] {
				seen[key] = true
				j.byClass[cls] = append(j.byClass[cls], item...)
			}
			row++
		}
	}
	return j, nil
}

func (j *rankJudge) Kind() string {
	n := 0
	for _, b := range j.byClass {
		n += len(b) / j.f
	}
	return fmt.Sprintf("ranking classes by the decoder's likelihood of their distinct training items (%d)", n)
}

func (j *rankJudge) Accuracy() float64 { return -1 }

func (j *rankJudge) Classes(ctx context.Context, z []float32, n int) ([]int, error) {
	means, f, err := j.m.Feats(ctx, nil, z, n)
	if err != nil {
		return nil, err
	}
	if f != j.f {
		return nil, fmt.Errorf("eval: %s's means have %d values, its features %d", j.m.Name, f, j.f)
	}
	logm, lls := make([]float64, f), []float64(nil)
	out := make([]int, n)
	for i := range n {
		for k, v := range means[i*f : (i+1)*f] {
			logm[k] = math.Log(max(float64(v), 1e-30))
		}
		best, bestScore := 0, math.Inf(-1)
		for cls, items := range j.byClass {
			lls = lls[:0]
			for e := 0; e+f <= len(items); e += f {
				var s float64
				for k, v := range items[e : e+f] {
					if v != 0 {
						s += float64(v) * logm[k]
					}
				}
				lls = append(lls, s)
			}
			if s := logMeanExp(lls); s > bestScore {
				best, bestScore = cls, s
			}
		}
		out[i] = best
	}
	return out, nil
}
