package bus

import "fmt"

// SetMatrix makes t the rows×cols tensor over data (len rows*cols), like
// Matrix, but keeps t's shape storage: a sender that builds the same
// message step after step does so without allocating. It panics if the
// length disagrees, because that is a programming error of the caller.
func (t *Tensor) SetMatrix(rows, cols int, data []float32) {
	if len(data) != rows*cols {
		panic(fmt.Sprintf("bus: SetMatrix %d×%d with %d elements", rows, cols, len(data)))
	}
	t.Shape = append(t.Shape[:0], rows, cols)
	t.Data = data
}

// SetVector makes t the one-dimensional tensor over data, like Vector, but
// keeps t's shape storage.
func (t *Tensor) SetVector(data []float32) {
	t.Shape = append(t.Shape[:0], len(data))
	t.Data = data
}
