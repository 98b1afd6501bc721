package nn

import (
	"fmt"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// Convolutions lower to one matrix product per call: im2col lays the k×k
// patches of all b images side by side as columns, (C·k·k) × (b·P) with P
// output positions per image, so a single Gemm does the batch and the
// channel-major images only need a cheap reorder around it.

// convGeom describes a convolution of a c×h×w image by k×k kernels with the
// given stride and zero padding, producing oh×ow positions.
type convGeom struct {
	c, h, w, k, stride, pad, oh, ow int
}

func newConvGeom(op string, c, h, w, k, stride, pad int) convGeom {
	mustPositive(op, "channels, height, width, kernel, stride", c, h, w, k, stride)
	if pad < 0 {
		panic(fmt.Sprintf("nn: %s: negative padding %d", op, pad))
	}
	g := convGeom{c: c, h: h, w: w, k: k, stride: stride, pad: pad}
	if h+2*pad < k || w+2*pad < k {
		panic(fmt.Sprintf("nn: %s: kernel %d larger than padded input %d×%d", op, k, h+2*pad, w+2*pad))
	}
	g.oh = (h+2*pad-k)/stride + 1
	g.ow = (w+2*pad-k)/stride + 1
	return g
}

// span returns the output columns [lo, hi) whose input column
// ow·stride − pad + kj falls inside the image.
func (g *convGeom) span(kj int) (lo, hi int) {
	if d := g.pad - kj; d > 0 {
		lo = (d + g.stride - 1) / g.stride
	}
	if n := g.w - 1 + g.pad - kj; n >= 0 {
		hi = n/g.stride + 1
	}
	lo = min(lo, g.ow)
	hi = max(min(hi, g.ow), lo)
	return lo, hi
}

// im2col writes the patches of img (c×h×w) into columns off … off+oh·ow−1
// of col, a (c·k·k)-row matrix with stride ld. Row (ci·k+ki)·k+kj holds the
// pixel at (ci, oh·stride−pad+ki, ow·stride−pad+kj), or 0 in the padding.
func im2col(col []float32, ld, off int, img []float32, g *convGeom) {
	hw, p := g.h*g.w, g.oh*g.ow
	for c := 0; c < g.c; c++ {
		plane := img[c*hw : (c+1)*hw]
		for ki := 0; ki < g.k; ki++ {
			for kj := 0; kj < g.k; kj++ {
				r := (c*g.k+ki)*g.k + kj
				row := col[r*ld+off : r*ld+off+p]
				lo, hi := g.span(kj)
				for oh := 0; oh < g.oh; oh++ {
					dst := row[oh*g.ow : (oh+1)*g.ow]
					ih := oh*g.stride - g.pad + ki
					if ih < 0 || ih >= g.h {
						clear(dst)
						continue
					}
					src := plane[ih*g.w : (ih+1)*g.w]
					clear(dst[:lo])
					clear(dst[hi:])
					iw := lo*g.stride - g.pad + kj
					if g.stride == 1 {
						copy(dst[lo:hi], src[iw:])
						continue
					}
					for ow := lo; ow < hi; ow++ {
						dst[ow] = src[iw]
						iw += g.stride
					}
				}
			}
		}
	}
}

// col2im is the adjoint of im2col: it adds every entry of columns
// off … off+oh·ow−1 of col back onto the pixel of img it was copied from.
func col2im(img []float32, col []float32, ld, off int, g *convGeom) {
	hw, p := g.h*g.w, g.oh*g.ow
	for c := 0; c < g.c; c++ {
		plane := img[c*hw : (c+1)*hw]
		for ki := 0; ki < g.k; ki++ {
			for kj := 0; kj < g.k; kj++ {
				r := (c*g.k+ki)*g.k + kj
				row := col[r*ld+off : r*ld+off+p]
				lo, hi := g.span(kj)
				if lo == hi {
					continue
				}
				for oh := 0; oh < g.oh; oh++ {
					ih := oh*g.stride - g.pad + ki
					if ih < 0 || ih >= g.h {
						continue
					}
					src := row[oh*g.ow+lo : oh*g.ow+hi]
					iw := lo*g.stride - g.pad + kj
					if g.stride == 1 {
						dst := plane[ih*g.w+iw : ih*g.w+iw+len(src)]
						for i, v := range src {
							dst[i] += v
						}
						continue
					}
					dst := plane[ih*g.w : (ih+1)*g.w]
					for _, v := range src {
						dst[iw] += v
						iw += g.stride
					}
				}
			}
		}
	}
}

// toChannelMajor reorders b images of c×p (img) into the c × (b·p) matrix m:
// m[ci][s·p+j] = img[s][ci][j].
func toChannelMajor(m, img []float32, b, c, p int) {
	ld := b * p
	for s := 0; s < b; s++ {
		for ci := 0; ci < c; ci++ {
			copy(m[ci*ld+s*p:ci*ld+s*p+p], img[(s*c+ci)*p:(s*c+ci+1)*p])
		}
	}
}

// Conv2D is a 2-D convolution (cross-correlation, as in PyTorch's nn.Conv2d)
// of inC×inH×inW images into outC×outH×outW images, each row of x and y one
// image flattened channel-major.
type Conv2D struct {
	Weight *Param // shape [outC inC k k]
	Bias   *Param // shape [outC]

	params []*Param
	g      convGeom
	outC   int
	x      []float32
	b      int
	col    []float32 // (inC·k·k) × (b·P) patches of the latest Forward
	dcol   []float32 // gradient of col
	tmp    []float32 // outC × (b·P) product, channel-major across the batch
}

var _ Layer = (*Conv2D)(nil)

// NewConv2D returns a convolution with outC kernels of size k×k over
// inC×inH×inW images, with the given stride and zero padding; the output is
// outC×outH×outW with outH = (inH+2·pad−k)/stride + 1 (rounded down) and
// likewise outW. Parameters are named name+".W" and name+".b" and drawn
// from U(−1/√(inC·k·k), 1/√(inC·k·k)) as PyTorch's default.
func NewConv2D(name string, inC, inH, inW, outC, k, stride, pad int, rng *rand.Rand) *Conv2D {
	g := newConvGeom("NewConv2D", inC, inH, inW, k, stride, pad)
	mustPositive("NewConv2D", "outC", outC)
	bound := fanInBound(inC * k * k)
	l := &Conv2D{
		Weight: newParam(name+".W", bound, rng, outC, inC, k, k),
		Bias:   newParam(name+".b", bound, rng, outC),
		g:      g,
		outC:   outC,
		b:      -1,
	}
	l.params = []*Param{l.Weight, l.Bias}
	return l
}

// InSize returns inC·inH·inW.
func (l *Conv2D) InSize() int { return l.g.c * l.g.h * l.g.w }

// OutSize returns outC·outH·outW.
func (l *Conv2D) OutSize() int { return l.outC * l.g.oh * l.g.ow }

// OutShape returns the channels, height and width of an output image.
func (l *Conv2D) OutShape() (c, h, w int) { return l.outC, l.g.oh, l.g.ow }

// Params returns the weight and the bias. The slice belongs to the layer.
func (l *Conv2D) Params() []*Param { return l.params }

// Forward writes the convolution of each row of x into y.
func (l *Conv2D) Forward(y, x []float32, b int) {
	checkBatch("Conv2D.Forward", b)
	in, out := l.InSize(), l.OutSize()
	checkLen("Conv2D.Forward", "x", x, b*in)
	checkLen("Conv2D.Forward", "y", y, b*out)
	l.x, l.b = x, b
	if b == 0 {
		return
	}
	g := &l.g
	p, ckk := g.oh*g.ow, g.c*g.k*g.k
	ld := b * p
	l.col = grow(l.col, ckk*ld)
	for s := 0; s < b; s++ {
		im2col(l.col, ld, s*p, x[s*in:(s+1)*in], g)
	}
	l.tmp = grow(l.tmp, l.outC*ld)
	gemm(blas.NoTrans, blas.NoTrans, 1,
		blas32.General{Rows: l.outC, Cols: ckk, Stride: ckk, Data: l.Weight.W},
		blas32.General{Rows: ckk, Cols: ld, Stride: ld, Data: l.col},
		0, blas32.General{Rows: l.outC, Cols: ld, Stride: ld, Data: l.tmp})
	bias := l.Bias.W[:l.outC]
	for s := 0; s < b; s++ {
		for c, bc := range bias {
			dst := y[(s*l.outC+c)*p : (s*l.outC+c+1)*p]
			src := l.tmp[c*ld+s*p : c*ld+s*p+p]
			for i, v := range src {
				dst[i] = v + bc
			}
		}
	}
}

// Backward adds the weight and bias gradients and writes dx if not nil.
func (l *Conv2D) Backward(dx, dy []float32, b int) {
	checkBackward("Conv2D.Backward", l.b, b)
	in, out := l.InSize(), l.OutSize()
	checkLen("Conv2D.Backward", "dy", dy, b*out)
	if dx != nil {
		checkLen("Conv2D.Backward", "dx", dx, b*in)
	}
	if b == 0 {
		return
	}
	g := &l.g
	p, ckk := g.oh*g.ow, g.c*g.k*g.k
	ld := b * p
	l.tmp = grow(l.tmp, l.outC*ld)
	toChannelMajor(l.tmp, dy, b, l.outC, p)
	gb := l.Bias.G[:l.outC]
	for c := range gb {
		var sum float32
		for _, v := range l.tmp[c*ld : (c+1)*ld] {
			sum += v
		}
		gb[c] += sum
	}
	DY := blas32.General{Rows: l.outC, Cols: ld, Stride: ld, Data: l.tmp}
	gemm(blas.NoTrans, blas.Trans, 1, DY,
		blas32.General{Rows: ckk, Cols: ld, Stride: ld, Data: l.col},
		1, blas32.General{Rows: l.outC, Cols: ckk, Stride: ckk, Data: l.Weight.G})
	if dx == nil {
		return
	}
	l.dcol = grow(l.dcol, ckk*ld)
	gemm(blas.Trans, blas.NoTrans, 1,
		blas32.General{Rows: l.outC, Cols: ckk, Stride: ckk, Data: l.Weight.W},
		DY, 0, blas32.General{Rows: ckk, Cols: ld, Stride: ld, Data: l.dcol})
	clear(dx)
	for s := 0; s < b; s++ {
		col2im(dx[s*in:(s+1)*in], l.dcol, ld, s*p, g)
	}
}

// ConvTranspose2D is the transposed convolution of PyTorch's
// nn.ConvTranspose2d with output_padding 0: the adjoint of a Conv2D from
// outC×outH×outW to inC×inH×inW with the same k, stride and pad, plus a bias.
// The output is outC×outH×outW with outH = (inH−1)·stride − 2·pad + k.
type ConvTranspose2D struct {
	Weight *Param // shape [inC outC k k], as in PyTorch
	Bias   *Param // shape [outC]

	params []*Param
	g      convGeom // the adjoint convolution: image outC×outH×outW, positions inH×inW
	inC    int
	x      []float32
	b      int
	xt     []float32 // inC × (b·P) input of the latest Forward, channel-major
	col    []float32 // (outC·k·k) × (b·P) scratch
	dxt    []float32 // inC × (b·P) scratch
}

var _ Layer = (*ConvTranspose2D)(nil)

// NewConvTranspose2D returns a transposed convolution from inC×inH×inW to
// outC×outH×outW images, outH = (inH−1)·stride − 2·pad + k and likewise
// outW. Parameters are named name+".W" and name+".b" and drawn from
// U(−1/√(outC·k·k), 1/√(outC·k·k)): PyTorch takes the fan-in of a
// transposed convolution from dimension 1 of its [inC outC k k] weight.
func NewConvTranspose2D(name string, inC, inH, inW, outC, k, stride, pad int, rng *rand.Rand) *ConvTranspose2D {
	const op = "NewConvTranspose2D"
	mustPositive(op, "inC, inH, inW, outC, k, stride", inC, inH, inW, outC, k, stride)
	outH := (inH-1)*stride - 2*pad + k
	outW := (inW-1)*stride - 2*pad + k
	if outH <= 0 || outW <= 0 {
		panic(fmt.Sprintf("nn: %s: output size %d×%d is not positive", op, outH, outW))
	}
	g := newConvGeom(op, outC, outH, outW, k, stride, pad)
	if g.oh != inH || g.ow != inW {
		panic(fmt.Sprintf("nn: %s: internal error: adjoint geometry %d×%d, want %d×%d", op, g.oh, g.ow, inH, inW))
	}
	bound := fanInBound(outC * k * k)
	l := &ConvTranspose2D{
		Weight: newParam(name+".W", bound, rng, inC, outC, k, k),
		Bias:   newParam(name+".b", bound, rng, outC),
		g:      g,
		inC:    inC,
		b:      -1,
	}
	l.params = []*Param{l.Weight, l.Bias}
	return l
}

// InSize returns inC·inH·inW.
func (l *ConvTranspose2D) InSize() int { return l.inC * l.g.oh * l.g.ow }

// OutSize returns outC·outH·outW.
func (l *ConvTranspose2D) OutSize() int { return l.g.c * l.g.h * l.g.w }

// OutShape returns the channels, height and width of an output image.
func (l *ConvTranspose2D) OutShape() (c, h, w int) { return l.g.c, l.g.h, l.g.w }

// Params returns the weight and the bias. The slice belongs to the layer.
func (l *ConvTranspose2D) Params() []*Param { return l.params }

// Forward writes the transposed convolution of each row of x into y.
func (l *ConvTranspose2D) Forward(y, x []float32, b int) {
	checkBatch("ConvTranspose2D.Forward", b)
	in, out := l.InSize(), l.OutSize()
	checkLen("ConvTranspose2D.Forward", "x", x, b*in)
	checkLen("ConvTranspose2D.Forward", "y", y, b*out)
	l.x, l.b = x, b
	if b == 0 {
		return
	}
	g := &l.g
	p, ockk := g.oh*g.ow, g.c*g.k*g.k
	ld := b * p
	l.xt = grow(l.xt, l.inC*ld)
	toChannelMajor(l.xt, x, b, l.inC, p)
	l.col = grow(l.col, ockk*ld)
	gemm(blas.Trans, blas.NoTrans, 1,
		blas32.General{Rows: l.inC, Cols: ockk, Stride: ockk, Data: l.Weight.W},
		blas32.General{Rows: l.inC, Cols: ld, Stride: ld, Data: l.xt},
		0, blas32.General{Rows: ockk, Cols: ld, Stride: ld, Data: l.col})
	hw := g.h * g.w
	for s := 0; s < b; s++ {
		ys := y[s*out : (s+1)*out]
		for c, bc := range l.Bias.W[:g.c] {
			plane := ys[c*hw : (c+1)*hw]
			for i := range plane {
				plane[i] = bc
			}
		}
		col2im(ys, l.col, ld, s*p, g)
	}
}

// Backward adds the weight and bias gradients and writes dx if not nil.
func (l *ConvTranspose2D) Backward(dx, dy []float32, b int) {
	checkBackward("ConvTranspose2D.Backward", l.b, b)
	in, out := l.InSize(), l.OutSize()
	checkLen("ConvTranspose2D.Backward", "dy", dy, b*out)
	if dx != nil {
		checkLen("ConvTranspose2D.Backward", "dx", dx, b*in)
	}
	if b == 0 {
		return
	}
	g := &l.g
	p, ockk := g.oh*g.ow, g.c*g.k*g.k
	ld := b * p
	hw := g.h * g.w
	gb := l.Bias.G[:g.c]
	for s := 0; s < b; s++ {
		ys := dy[s*out : (s+1)*out]
		for c := range gb {
			var sum float32
			for _, v := range ys[c*hw : (c+1)*hw] {
				sum += v
			}
			gb[c] += sum
		}
	}
	l.col = grow(l.col, ockk*ld)
	for s := 0; s < b; s++ {
		im2col(l.col, ld, s*p, dy[s*out:(s+1)*out], g)
	}
	COL := blas32.General{Rows: ockk, Cols: ld, Stride: ld, Data: l.col}
	gemm(blas.NoTrans, blas.Trans, 1,
		blas32.General{Rows: l.inC, Cols: ld, Stride: ld, Data: l.xt},
		COL, 1, blas32.General{Rows: l.inC, Cols: ockk, Stride: ockk, Data: l.Weight.G})
	if dx == nil {
		return
	}
	l.dxt = grow(l.dxt, l.inC*ld)
	gemm(blas.NoTrans, blas.NoTrans, 1,
		blas32.General{Rows: l.inC, Cols: ockk, Stride: ockk, Data: l.Weight.W},
		COL, 0, blas32.General{Rows: l.inC, Cols: ld, Stride: ld, Data: l.dxt})
	for s := 0; s < b; s++ {
		for c := 0; c < l.inC; c++ {
			copy(dx[(s*l.inC+c)*p:(s*l.inC+c+1)*p], l.dxt[c*ld+s*p:c*ld+s*p+p])
		}
	}
}
