// Package vision is the Fashion-MNIST image modality: 28×28 grey images,
// MVAE-style MLP encoder and decoder, and a Bernoulli likelihood on pixel
// intensities in [0, 1] (not binarised).
//
// It reads only its own shard (vision.shard of a prepared dataset), parses
// PNG and JPEG images of any size a person gives (converted to 28×28 grey,
// light objects on a dark background as in Fashion-MNIST), and renders a
// latent as a PNG of the decoder's mean.
package vision

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // register the decoders Parse accepts
	"image/png"
	"io"
	"math"
	"strings"

	"golang.org/x/image/draw"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/mvae"
)

// Side is the image side in pixels; Pixels = Side².
const (
	Side   = 28
	Pixels = Side * Side
)

// Config configures the modality.
type Config struct {
	Name   string // module name; default "vision"
	Net    mvae.Config
	Source *mvae.Source // its shard; nil for a module that only parses and renders
}

// Vision is the image modality: the networks' part is mvae.Modality's.
type Vision struct {
	*mvae.Modality[*Images]
	src   *mvae.Source
	spare mvae.Spare[Images] // the last step's batch, for LoadBatch to refill
}

var (
	_ module.Learner  = (*Vision)(nil)
	_ module.Loader   = (*Vision)(nil)
	_ module.Recycler = (*Vision)(nil)
	_ module.Parser   = (*Vision)(nil)
	_ module.Renderer = (*Vision)(nil)
	_ module.Saver    = (*Vision)(nil)
	_ module.Scorer   = (*Vision)(nil)
	_ module.Featurer = (*Vision)(nil)
	_ module.Picker   = (*Images)(nil)
)

// New returns the modality with fresh parameters.
func New(cfg Config) (*Vision, error) {
	cfg.Net.In, cfg.Net.Out = Pixels, Pixels
	m, err := mvae.NewModality[*Images](mvae.Parts{Kind: "vision", Name: cfg.Name, Net: cfg.Net, Likelihood: mvae.Bernoulli{}})
	if err != nil {
		return nil, err
	}
	return &Vision{Modality: m, src: cfg.Source}, nil
}

// Images is a batch of images: N×Pixels intensities in [0, 1], row-major.
type Images struct {
	N   int
	Pix []float32
}

// Len implements module.Batch.
func (x *Images) Len() int { return x.N }

// Input implements mvae.Batch: the pixels are the encoder's input, and
// what the Bernoulli likelihood scores.
func (x *Images) Input() []float32 { return x.Pix }

// Pick implements module.Picker.
func (x *Images) Pick(rows []int) module.Batch {
	out := &Images{N: len(rows), Pix: make([]float32, len(rows)*Pixels)}
	for i, r := range rows {
		copy(out.Pix[i*Pixels:(i+1)*Pixels], x.Pix[r*Pixels:(r+1)*Pixels])
	}
	return out
}

// intensity[p] is float32(p) / 255, looked up rather than divided per pixel.
var intensity = func() (t [256]float32) {
	for p := range t {
		t[p] = float32(p) / 255
	}
	return t
}()

// LoadBatch implements module.Loader from vision.shard (one uint8 image per item).
func (v *Vision) LoadBatch(ids []uint64) (module.Batch, []bool, error) {
	im := v.spare.Take()
	if im == nil {
		im = &Images{}
	}
	im.N, im.Pix = len(ids), mvae.Resize(im.Pix, len(ids)*Pixels)
	present, err := v.src.Lookup(ids, func(i int, rec []byte) error {
		row := im.Pix[i*Pixels : (i+1)*Pixels]
		for j, p := range rec[:Pixels] {
			row[j] = intensity[p]
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("vision: %w", err)
	}
	mvae.ClearAbsent(im.Pix, present, Pixels)
	return im, present, nil
}

// Recycle implements module.Recycler.
func (v *Vision) Recycle(x module.Batch) {
	if im, ok := x.(*Images); ok {
		v.spare.Keep(im)
	}
}

// Parse implements module.Parser: PNG or JPEG images of up to
// MaxImageBytes and MaxImagePixels.
func (v *Vision) Parse(raw []bus.Payload) (module.Batch, error) {
	im := &Images{N: len(raw), Pix: make([]float32, len(raw)*Pixels)}
	for i, p := range raw {
		if !strings.HasPrefix(p.Type, "image/") && p.Type != "application/octet-stream" {
			return nil, fmt.Errorf("observation %d: content type %q, want an image (image/png or image/jpeg)", i, p.Type)
		}
		if err := toGrey28(im.Pix[i*Pixels:(i+1)*Pixels], p.Data); err != nil {
			return nil, fmt.Errorf("observation %d: %w", i, err)
		}
	}
	return im, nil
}

// Bounds of the images Parse accepts. MaxImageBytes is what one inference
// request carries (a photo travels whole and is fitted here);
// MaxImagePixels (width × height) bounds what decoding it allocates.
const (
	MaxImageBytes  = bus.MaxObservationBytes
	MaxImagePixels = 50_000_000
)

// ToGrey28 decodes a PNG or JPEG image and writes it into dst (Pixels
// intensities in [0, 1]) the way Fashion-MNIST looks: grey, the object
// fitted into 28×28 keeping its aspect ratio, a light object on a dark
// background (an image whose border is mostly light is inverted).
// An image of more than MaxImageBytes is refused before it is read whole.
func ToGrey28(dst []float32, r io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxImageBytes+1))
	if err != nil {
		return err
	}
	return toGrey28(dst, data)
}

func toGrey28(dst []float32, data []byte) error {
	if len(data) > MaxImageBytes {
		return fmt.Errorf("image larger than the %d MiB limit", MaxImageBytes>>20)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not a readable PNG or JPEG image: %w", err)
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width*cfg.Height > MaxImagePixels {
		return fmt.Errorf("%s image of %d×%d pixels: want 1 to %d pixels", format, cfg.Width, cfg.Height, MaxImagePixels)
	}
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("broken %s image: %w", format, err)
	}
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	// Fit the longer side to 28 pixels, centred.
	tw, th := Side, Side
	if w > h {
		th = max(1, (h*Side+w/2)/w)
	} else {
		tw = max(1, (w*Side+h/2)/h)
	}
	grey := image.NewGray(image.Rect(0, 0, w, h))
	draw.Draw(grey, grey.Bounds(), src, b.Min, draw.Src)
	// Light background → invert, so the object is the light part.
	var border, n float64
	for x := 0; x < w; x++ {
		border += float64(grey.GrayAt(x, 0).Y) + float64(grey.GrayAt(x, h-1).Y)
		n += 2
	}
	for y := 0; y < h; y++ {
		border += float64(grey.GrayAt(0, y).Y) + float64(grey.GrayAt(w-1, y).Y)
		n += 2
	}
	invert := border/n > 127
	small := image.NewGray(image.Rect(0, 0, Side, Side))
	if invert {
		draw.Draw(small, small.Bounds(), image.NewUniform(color.Gray{Y: 255}), image.Point{}, draw.Src)
	}
	off := image.Pt((Side-tw)/2, (Side-th)/2)
	draw.CatmullRom.Scale(small, image.Rectangle{Min: off, Max: off.Add(image.Pt(tw, th))}, grey, grey.Bounds(), draw.Src, nil)
	for i, p := range small.Pix {
		v := float32(p) / 255
		if invert {
			v = 1 - v
		}
		dst[i] = v
	}
	return nil
}

// Render implements module.Renderer: each latent's decoder mean as a 28×28
// grey PNG.
func (v *Vision) Render(z []float32, n int) ([]bus.Payload, error) {
	logits, err := v.Output(z, n)
	if err != nil {
		return nil, err
	}
	out := make([]bus.Payload, n)
	for i := 0; i < n; i++ {
		img := image.NewGray(image.Rect(0, 0, Side, Side))
		for j := 0; j < Pixels; j++ {
			img.Pix[j] = uint8(255*sigmoid(logits[i*Pixels+j]) + 0.5)
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			return nil, err
		}
		out[i] = bus.Payload{Type: "image/png", Data: buf.Bytes()}
	}
	return out, nil
}

func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }
