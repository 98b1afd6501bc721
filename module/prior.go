package module

import (
	"fmt"

	"github.com/serket-go/serket/bus"
)

// A PriorModel is the model of a prior module: a module that observes no
// modality but the shared latent itself, and gives back the prior the
// integrator fuses every item with and takes its KL from, in place of
// N(0, I). SERKET's concept formation is one (a Gaussian mixture over the
// latent that sends each item the Gaussian of its category); an HMM over
// time or a topic model over discrete concepts would be others. Its
// inference is its own: the integrator only exchanges messages with it.
//
// RunPrior serves it. A PriorModel that is a Saver checkpoints like any
// module (the integrator's run saves, restores and rolls it back with the
// rest).
type PriorModel interface {
	// PriorSpec names the module and gives the latent size it works on.
	PriorSpec() PriorSpec
	// Prior writes into out[t] the prior of each of q.B items of term t,
	// given what the term's experts say of them, ev[t]. RunPrior sizes
	// out's slices (Mu and LogVar B×D, Concept and Prob B) and fills them
	// with N(0, I) and no category (−1, probability 0): a model writes
	// what it knows and must not resize them. With q.Learn the request
	// is a training step's, and the model may learn from it; otherwise it
	// must not change. An error fails the request (the integrator falls
	// back to N(0, I) for that step).
	Prior(out []PriorOut, ev []Evidence, q PriorQuery) error
}

// PriorSpec is a prior module's name and latent size.
type PriorSpec struct {
	Name   string
	Latent int
}

// Validate reports what is wrong with s.
func (s PriorSpec) Validate() error {
	switch {
	case !bus.ValidName(s.Name):
		return fmt.Errorf("prior module name %q: want lower-case letters, digits and '-', starting with a letter", s.Name)
	case s.Latent <= 0:
		return fmt.Errorf("prior module %s: latent size %d, want > 0", s.Name, s.Latent)
	}
	return nil
}

// Evidence is what one term's experts say of each item (B×D, row-major),
// in natural parameters: the precision (≥ 0; 0 where no expert saw the
// item) and the precision-weighted mean. The term's posterior under a
// prior p is p · N(Shift/Prec, 1/Prec).
type Evidence struct {
	Prec, Shift []float32
}

// PriorOut is a prior for one term's B items: a diagonal Gaussian each
// (Mu, LogVar B×D) and, for a model with categories, the category of each
// item (Concept, −1 for none) and its probability (Prob).
type PriorOut struct {
	Mu, LogVar []float32
	Concept    []int32
	Prob       []float32
}

// PriorQuery says what a Prior call is for.
type PriorQuery struct {
	B, D  int
	Step  uint64 // the training step, or the inference's number: seeds any randomness
	Learn bool   // a training step the model may learn from
}
