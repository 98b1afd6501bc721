package integrator

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
)

// checkRowWeights fails unless every module of the run says it honours
// row weights, when the run's aggregation weighs rows: a module that
// ignored them would train on another objective, silently. A module not
// discovered yet is waited for, over a few discovery polls.
func (r *run) checkRowWeights(ctx context.Context) error {
	agg := r.cfg.Aggregation
	if !agg.WeighsRows() {
		return nil
	}
	for polls := 0; ; polls++ {
		missing, err := r.ig.withoutRowWeights(r.cfg.Modules, agg)
		if err != nil || len(missing) == 0 || polls >= 5 {
			if err == nil && len(missing) > 0 {
				err = fmt.Errorf("integrator: aggregation %s: %s not discovered, so whether they honour row weights is not known", agg.Name(), strings.Join(missing, ", "))
			}
			return err
		}
		select {
		case <-r.ig.Polled():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// withoutRowWeights returns the modules of names not discovered yet, or an
// error naming one that is and does not honour row weights.
func (ig *Integrator) withoutRowWeights(names []string, agg aggregate.Aggregation) ([]string, error) {
	ig.mu.Lock()
	defer ig.mu.Unlock()
	var missing []string
	for _, name := range names {
		m := ig.modules[name]
		if m == nil {
			missing = append(missing, name)
			continue
		}
		if !slices.Contains(strings.Split(m.Training, ","), bus.TrainsRowWeights) {
			return nil, fmt.Errorf("integrator: aggregation %s weighs rows, and module %s does not say it honours row weights (its service's %s is %q): built on an older module SDK?",
				agg.Name(), name, bus.MetaTraining, m.Training)
		}
	}
	return missing, nil
}
