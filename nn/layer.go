package nn

// Layer maps b rows of InSize() values to b rows of OutSize() values.
//
// Forward writes y (b×OutSize) from x (b×InSize). It keeps a reference to x,
// not a copy, plus whatever else Backward needs, so x must not change until
// Backward has run.
//
// Backward takes dy (b×OutSize), the gradient of the objective with respect
// to the latest Forward's y. It ADDS the parameter gradients to each
// Param.G and, if dx is not nil, OVERWRITES dx (b×InSize) with the gradient
// with respect to x. b must equal the latest Forward's b.
//
// Params returns the layer's learnable tensors, nil if none. The slice
// belongs to the layer: callers must not modify it.
//
// Forward and Backward panic with an "nn: " message when a slice length does not match b and
// the layer's sizes.
type Layer interface {
	InSize() int
	OutSize() int
	Forward(y, x []float32, b int)
	Backward(dx, dy []float32, b int)
	Params() []*Param
}
