package nn

import "fmt"

// Sequential chains layers, each feeding the next. It owns the buffers
// between layers and grows them to the largest batch seen, so after the
// first call at a given batch size Forward and Backward do not allocate.
//
// Its Forward and Backward return its own buffers, so their signatures
// differ from Layer's; AsLayer gives the Layer view for nesting. A layer
// caches its latest Forward, so an instance must appear only once.
type Sequential struct {
	layers []Layer
	params []*Param
	maxB   int
	acts   [][]float32   // acts[i] is the output of layers[i], maxB rows
	grads  [2][]float32  // ping-pong gradient buffers, maxB × widest input
	width  int           // widest layer input
	layer  sequenceLayer // s as a Layer
}

// NewSequential returns the composition of layers, applied first to last.
// It panics if a layer's OutSize differs from the next one's InSize or if
// there are no layers.
func NewSequential(layers ...Layer) *Sequential {
	if len(layers) == 0 {
		panic("nn: NewSequential: no layers")
	}
	s := &Sequential{layers: append([]Layer(nil), layers...)}
	for i, l := range s.layers {
		if i > 0 && s.layers[i-1].OutSize() != l.InSize() {
			panic(fmt.Sprintf("nn: NewSequential: layer %d (%T) outputs %d, layer %d (%T) takes %d",
				i-1, s.layers[i-1], s.layers[i-1].OutSize(), i, l, l.InSize()))
		}
		s.width = max(s.width, l.InSize())
		s.params = append(s.params, l.Params()...)
	}
	s.acts = make([][]float32, len(s.layers))
	s.layer.s = s
	return s
}

// InSize returns the first layer's InSize.
func (s *Sequential) InSize() int { return s.layers[0].InSize() }

// OutSize returns the last layer's OutSize.
func (s *Sequential) OutSize() int { return s.layers[len(s.layers)-1].OutSize() }

// Layers returns the layers in order. The slice is a copy.
func (s *Sequential) Layers() []Layer { return append([]Layer(nil), s.layers...) }

// Params returns the parameters of every layer in order. The slice belongs
// to s and must not be modified; calling Params does not allocate.
func (s *Sequential) Params() []*Param { return s.params }

// reserve grows the buffers to hold b rows.
func (s *Sequential) reserve(b int) {
	if b <= s.maxB {
		return
	}
	for i, l := range s.layers {
		s.acts[i] = make([]float32, b*l.OutSize())
	}
	s.grads[0] = make([]float32, b*s.width)
	s.grads[1] = make([]float32, b*s.width)
	s.maxB = b
}

// Forward runs the layers on x (b×InSize) and returns the output
// (b×OutSize). The result is Sequential's own buffer, valid until the next
// Forward; as with any Layer, x must not change before Backward.
func (s *Sequential) Forward(x []float32, b int) []float32 {
	checkBatch("Sequential.Forward", b)
	s.reserve(b)
	y := s.acts[len(s.layers)-1][:b*s.OutSize()]
	s.forward(y, x, b)
	return y
}

// Backward back-propagates dy (b×OutSize), the gradient with respect to the
// latest Forward's output: every layer adds its parameter gradients to G.
// If needDX it returns the gradient with respect to x in Sequential's own
// buffer, valid until the next Backward; otherwise it returns nil and the
// first layer skips computing it.
func (s *Sequential) Backward(dy []float32, b int, needDX bool) []float32 {
	checkBatch("Sequential.Backward", b)
	s.reserve(b)
	var dx []float32
	if needDX {
		dx = s.grads[0][:b*s.InSize()]
	}
	s.backward(dx, dy, b)
	return dx
}

// AsLayer returns s as a Layer so that sequences nest: its Forward(y, x, b)
// and Backward(dx, dy, b) run s with the last layer writing straight into y
// and the first straight into dx.
func (s *Sequential) AsLayer() Layer { return &s.layer }

func (s *Sequential) forward(y, x []float32, b int) {
	in := x
	last := len(s.layers) - 1
	for i, l := range s.layers {
		out := y
		if i < last {
			out = s.acts[i][:b*l.OutSize()]
		}
		l.Forward(out, in, b)
		in = out
	}
}

// backward runs the layers in reverse; layer i writes its dx into
// grads[i%2], which is never the buffer holding its dy.
func (s *Sequential) backward(dx, dy []float32, b int) {
	g := dy
	for i := len(s.layers) - 1; i >= 0; i-- {
		l := s.layers[i]
		d := dx
		if i > 0 {
			d = s.grads[i%2][:b*l.InSize()]
		}
		l.Backward(d, g, b)
		g = d
	}
}

// sequenceLayer adapts a Sequential to Layer.
type sequenceLayer struct{ s *Sequential }

var _ Layer = (*sequenceLayer)(nil)

func (l *sequenceLayer) InSize() int      { return l.s.InSize() }
func (l *sequenceLayer) OutSize() int     { return l.s.OutSize() }
func (l *sequenceLayer) Params() []*Param { return l.s.Params() }

func (l *sequenceLayer) Forward(y, x []float32, b int) {
	checkBatch("Sequential.Forward", b)
	checkLen("Sequential.Forward", "y", y, b*l.s.OutSize())
	l.s.reserve(b)
	l.s.forward(y, x, b)
}

func (l *sequenceLayer) Backward(dx, dy []float32, b int) {
	checkBatch("Sequential.Backward", b)
	if dx != nil {
		checkLen("Sequential.Backward", "dx", dx, b*l.s.InSize())
	}
	l.s.reserve(b)
	l.s.backward(dx, dy, b)
}
