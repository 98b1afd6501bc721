package vision_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/modules/mvae"
	"github.com/serket-go/serket/modules/vision"
)

// fashionImages returns the first n Fashion-MNIST test images, 28×28 grey,
// read from the head of the IDX file (every fuzzing process reads them).
func fashionImages(t testing.TB, n int) []*image.Gray {
	t.Helper()
	f, err := os.Open(filepath.Join(dataset.FashionMNISTDir, "t10k-images-idx3-ubyte.gz"))
	if err != nil {
		t.Fatalf("Fashion-MNIST (the Debian package dataset-fashion-mnist): %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 16+n*vision.Pixels) // magic, count, rows, columns, pixels
	if _, err := io.ReadFull(zr, head); err != nil {
		t.Fatal(err)
	}
	be := binary.BigEndian
	if be.Uint32(head) != 0x803 || be.Uint32(head[8:]) != vision.Side || be.Uint32(head[12:]) != vision.Side {
		t.Fatalf("%x: not an IDX file of 28×28 images", head[:16])
	}
	var out []*image.Gray
	for i := range n {
		g := image.NewGray(image.Rect(0, 0, vision.Side, vision.Side))
		copy(g.Pix, head[16+i*vision.Pixels:])
		out = append(out, g)
	}
	return out
}

// pngChunk is one PNG chunk with its CRC.
func pngChunk(typ string, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	b = append(append(b, typ...), data...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[4:]))
}

// bombPNG is a well-formed PNG header declaring a w×h grey image, followed
// by a few bytes of compressed data: decoding it would allocate w·h bytes
// before finding the data short.
func bombPNG(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 0, 0, 0, 0) // 8-bit grey, deflate, no filter, no interlace
	b := []byte("\x89PNG\r\n\x1a\n")
	b = append(b, pngChunk("IHDR", ihdr)...)
	b = append(b, pngChunk("IDAT", []byte{0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01})...)
	return append(b, pngChunk("IEND", nil)...)
}

// bombJPEG is a real JPEG whose frame header claims w×h pixels.
func bombJPEG(t testing.TB, w, h uint16) []byte {
	b := bytes.Clone(encodeJPEG(t, picture(16, 16, true)))
	i := bytes.Index(b, []byte{0xff, 0xc0}) // SOF0: length, precision, height, width
	if i < 0 || i+9 > len(b) {
		t.Fatal("no SOF0 marker in the encoded JPEG")
	}
	binary.BigEndian.PutUint16(b[i+5:], h)
	binary.BigEndian.PutUint16(b[i+7:], w)
	return b
}

func imageSeeds(t testing.TB) [][]byte {
	t.Helper()
	var seeds [][]byte
	for i, g := range fashionImages(t, 3) {
		seeds = append(seeds, encodePNG(t, g))
		if i == 0 {
			seeds = append(seeds, encodeJPEG(t, g))
		}
	}
	// What the module renders is what `serket generate` feeds back.
	v, err := vision.New(vision.Config{Net: mvae.Config{Latent: 4, Hidden: 8, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := v.Render(make([]float32, 4), 1)
	if err != nil {
		t.Fatal(err)
	}
	good := encodePNG(t, picture(60, 40, true))
	seeds = append(seeds, out[0].Data,
		good,
		encodeJPEG(t, picture(30, 50, false)),
		encodePNG(t, picture(1, 1, true)),
		encodePNG(t, image.NewNRGBA64(image.Rect(0, 0, 5, 3))),
		encodePNG(t, image.NewPaletted(image.Rect(0, 0, 4, 9), color.Palette{color.Gray{Y: 0}, color.Gray{Y: 255}})),
		// Broken ones.
		nil,
		[]byte("GIF89a"),
		good[:len(good)/2],
		good[:33], // the header alone
		bombPNG(100000, 100000),
		bombPNG(0, 10),
		bombPNG(1<<31-1, 1),
		bombJPEG(t, 65535, 65535),
	)
	return seeds
}

// FuzzToGrey28: ToGrey28, which Parse runs on every image of an encode
// request or a sensor message, never panics. It either writes Pixels
// intensities in [0, 1] — the same on every call, the same as Parse gives,
// for an image of 1 to MaxImagePixels pixels — or fails without touching
// dst, saying why (the size, for an image too large).
func FuzzToGrey28(f *testing.F) {
	for _, s := range imageSeeds(f) {
		f.Add(s)
	}
	v, err := vision.New(vision.Config{Net: mvae.Config{Latent: 4, Hidden: 8, Seed: 1}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, cerr := image.DecodeConfig(bytes.NewReader(data))
		pixels := int64(cfg.Width) * int64(cfg.Height)
		if cerr == nil && pixels > 1<<22 && pixels <= vision.MaxImagePixels {
			return // allowed, but too slow to fuzz at: megapixels per input
		}
		dst := make([]float32, vision.Pixels)
		for i := range dst {
			dst[i] = -1
		}
		err := vision.ToGrey28(dst, bytes.NewReader(data))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an empty error")
			}
			if cerr == nil && pixels > vision.MaxImagePixels && !strings.Contains(err.Error(), "pixels") {
				t.Errorf("a %d×%d image refused with %q, which does not give its size", cfg.Width, cfg.Height, err)
			}
			for i, p := range dst {
				if p != -1 {
					t.Fatalf("a refused image wrote pixel %d (%v)", i, p)
				}
			}
			if _, perr := v.Parse([]bus.Payload{{Type: "image/png", Data: data}}); perr == nil || !strings.Contains(perr.Error(), "observation 0") {
				t.Errorf("ToGrey28 refuses what Parse gives %v for", perr)
			}
			return
		}
		if cerr != nil || pixels < 1 || pixels > vision.MaxImagePixels {
			t.Fatalf("accepted an image whose header says %d×%d (%v)", cfg.Width, cfg.Height, cerr)
		}
		for i, p := range dst {
			if !(p >= 0 && p <= 1) || math.IsNaN(float64(p)) {
				t.Fatalf("pixel %d is %v, want [0, 1]", i, p)
			}
		}
		again := make([]float32, vision.Pixels)
		if err := vision.ToGrey28(again, bytes.NewReader(data)); err != nil || !slices.Equal(dst, again) {
			t.Fatalf("the second conversion differs (%v)", err)
		}
		x, err := v.Parse([]bus.Payload{{Type: "image/png", Data: data}})
		if err != nil {
			t.Fatalf("Parse refuses what ToGrey28 accepts: %v", err)
		}
		if im := x.(*vision.Images); im.N != 1 || !slices.Equal(im.Pix, dst) {
			t.Fatalf("Parse gives other pixels than ToGrey28")
		}
	})
}

// TestToGrey28RefusesBombs: an image whose header claims more than
// MaxImagePixels is refused from its header, before anything of its size is
// allocated, with an error that gives the size.
func TestToGrey28RefusesBombs(t *testing.T) {
	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{"png 100000×100000", bombPNG(100000, 100000), "100000×100000"},
		{"png 2³¹-1×1", bombPNG(1<<31-1, 1), "2147483647×1"},
		{"jpeg 65535×65535", bombJPEG(t, 65535, 65535), "65535×65535"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := vision.ToGrey28(make([]float32, vision.Pixels), bytes.NewReader(tt.data))
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ToGrey28 = %v, want an error giving the size %s", err, tt.want)
			}
			// Decoding would take gigabytes; the slack is for goroutines
			// of other tests allocating meanwhile.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
				t.Errorf("refusing allocated %d bytes", grew)
			}
		})
	}
}

// paddedPNG is a real PNG image of exactly size bytes: a small picture
// with a tEXt comment chunk (which decoders skip) making up the rest.
func paddedPNG(t testing.TB, size int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, picture(64, 48, true)); err != nil {
		t.Fatal(err)
	}
	img := b.Bytes()
	iend := img[len(img)-12:] // the last chunk, IEND, has no data
	text := append([]byte("Comment\x00"), bytes.Repeat([]byte{'x'}, size-len(img)-12-8)...)
	chunk := binary.BigEndian.AppendUint32(nil, uint32(len(text)))
	chunk = append(chunk, "tEXt"...)
	chunk = append(chunk, text...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	out := append(append(slices.Clip(img[:len(img)-12]), chunk...), iend...)
	if len(out) != size {
		t.Fatalf("padded PNG of %d bytes, want %d", len(out), size)
	}
	return out
}

// TestParseImageSizeLimit: an image of MaxImageBytes (what an inference
// request carries) is taken; one byte more is refused, giving the limit.
func TestParseImageSizeLimit(t *testing.T) {
	v, err := vision.New(vision.Config{Net: mvae.Config{Latent: 4, Hidden: 8, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	at := paddedPNG(t, vision.MaxImageBytes)
	if _, err := v.Parse([]bus.Payload{{Type: "image/png", Data: at}}); err != nil {
		t.Fatalf("an image of MaxImageBytes: %v", err)
	}
	over := paddedPNG(t, vision.MaxImageBytes+1)
	for name, parse := range map[string]func() error{
		"Parse":    func() error { _, err := v.Parse([]bus.Payload{{Type: "image/png", Data: over}}); return err },
		"ToGrey28": func() error { return vision.ToGrey28(make([]float32, vision.Pixels), bytes.NewReader(over)) },
	} {
		if err := parse(); err == nil || !strings.Contains(err.Error(), "32 MiB limit") {
			t.Errorf("%s of an image of MaxImageBytes+1: %v, want a refusal giving the 32 MiB limit", name, err)
		}
	}
}
