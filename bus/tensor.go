package bus

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// Tensor is a dense row-major float32 array. On the wire it is a two-element
// msgpack array: the shape, then the elements as little-endian float32 bytes.
//
// The zero Tensor is empty (no shape, no data) and encodes as such.
type Tensor struct {
	Shape []int
	Data  []float32
}

// Matrix returns a rows×cols tensor that uses data (len rows*cols) as its
// elements without copying. It panics if the length disagrees, because that is
// a programming error of the caller.
func Matrix(rows, cols int, data []float32) Tensor {
	if len(data) != rows*cols {
		panic(fmt.Sprintf("bus: Matrix %d×%d with %d elements", rows, cols, len(data)))
	}
	return Tensor{Shape: []int{rows, cols}, Data: data}
}

// Vector returns a one-dimensional tensor over data without copying.
func Vector(data []float32) Tensor { return Tensor{Shape: []int{len(data)}, Data: data} }

// Rows is the first dimension (0 for an empty tensor).
func (t Tensor) Rows() int {
	if len(t.Shape) == 0 {
		return 0
	}
	return t.Shape[0]
}

// Cols is the product of every dimension after the first (1 for a vector,
// 0 for an empty tensor).
func (t Tensor) Cols() int {
	if len(t.Shape) == 0 {
		return 0
	}
	n := 1
	for _, d := range t.Shape[1:] {
		n *= d
	}
	return n
}

// Empty reports whether the tensor has no shape.
func (t Tensor) Empty() bool { return len(t.Shape) == 0 }

// check verifies that shape and data agree and every element is finite.
func (t Tensor) check() error {
	n := 1
	for _, d := range t.Shape {
		if d < 0 || d > MaxElements {
			return fmt.Errorf("%w: dimension %d in shape %v", ErrShape, d, t.Shape)
		}
		n *= d
		if n > MaxElements {
			return fmt.Errorf("%w: shape %v has more than %d elements", ErrTooLarge, t.Shape, MaxElements)
		}
	}
	if len(t.Shape) == 0 {
		n = 0
	}
	if n != len(t.Data) {
		return fmt.Errorf("%w: shape %v needs %d elements, got %d", ErrShape, t.Shape, n, len(t.Data))
	}
	// Finite means an exponent that is not all ones; testing the bits of
	// every element, and looking for the culprit only when one fails,
	// keeps this at memory speed.
	var bad uint32
	for _, v := range t.Data {
		if math.Float32bits(v)&0x7f800000 == 0x7f800000 {
			bad = 1
			break
		}
	}
	if bad != 0 {
		for i, v := range t.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("%w: element %d is %v", ErrNotFinite, i, v)
			}
		}
	}
	return nil
}

// is2D checks that t is rows×cols; a zero rows or cols is not checked.
func (t Tensor) is2D(rows, cols int) error {
	if len(t.Shape) != 2 {
		return fmt.Errorf("%w: want a 2-D tensor, got shape %v", ErrShape, t.Shape)
	}
	if rows > 0 && t.Shape[0] != rows {
		return fmt.Errorf("%w: shape %v has %d rows, want %d (the batch size)", ErrShape, t.Shape, t.Shape[0], rows)
	}
	if cols > 0 && t.Shape[1] != cols {
		return fmt.Errorf("%w: shape %v has %d columns, want %d (the latent size)", ErrShape, t.Shape, t.Shape[1], cols)
	}
	return nil
}

var _ msgpack.CustomEncoder = (*Tensor)(nil)
var _ msgpack.CustomDecoder = (*Tensor)(nil)

// EncodeMsgpack writes the tensor as [shape, little-endian float32 bytes].
func (t *Tensor) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeArrayLen(2); err != nil {
		return err
	}
	if err := enc.EncodeArrayLen(len(t.Shape)); err != nil {
		return err
	}
	for _, d := range t.Shape {
		if err := enc.EncodeInt(int64(d)); err != nil {
			return err
		}
	}
	if err := enc.EncodeBytesLen(4 * len(t.Data)); err != nil {
		return err
	}
	if len(t.Data) == 0 {
		return nil
	}
	if littleEndian { // the elements' memory is their wire form: no copy
		_, err := enc.Writer().Write(unsafe.Slice((*byte)(unsafe.Pointer(&t.Data[0])), 4*len(t.Data)))
		return err
	}
	var chunk [4096]byte
	for data := t.Data; len(data) > 0; {
		n := min(len(data), len(chunk)/4)
		for i, v := range data[:n] {
			binary.LittleEndian.PutUint32(chunk[4*i:], math.Float32bits(v))
		}
		if _, err := enc.Writer().Write(chunk[:4*n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// littleEndian is whether float32s in memory are laid out as on the wire.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// DecodeMsgpack reads what EncodeMsgpack wrote. It checks the structure
// only; shape against data length and finiteness are checked by Unmarshal,
// which knows the field name.
func (t *Tensor) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n == -1 { // nil
		*t = Tensor{}
		return nil
	}
	if n != 2 {
		return fmt.Errorf("%w: tensor is an array of %d items, want 2 (shape, data)", ErrMalformed, n)
	}
	nd, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if nd > MaxRank {
		return fmt.Errorf("%w: tensor rank %d exceeds %d", ErrShape, nd, MaxRank)
	}
	// Storage left in t (UnmarshalReuse keeps it) is reused when it is
	// large enough.
	shape, data := t.Shape, t.Data
	t.Shape, t.Data = nil, nil
	if nd > 0 {
		t.Shape = growInts(shape, nd)
	}
	for i := range t.Shape {
		d, err := dec.DecodeInt64()
		if err == nil && (d < 0 || d > MaxElements) {
			err = fmt.Errorf("%w: dimension %d out of range", ErrShape, d)
		}
		if err != nil {
			t.Shape = t.Shape[:i] // reused storage beyond must not show
			return err
		}
		t.Shape[i] = int(d)
	}
	n, err = dec.DecodeBytesLen()
	if err != nil {
		return err
	}
	if n <= 0 { // -1 is nil
		return nil
	}
	if n%4 != 0 {
		return fmt.Errorf("%w: tensor data is %d bytes, not a multiple of 4", ErrMalformed, n)
	}
	if n/4 > MaxElements { // the scan before decoding bounds it too
		return fmt.Errorf("%w: tensor data of %d bytes", ErrTooLarge, n)
	}
	if cap(data) >= n/4 {
		t.Data = data[:n/4]
	} else {
		t.Data = make([]float32, n/4)
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&t.Data[0])), n)
	if err := dec.ReadFull(raw); err != nil { // straight into the elements
		t.Data = t.Data[:0]
		return err
	}
	if !littleEndian {
		for i := range t.Data {
			t.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	}
	return nil
}

func growInts(s []int, n int) []int {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]int, n)
}
