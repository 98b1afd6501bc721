package concept_test

import (
	"testing"

	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/module/priortest"
	"github.com/serket-go/serket/modules/concept"
)

// TestConformance runs the prior-module suite on the concept module. It
// learns from its first training step (Warmup 0), on a latent small
// enough for the suite to take a few seconds; its checkpoint ends with a
// CRC-32C, so a flipped byte must be refused.
func TestConformance(t *testing.T) {
	priortest.Run(t, priortest.Config{
		New: func() (module.PriorModel, error) {
			return concept.NewModule(concept.ModuleConfig{Mixture: concept.Config{D: 8}, Warmup: 0})
		},
		Checksummed: true,
	})
}
