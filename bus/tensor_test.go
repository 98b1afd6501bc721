package bus_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/serket-go/serket/bus"
	"github.com/vmihailenco/msgpack/v5"
)

func TestMatrix(t *testing.T) {
	d := []float32{1, 2, 3, 4, 5, 6}
	m := bus.Matrix(2, 3, d)
	if !reflect.DeepEqual(m.Shape, []int{2, 3}) {
		t.Errorf("shape %v, want [2 3]", m.Shape)
	}
	d[0] = 9
	if m.Data[0] != 9 {
		t.Errorf("Matrix copied its data")
	}
}

func TestMatrixPanicsOnLengthMismatch(t *testing.T) {
	tests := []struct {
		name       string
		rows, cols int
		n          int
		wantPanic  bool
	}{
		{name: "right", rows: 2, cols: 3, n: 6},
		{name: "empty", rows: 0, cols: 3, n: 0},
		{name: "short", rows: 2, cols: 3, n: 5, wantPanic: true},
		{name: "long", rows: 2, cols: 3, n: 7, wantPanic: true},
		{name: "none for some", rows: 1, cols: 1, n: 0, wantPanic: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got any
			func() {
				defer func() { got = recover() }()
				bus.Matrix(tt.rows, tt.cols, make([]float32, tt.n))
			}()
			if (got != nil) != tt.wantPanic {
				t.Fatalf("panic = %v, want panic %v", got, tt.wantPanic)
			}
			if s, ok := got.(string); tt.wantPanic && (!ok || !strings.Contains(s, "bus: Matrix")) {
				t.Errorf("panic value %#v does not say what went wrong", got)
			}
		})
	}
}

func TestTensorDims(t *testing.T) {
	tests := []struct {
		name      string
		t         bus.Tensor
		wantRows  int
		wantCols  int
		wantEmpty bool
	}{
		{name: "zero", t: bus.Tensor{}, wantRows: 0, wantCols: 0, wantEmpty: true},
		{name: "vector", t: bus.Vector([]float32{1, 2, 3}), wantRows: 3, wantCols: 1},
		{name: "empty vector", t: bus.Vector(nil), wantRows: 0, wantCols: 1},
		{name: "matrix", t: mat(2, 3, 0, 1), wantRows: 2, wantCols: 3},
		{name: "no rows", t: bus.Matrix(0, 5, nil), wantRows: 0, wantCols: 5},
		{name: "3-D", t: bus.Tensor{Shape: []int{2, 3, 4}, Data: make([]float32, 24)}, wantRows: 2, wantCols: 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.t.Rows(); got != tt.wantRows {
				t.Errorf("Rows() = %d, want %d", got, tt.wantRows)
			}
			if got := tt.t.Cols(); got != tt.wantCols {
				t.Errorf("Cols() = %d, want %d", got, tt.wantCols)
			}
			if got := tt.t.Empty(); got != tt.wantEmpty {
				t.Errorf("Empty() = %v, want %v", got, tt.wantEmpty)
			}
		})
	}
}

// TestTensorCodec encodes and decodes tensors on their own, through msgpack.
func TestTensorCodec(t *testing.T) {
	tests := []struct {
		name     string
		t        bus.Tensor
		wantWire []byte // nil: not checked
	}{
		{name: "empty", t: bus.Tensor{}, wantWire: []byte{0x92, 0x90, 0xc4, 0x00}},
		{name: "scalar one", t: bus.Vector([]float32{1}), wantWire: []byte{0x92, 0x91, 0x01, 0xc4, 0x04, 0x00, 0x00, 0x80, 0x3f}},
		{name: "no rows", t: bus.Matrix(0, 3, nil), wantWire: []byte{0x92, 0x92, 0x00, 0x03, 0xc4, 0x00}},
		{name: "matrix", t: mat(2, 3, -1, 0.5)},
		{name: "4-D", t: bus.Tensor{Shape: []int{1, 2, 1, 2}, Data: []float32{1, 2, 3, 4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := msgpack.Marshal(&tt.t)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantWire != nil && !bytes.Equal(b, tt.wantWire) {
				t.Errorf("encoding %x, want %x", b, tt.wantWire)
			}
			var got bus.Tensor
			if err := msgpack.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.t) {
				t.Errorf("decoded %+v, want %+v", got, tt.t)
			}
		})
	}

	// A msgpack nil is the empty tensor.
	got := bus.Vector([]float32{1})
	if err := msgpack.Unmarshal([]byte{0xc0}, &got); err != nil || !got.Empty() || got.Data != nil {
		t.Errorf("nil decodes to %+v, %v; want the empty tensor", got, err)
	}
}

func TestTensorDecodeRefuses(t *testing.T) {
	tests := []struct {
		name    string
		wire    []byte
		wantErr error
	}{
		{name: "data of 5 bytes", wire: []byte{0x92, 0x91, 0x01, 0xc4, 0x05, 0, 0, 0x80, 0x3f, 0}, wantErr: bus.ErrMalformed},
		{name: "data of 3 bytes", wire: []byte{0x92, 0x91, 0x01, 0xc4, 0x03, 0, 0, 0x80}, wantErr: bus.ErrMalformed},
		{name: "one item", wire: []byte{0x91, 0x90}, wantErr: bus.ErrMalformed},
		{name: "three items", wire: []byte{0x93, 0x90, 0xc4, 0x00, 0x00}, wantErr: bus.ErrMalformed},
		{name: "rank 5", wire: []byte{0x92, 0x95, 1, 1, 1, 1, 1, 0xc4, 0x04, 0, 0, 0, 0}, wantErr: bus.ErrShape},
		{name: "negative dimension", wire: []byte{0x92, 0x91, 0xff, 0xc4, 0x00}, wantErr: bus.ErrShape},
		{name: "dimension over MaxElements", wire: []byte{0x92, 0x91, 0xce, 0x01, 0x00, 0x00, 0x01, 0xc4, 0x00}, wantErr: bus.ErrShape},
		{name: "truncated data", wire: []byte{0x92, 0x91, 0x01, 0xc4, 0x04, 0, 0}},
		{name: "not an array", wire: []byte{0xa1, 'x'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got bus.Tensor
			err := msgpack.Unmarshal(tt.wire, &got)
			if err == nil {
				t.Fatalf("decoded %+v, want an error", got)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestTensorNotWholeFloatsInMessage: a message whose tensor data is not a
// multiple of 4 bytes is refused by Unmarshal as malformed.
func TestTensorNotWholeFloatsInMessage(t *testing.T) {
	good := mustMarshal(t, &bus.DecodeRequest{Header: bus.Header{Sender: "integrator"}, Z: bus.Matrix(1, 1, []float32{1})})
	// Grow the bin8 of z from 4 to 5 bytes: …c4 04 00 00 80 3f → …c4 05 00 00 80 3f 00.
	i := bytes.LastIndex(good, []byte{0xc4, 0x04})
	if i < 0 {
		t.Fatalf("no bin8 of 4 bytes in %x", good)
	}
	bad := append(append(append([]byte{}, good[:i]...), 0xc4, 0x05), good[i+2:]...)
	bad = append(bad, 0x00)
	err := bus.Unmarshal(bad, &bus.DecodeRequest{}, bus.Expect{})
	checkDecodeError(t, err, bus.TypeDecodeRequest, bus.ErrMalformed, "", "integrator")
	if !strings.Contains(err.Error(), "multiple of 4") {
		t.Errorf("error %q does not say why", err)
	}
}
