package mvae_test

import (
	"testing"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/modules/mvae"
)

// TestPairingKeeps: a fully paired run keeps every observation; a partial
// one keeps what dataset.Present draws, the same in every module.
func TestPairingKeeps(t *testing.T) {
	mods := []string{"vision", "touch"}
	partial := mvae.Pairing{Fraction: 0.3, Seed: 2, Modalities: mods}
	full := mvae.Pairing{Fraction: 1, Seed: 2, Modalities: mods}
	withheld := 0
	for id := uint64(0); id < 200; id++ {
		if !full.Keeps(id, "touch") {
			t.Fatalf("a fully paired run withholds item %d", id)
		}
		want := dataset.Present(id, dataset.Split(id), "touch", mods, 0.3, 2)
		if got := partial.Keeps(id, "touch"); got != want {
			t.Fatalf("item %d: Keeps %v, dataset.Present %v", id, got, want)
		}
		if !want {
			withheld++
		}
	}
	if withheld == 0 {
		t.Fatal("a 30% pairing withheld nothing of 200 items; the test would prove nothing")
	}
}
