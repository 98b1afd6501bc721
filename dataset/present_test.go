package dataset_test

import (
	"math"
	"testing"

	"github.com/serket-go/serket/dataset"
)

func TestPresent(t *testing.T) {
	mods := dataset.Modalities()
	const n = 30000
	count := func(fraction float64, seed uint64) (full int, single [3]int) {
		t.Helper()
		for id := range uint64(n) {
			var has [3]bool
			k := 0
			for i, m := range mods {
				has[i] = dataset.Present(id, dataset.Train, m, mods, fraction, seed)
				if has[i] {
					k++
				}
				if has[i] != dataset.Present(id, dataset.Train, m, mods, fraction, seed) {
					t.Fatalf("id %d %s: not deterministic", id, m)
				}
			}
			if paired := dataset.Paired(id, dataset.Train, fraction, seed); paired != (k == 3) {
				t.Fatalf("fraction %v: id %d has %d modalities, and Paired says %v", fraction, id, k, paired)
			}
			switch k {
			case 3:
				full++
			case 1:
				for i := range has {
					if has[i] {
						single[i]++
					}
				}
			default:
				t.Fatalf("fraction %v: id %d has %d modalities, want 1 or 3", fraction, id, k)
			}
		}
		return full, single
	}

	if full, _ := count(1, 5); full != n {
		t.Errorf("fraction 1: %d of %d fully paired", full, n)
	}
	if full, _ := count(1.5, 5); full != n {
		t.Errorf("fraction 1.5: %d of %d fully paired", full, n)
	}
	full, single := count(0, 5)
	if full != 0 {
		t.Errorf("fraction 0: %d fully paired", full)
	}
	for i, c := range single {
		// Binomial(n, 1/3): sd ≈ 82; allow 5 sd.
		if math.Abs(float64(c)-n/3.0) > 410 {
			t.Errorf("fraction 0: %s alone in %d of %d items, want about %d", mods[i], c, n, n/3)
		}
	}
	full, single = count(0.1, 5)
	if math.Abs(float64(full)-0.1*n) > 5*math.Sqrt(0.09*n) {
		t.Errorf("fraction 0.1: %d of %d fully paired", full, n)
	}
	for i, c := range single {
		if math.Abs(float64(c)-0.3*n) > 5*math.Sqrt(0.21*n) {
			t.Errorf("fraction 0.1: %s alone in %d of %d items, want about %d", mods[i], c, n, int(0.3*n))
		}
	}

	// Another seed, another mask.
	diff := 0
	for id := range uint64(1000) {
		if dataset.Present(id, dataset.Train, dataset.Vision, mods, 0.1, 5) != dataset.Present(id, dataset.Train, dataset.Vision, mods, 0.1, 6) {
			diff++
		}
	}
	if diff < 200 {
		t.Errorf("seeds 5 and 6 disagree on only %d of 1000 items", diff)
	}

	// Test items have everything; an unknown modality nothing.
	for id := uint64(dataset.TestIDBase); id < dataset.TestIDBase+1000; id++ {
		for _, m := range mods {
			if !dataset.Present(id, dataset.Test, m, mods, 0, 5) {
				t.Fatalf("test item %d lacks %s", id, m)
			}
		}
		if dataset.Present(id, dataset.Train, "smell", mods, 1, 5) {
			t.Fatal("a modality outside the list is present")
		}
	}
}

func TestSplit(t *testing.T) {
	for id, want := range map[uint64]string{0: dataset.Train, 59999: dataset.Train, 60000: dataset.Test, 69999: dataset.Test} {
		if got := dataset.Split(id); got != want {
			t.Errorf("Split(%d) = %s, want %s", id, got, want)
		}
	}
}
