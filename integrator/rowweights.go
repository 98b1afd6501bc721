package integrator

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/serket-go/serket/bus"
)

// checkRowWeights fails unless every module of the run says it honours
// row weights, when the run weighs rows (its aggregation, or
// Pairing.SeenOnly): a module that ignored them would train on another
// objective, silently. A module not discovered yet is waited for, over a
// few discovery polls.
func (r *run) checkRowWeights(ctx context.Context) error {
	why := "aggregation " + r.cfg.Aggregation.Name()
	switch {
	case r.cfg.Aggregation.WeighsRows():
	case r.cfg.Pairing.SeenOnly:
		why = "seen-only training"
	default:
		return nil
	}
	for polls := 0; ; polls++ {
		missing, err := r.ig.withoutRowWeights(r.cfg.Modules, why)
		if err != nil || len(missing) == 0 || polls >= 5 {
			if err == nil && len(missing) > 0 {
				err = fmt.Errorf("integrator: %s: %s not discovered, so whether they honour row weights is not known", why, strings.Join(missing, ", "))
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
func (ig *Integrator) withoutRowWeights(names []string, why string) ([]string, error) {
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
			return nil, fmt.Errorf("integrator: %s weighs rows, and module %s does not say it honours row weights (its service's %s is %q): built on an older module SDK?",
				why, name, bus.MetaTraining, m.Training)
		}
	}
	return missing, nil
}
