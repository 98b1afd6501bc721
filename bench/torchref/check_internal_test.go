package torchref

import (
	"bytes"
	"slices"
	"testing"

	"codeberg.org/sbinet/npyio"
)

// TestNPYBytes: the arrays ExportStep writes read back, values and shape,
// with npyio (NumPy's format, which bench/torch_check.py loads), their
// data 64-aligned as the format asks.
func TestNPYBytes(t *testing.T) {
	t.Run("float32 matrix", func(t *testing.T) {
		roundTrip(t, "<f4", []int{2, 3}, []float32{1, -2.5, 3, 4e-8, 5, 6}, 4)
	})
	t.Run("int32 vector", func(t *testing.T) { roundTrip(t, "<i4", []int{3}, []int32{7, -1, 0}, 4) })
	t.Run("uint8 mask", func(t *testing.T) { roundTrip(t, "|u1", []int{4}, []uint8{1, 0, 1, 1}, 1) })
}

func roundTrip[T comparable](t *testing.T, descr string, shape []int, arr []T, size int) {
	t.Helper()
	b := npyBytes(descr, shape, arr)
	if start := len(b) - size*len(arr); start%64 != 0 {
		t.Errorf("the data starts at byte %d, not 64-aligned", start)
	}
	r, err := npyio.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Header.Descr.Shape, shape) {
		t.Errorf("shape %v, want %v", r.Header.Descr.Shape, shape)
	}
	var got []T
	if err := r.Read(&got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, arr) {
		t.Errorf("read %v, want %v", got, arr)
	}
}
