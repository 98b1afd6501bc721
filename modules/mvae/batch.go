package mvae

import "github.com/serket-go/serket/module"

// Batch is a batch as the encoder sees it.
type Batch interface {
	module.Batch
	// Input is the encoder's input: Len()×In values, row-major.
	Input() []float32
}

// Rows is a batch of N observations of one width, row-major in X: the
// batch of a modality whose observation is a vector of numbers, such as
// audio's features, that the encoder reads and the likelihood scores as
// they are.
type Rows struct {
	N int
	X []float32
}

var _ module.Picker = (*Rows)(nil)

// Len implements module.Batch.
func (x *Rows) Len() int { return x.N }

// Input implements Batch: X.
func (x *Rows) Input() []float32 { return x.X }

// Pick implements module.Picker.
func (x *Rows) Pick(rows []int) module.Batch {
	n := width(x.X, x.N)
	out := &Rows{N: len(rows), X: make([]float32, len(rows)*n)}
	for i, r := range rows {
		copy(out.X[i*n:(i+1)*n], x.X[r*n:(r+1)*n])
	}
	return out
}
