package eval

import (
	"slices"
	"strings"
)

// A Figure is one number of a Result, named for a table or a JSON line.
type Figure struct {
	Name   string // "log p(x)", "coherence vision → language", "probe vision", …
	Value  float64
	Digits int // decimals worth printing
}

// Figures lists a result's headline numbers in a stable order, so that
// results of several runs line up: log p(x) and each module's given the
// others; coherence to every judged module from each other module alone
// and from all the others together, and from the prior; the linear probe
// given everything and given each module alone; k-means; and each judge's
// own accuracy on real test items (how far to trust it: generations can
// be easier to classify than real items, so it is no ceiling).
func (r *Result) Figures() []Figure {
	out := []Figure{{"log p(x)", r.LogPX, 1}}
	for _, m := range slices.Sorted(mapKeys(r.LogPCond)) {
		out = append(out, Figure{"log p(" + m + " | the others)", r.LogPCond[m], 1})
	}
	if c := r.Coherence; c != nil {
		out = append(out, c.figures()...)
	}
	probes := slices.Sorted(mapKeys(r.Probe))
	slices.SortStableFunc(probes, func(a, b string) int { return strings.Count(b, "+") - strings.Count(a, "+") })
	for _, s := range probes {
		out = append(out, Figure{"probe " + s, r.Probe[s], 3})
	}
	out = append(out, Figure{"k-means accuracy", r.KMeansAcc, 3}, Figure{"k-means ARI", r.KMeansARI, 3})
	if r.Concepts != nil {
		out = append(out, r.Concepts.figures()...)
	}
	for _, m := range slices.Sorted(mapKeys(r.Judges)) {
		out = append(out, Figure{"judge of " + m + " on real items", r.Judges[m], 3})
	}
	return out
}

// figures are the coherences Figures lists.
func (c *Coherence) figures() []Figure {
	var out []Figure
	at := map[string]int{}
	for i, s := range c.Subsets {
		at[SubsetName(s)] = i
	}
	for k, target := range c.Targets {
		var others []string
		for _, s := range c.Subsets {
			if len(s) == 1 && s[0] != target {
				others = append(others, s[0])
			}
		}
		from := slices.Clone(others)
		if len(others) > 1 {
			from = append(from, SubsetName(others))
		}
		for _, s := range from {
			if i, ok := at[s]; ok {
				out = append(out, Figure{"coherence " + s + " → " + target, c.Acc[i][k], 3})
			}
		}
	}
	if len(c.Targets) > 1 {
		out = append(out, Figure{"coherence prior → all agree", c.Unconditional, 3})
	}
	if c.UnconditionalPlain != nil {
		out = append(out, Figure{"coherence N(0, I) → all agree", *c.UnconditionalPlain, 3})
	}
	return out
}

// figures are the concepts' figures Figures lists: how many categories,
// and how they match the classes from every subset (everything first).
func (c *Concepts) figures() []Figure {
	out := []Figure{{"concepts used", float64(c.Used), 0}}
	subsets := slices.Sorted(mapKeys(c.Accuracy))
	slices.SortStableFunc(subsets, func(a, b string) int { return strings.Count(b, "+") - strings.Count(a, "+") })
	for _, s := range subsets {
		out = append(out, Figure{"concept accuracy " + s, c.Accuracy[s], 3}, Figure{"concept ARI " + s, c.ARI[s], 3})
	}
	return out
}
