package touchsim_test

import (
	"math"
	"slices"
	"testing"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/examples/custom-modality/touch"
	"github.com/serket-go/serket/examples/custom-modality/touchsim"
)

func TestReadingIsDeterministic(t *testing.T) {
	a, b := touchsim.Reading(7, 1, 42), touchsim.Reading(7, 1, 42)
	if !slices.Equal(a, b) {
		t.Fatal("the same class, seed and id gave different readings")
	}
	if slices.Equal(a, touchsim.Reading(7, 1, 43)) || slices.Equal(a, touchsim.Reading(7, 2, 42)) {
		t.Fatal("another id or seed gave the same reading")
	}
}

// Touch tells the classes apart well above chance but not perfectly (the
// garments feel alike): a nearest-class-mean classifier on normalised
// readings, fitted on 2000 simulated training items, scored on 1000 more.
func TestClassesOverlapButDiffer(t *testing.T) {
	norm := func(class int, id uint64) []float64 {
		x := make([]float32, touch.Dim)
		if err := touch.Transform(x, touchsim.Reading(class, 1, id)); err != nil {
			t.Fatal(err)
		}
		out := make([]float64, touch.Dim)
		for j, v := range x {
			out[j] = float64(v)
		}
		return out
	}
	// Scale each feature by its spread over all classes.
	var sum, sq [touch.Dim]float64
	var means [dataset.NumClasses][touch.Dim]float64
	const perClass = 200
	for c := range dataset.NumClasses {
		for i := range perClass {
			for j, v := range norm(c, uint64(c*perClass+i)) {
				sum[j] += v
				sq[j] += v * v
				means[c][j] += v / perClass
			}
		}
	}
	n := float64(dataset.NumClasses * perClass)
	var std [touch.Dim]float64
	for j := range std {
		std[j] = math.Sqrt(sq[j]/n - sum[j]*sum[j]/n/n)
		if !(std[j] > 0) {
			t.Fatalf("feature %s does not vary", touch.Features[j].Name)
		}
	}
	right, total := 0, 0
	for c := range dataset.NumClasses {
		for i := range 100 {
			x := norm(c, uint64(100000+c*100+i))
			best, bestD := -1, math.Inf(1)
			for k := range dataset.NumClasses {
				var d float64
				for j := range x {
					e := (x[j] - means[k][j]) / std[j]
					d += e * e
				}
				if d < bestD {
					best, bestD = k, d
				}
			}
			if best == c {
				right++
			}
			total++
		}
	}
	acc := float64(right) / float64(total)
	t.Logf("nearest class mean: %.3f (chance 0.1)", acc)
	if acc < 0.5 || acc > 0.98 {
		t.Fatalf("accuracy %.3f: want touch informative (> 0.5) but ambiguous (< 0.98)", acc)
	}
}

func TestClassNames(t *testing.T) {
	for name, want := range map[string]int{"sneaker": 7, "Ankle Boot": 9, "boot": 9, "t-shirt/top": 0, "t-shirt": 0, "top": 0, "bag": 8} {
		if c, err := touchsim.Class(name); err != nil || c != want {
			t.Errorf("Class(%q) = %d, %v; want %d", name, c, err, want)
		}
	}
	if _, err := touchsim.Class("hat"); err == nil {
		t.Error("Class(hat) succeeded")
	}
}
