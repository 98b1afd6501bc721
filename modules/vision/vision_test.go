package vision_test

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strings"
	"testing"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/dataset/datasettest"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/module/moduletest"
	"github.com/serket-go/serket/modules/mvae"
	"github.com/serket-go/serket/modules/vision"
)

// picture draws a w×h image: a light rectangle on a dark background, or the
// reverse.
func picture(w, h int, lightOnDark bool) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	bg, fg := color.RGBA{10, 10, 10, 255}, color.RGBA{240, 230, 220, 255}
	if !lightOnDark {
		bg, fg = fg, bg
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := bg
			if x > w/4 && x < 3*w/4 && y > h/4 && y < 3*h/4 {
				c = fg
			}
			img.Set(x, y, c)
		}
	}
	return img
}

func encodePNG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestConformance(t *testing.T) {
	src, err := mvae.OpenSource(datasettest.Dir(t), dataset.Vision, mvae.Pairing{Fraction: 0.5, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	pngData := encodePNG(t, picture(60, 40, true))
	for _, private := range []int{0, 4} { // a private latent is the SDK's and mvae's: once suffices for the built-ins
		t.Run(fmt.Sprintf("private=%d", private), func(t *testing.T) { conformance(t, src, private, pngData) })
	}
}

func conformance(t *testing.T, src *mvae.Source, private int, pngData []byte) {
	moduletest.Run(t, moduletest.Config{
		New: func() (module.Modality, error) {
			return vision.New(vision.Config{Net: mvae.Config{Latent: 16, Private: private, Hidden: 128, Seed: 1}, Source: src})
		},
		IDs:    []uint64{0, 1, 2, 3, 4, 5, 6, 7, 60000, 60001},
		BadIDs: []uint64{59999, 1 << 40},
		Inputs: []bus.Payload{
			{Type: "image/png", Data: pngData},
			{Type: "image/jpeg", Data: encodeJPEG(t, picture(300, 500, false))},
		},
		BadInputs: []bus.Payload{
			{Type: "image/png", Data: []byte("not an image")},
			{Type: "image/png", Data: pngData[:len(pngData)/2]},
			{Type: "text/plain", Data: []byte("a sneaker")},
			{Type: "image/png", Data: nil},
		},
	})
}

// TestToGrey28 checks the conversion a person's image goes through: any
// size fits 28×28 centred, and a dark object on a light background comes out
// light on dark, as Fashion-MNIST is.
func TestToGrey28(t *testing.T) {
	for _, tt := range []struct {
		name        string
		img         image.Image
		lightOnDark bool
	}{
		{"small light on dark", picture(14, 14, true), true},
		{"large dark on light", picture(400, 400, false), false},
		{"wide", picture(280, 56, true), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst := make([]float32, vision.Pixels)
			if err := vision.ToGrey28(dst, bytes.NewReader(encodePNG(t, tt.img))); err != nil {
				t.Fatal(err)
			}
			centre, corner := dst[14*28+14], dst[0]
			if !(centre > 0.8 && corner < 0.2) {
				t.Fatalf("centre %.2f, corner %.2f: want a light object on a dark background", centre, corner)
			}
		})
	}
	if err := vision.ToGrey28(make([]float32, vision.Pixels), strings.NewReader("GIF89a")); err == nil {
		t.Fatal("a broken image was accepted")
	}
}

// TestLoadBatchMatchesFashionMNIST: the shard holds the real images.
func TestLoadBatchMatchesFashionMNIST(t *testing.T) {
	src, err := mvae.OpenSource(datasettest.Dir(t), dataset.Vision, mvae.Pairing{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := vision.New(vision.Config{Net: mvae.Config{Latent: 4, Hidden: 8}, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	fm, err := dataset.LoadFashionMNIST(dataset.FashionMNISTDir)
	if err != nil {
		t.Fatal(err)
	}
	x, present, err := v.LoadBatch([]uint64{0, 5, 60000})
	if err != nil {
		t.Fatal(err)
	}
	im := x.(*vision.Images)
	for i, want := range [][]uint8{fm.Train.Pixels[0:784], fm.Train.Pixels[5*784 : 6*784], fm.Test.Pixels[0:784]} {
		if !present[i] {
			t.Fatalf("item %d absent with full pairing", i)
		}
		for j, p := range want {
			if im.Pix[i*784+j] != float32(p)/255 {
				t.Fatalf("image %d pixel %d is %v, want %v", i, j, im.Pix[i*784+j], float32(p)/255)
			}
		}
	}
}
