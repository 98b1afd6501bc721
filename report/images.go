package report

import (
	"fmt"
	"image"
	"image/color"
	"math"
)

// Sep is the width in pixels of the white separator ImageGrid leaves
// between cells.
const Sep = 2

// sepColor is the colour of ImageGrid's separators and empty cells.
var sepColor = color.RGBA{0xff, 0xff, 0xff, 0xff}

// AutoScale returns the integer upscaling factor ImageGrid uses when asked
// for scale 0: the least one that shows an image's shorter side at 84
// pixels or more (3 for 28×28 images), at most 8, at least 1.
func AutoScale(w, h int) int {
	s := min(w, h)
	if s <= 0 {
		return 1
	}
	return max(1, min(8, (84+s-1)/s))
}

// ImageGrid tiles images into one picture: cells[i][j] goes to row i,
// column j, each pixel upscaled to scale×scale pixels (nearest neighbour;
// scale ≤ 0 picks AutoScale of the largest image), with Sep pixels of
// white between rows and columns and none around the outside.
//
// Every cell is as large as the largest image; a smaller image is centred
// in its cell, and nil images and the missing cells of short rows are left
// blank. So for R rows, C = the longest row's length, and images of at most
// w×h pixels, the result is C·w·scale + (C−1)·Sep pixels wide and
// R·h·scale + (R−1)·Sep high. With no image at all it is 0×0.
func ImageGrid(cells [][]image.Image, scale int) *image.RGBA {
	var w, h, nc int
	for _, row := range cells {
		nc = max(nc, len(row))
		for _, im := range row {
			if im != nil {
				b := im.Bounds()
				w, h = max(w, b.Dx()), max(h, b.Dy())
			}
		}
	}
	nr := len(cells)
	if w == 0 || h == 0 || nc == 0 {
		return image.NewRGBA(image.Rectangle{})
	}
	if scale <= 0 {
		scale = AutoScale(w, h)
	}
	cw, ch := w*scale, h*scale
	out := image.NewRGBA(image.Rect(0, 0, nc*cw+(nc-1)*Sep, nr*ch+(nr-1)*Sep))
	bg := sepColor
	for i := 0; i < len(out.Pix); i += 4 {
		out.Pix[i], out.Pix[i+1], out.Pix[i+2], out.Pix[i+3] = bg.R, bg.G, bg.B, bg.A
	}
	for i, row := range cells {
		for j, im := range row {
			if im == nil {
				continue
			}
			b := im.Bounds()
			x0 := j*(cw+Sep) + (cw-b.Dx()*scale)/2
			y0 := i*(ch+Sep) + (ch-b.Dy()*scale)/2
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					c := color.RGBAModel.Convert(im.At(x, y)).(color.RGBA)
					if c.A != 0xff { // composite over the background
						a := uint32(c.A)
						c = color.RGBA{
							R: uint8(uint32(c.R) + uint32(bg.R)*(0xff-a)/0xff),
							G: uint8(uint32(c.G) + uint32(bg.G)*(0xff-a)/0xff),
							B: uint8(uint32(c.B) + uint32(bg.B)*(0xff-a)/0xff),
							A: 0xff,
						}
					}
					px, py := x0+(x-b.Min.X)*scale, y0+(y-b.Min.Y)*scale
					for dy := range scale {
						o := out.PixOffset(px, py+dy)
						for range scale {
							out.Pix[o], out.Pix[o+1], out.Pix[o+2], out.Pix[o+3] = c.R, c.G, c.B, c.A
							o += 4
						}
					}
				}
			}
		}
	}
	return out
}

// GrayImage turns w×h intensities in [0, 1], row-major (as the vision
// module's images are), into a grey image: 0 black, 1 white. Values are
// clipped to [0, 1]; NaN becomes 0.
func GrayImage(pix []float32, w, h int) (*image.Gray, error) {
	if w <= 0 || h <= 0 || len(pix) != w*h {
		return nil, fmt.Errorf("report: GrayImage: %d values for a %d×%d image", len(pix), w, h)
	}
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i, v := range pix {
		x := float64(v)
		if math.IsNaN(x) {
			x = 0
		}
		img.Pix[i] = uint8(math.Round(255 * math.Max(0, math.Min(1, x))))
	}
	return img, nil
}

// SpectrogramImage draws frames×mels features laid out frame-major (the
// mels values of frame 0, then frame 1, …: dataset/speech's layout) as a
// picture with time running left to right and the lowest mel band at the
// bottom, coloured with Viridis from the smallest finite value (dark) to
// the largest (yellow). NaN and infinite values are grey. The picture is
// frames pixels wide and mels high.
func SpectrogramImage(feat []float32, frames, mels int) (*image.RGBA, error) {
	if frames <= 0 || mels <= 0 || len(feat) != frames*mels {
		return nil, fmt.Errorf("report: SpectrogramImage: %d values for %d frames × %d mels", len(feat), frames, mels)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range feat {
		if x := float64(v); finite(x) {
			lo, hi = math.Min(lo, x), math.Max(hi, x)
		}
	}
	if !(lo < hi) { // constant or nothing finite
		lo, hi = lo-0.5, lo+0.5
		if math.IsInf(lo, 0) {
			lo, hi = 0, 1
		}
	}
	pal := Viridis(lo, hi).Palette(256).Colors()
	img := image.NewRGBA(image.Rect(0, 0, frames, mels))
	for t := range frames {
		for m := range mels {
			x := float64(feat[t*mels+m])
			var c color.Color = color.Gray{0xb0}
			if finite(x) {
				c = pal[int(math.Round((x-lo)/(hi-lo)*255))]
			}
			img.Set(t, mels-1-m, c)
		}
	}
	return img, nil
}
