package bus_test

import (
	"testing"

	"github.com/serket-go/serket/bus"
)

func TestSetMatrixKeepsShapeStorage(t *testing.T) {
	var m bus.Tensor
	a := make([]float32, 6)
	m.SetMatrix(2, 3, a)
	if m.Rows() != 2 || m.Cols() != 3 || &m.Data[0] != &a[0] {
		t.Fatalf("SetMatrix(2, 3): shape %v, data shared %v", m.Shape, &m.Data[0] == &a[0])
	}
	b := make([]float32, 4)
	if n := testing.AllocsPerRun(100, func() { m.SetMatrix(4, 1, b); m.SetVector(a) }); n != 0 {
		t.Errorf("SetMatrix and SetVector on a used tensor: %v allocations, want 0", n)
	}
	m.SetVector(b)
	if len(m.Shape) != 1 || m.Shape[0] != 4 {
		t.Errorf("SetVector of 4: shape %v", m.Shape)
	}
	defer func() {
		if recover() == nil {
			t.Error("SetMatrix(3, 3) of 4 elements did not panic")
		}
	}()
	m.SetMatrix(3, 3, b)
}
