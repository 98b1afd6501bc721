package module_test

import (
	"testing"

	"github.com/serket-go/serket/module"
)

// partial implements every optional interface but serves only some.
type partial struct {
	module.Learner
	module.Loader
	module.Parser
	serves map[module.Capability]bool
}

func (p partial) Serves(c module.Capability) bool { return p.serves[c] }

// whole implements Learner without being Partial.
type whole struct{ module.Learner }

// TestAsTakesAPartialModalityForWhatItServes: As finds an interface a
// modality implements, unless it is Partial and does not serve it; a
// modality that does not implement it never has it.
func TestAsTakesAPartialModalityForWhatItServes(t *testing.T) {
	p := partial{serves: map[module.Capability]bool{module.CanLearn: true, module.CanParse: false}}
	if _, ok := module.As[module.Learner](p); !ok {
		t.Error("a Partial modality serving learn is no Learner")
	}
	if _, ok := module.As[module.Parser](p); ok {
		t.Error("a Partial modality not serving parse is a Parser")
	}
	if _, ok := module.As[module.Loader](p); ok {
		t.Error("a Partial modality that does not say it serves load is a Loader")
	}
	if _, ok := module.As[module.Saver](p); ok {
		t.Error("a modality that does not implement Saver is one")
	}
	if _, ok := module.As[module.Learner](whole{}); !ok {
		t.Error("a modality implementing Learner, not Partial, is no Learner")
	}
	for _, c := range module.Capabilities {
		if c == "" {
			t.Error("a capability without a name")
		}
	}
}
