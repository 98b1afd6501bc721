package eval_test

import (
	"slices"
	"testing"

	"github.com/serket-go/serket/eval"
)

// Figures names every headline number of a result once, in an order that
// does not depend on map order, with the value it holds in the result.
func TestFigures(t *testing.T) {
	names := []string{"a", "b", "c"}
	subsets := eval.Subsets(names)
	acc := make([][]float64, len(subsets))
	for i := range acc {
		acc[i] = []float64{float64(i) + 0.1, float64(i) + 0.3} // targets a and c
	}
	r := &eval.Result{LogPX: -10, LogPCond: map[string]float64{"c": -3, "a": -1, "b": -2},
		Coherence: &eval.Coherence{Subsets: subsets, Targets: []string{"a", "c"}, Acc: acc, Unconditional: 0.5},
		Probe:     map[string]float64{"b": 0.2, "a+b+c": 0.9, "a": 0.1, "c": 0.3}, KMeansAcc: 0.6, KMeansARI: 0.4,
		Judges: map[string]float64{"c": 0.8, "a": 0.7}}
	var got []string
	values := map[string]float64{}
	for _, f := range r.Figures() {
		got = append(got, f.Name)
		values[f.Name] = f.Value
	}
	want := []string{"log p(x)", "log p(a | the others)", "log p(b | the others)", "log p(c | the others)",
		"coherence b → a", "coherence c → a", "coherence b+c → a",
		"coherence a → c", "coherence b → c", "coherence a+b → c", "coherence prior → all agree",
		"probe a+b+c", "probe a", "probe b", "probe c", "k-means accuracy", "k-means ARI",
		"judge of a on real items", "judge of c on real items"}
	if !slices.Equal(got, want) {
		t.Fatalf("figures\n%q\nwant\n%q", got, want)
	}
	at := func(s string) int {
		return slices.IndexFunc(subsets, func(x []string) bool { return eval.SubsetName(x) == s })
	}
	for name, v := range map[string]float64{"coherence b+c → a": acc[at("b+c")][0], "coherence a → c": acc[at("a")][1],
		"log p(b | the others)": -2, "probe a+b+c": 0.9, "judge of c on real items": 0.8, "coherence prior → all agree": 0.5} {
		if values[name] != v {
			t.Errorf("%s = %v, want %v", name, values[name], v)
		}
	}
}
