package toy_test

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/module/moduletest"
	"github.com/serket-go/serket/modules/toy"
)

func TestConformance(t *testing.T) {
	cfg := toy.Config{Name: "left", Dim: 5, Latent: 3, Seed: 1, DataSeed: 7, Items: 100, Missing: 0.25}
	moduletest.Run(t, moduletest.Config{
		New:    func() (module.Modality, error) { return toy.New(cfg) },
		BadIDs: []uint64{100, 1 << 40},
		Inputs: []bus.Payload{
			{Type: "text/plain", Data: []byte("1, 2, 3, 4, 5")},
			{Type: "text/plain; charset=utf-8", Data: []byte("[0 0 0 0 -1.5e0]")},
		},
		BadInputs: []bus.Payload{
			{Type: "text/plain", Data: []byte("1, 2, 3")},
			{Type: "text/plain", Data: []byte("1, 2, 3, 4, NaN")},
			{Type: "text/plain", Data: []byte("1, 2, x, 4, 5")},
			{Type: "image/png", Data: []byte("1, 2, 3, 4, 5")},
		},
	})
}

func TestNewRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  toy.Config
	}{
		{"bad name", toy.Config{Name: "Left", Dim: 2, Latent: 2}},
		{"zero dim", toy.Config{Name: "a", Dim: 0, Latent: 2}},
		{"zero latent", toy.Config{Name: "a", Dim: 2, Latent: 0}},
		{"negative noise", toy.Config{Name: "a", Dim: 2, Latent: 2, Noise: -1}},
		{"missing all", toy.Config{Name: "a", Dim: 2, Latent: 2, Missing: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := toy.New(tt.cfg); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

// TestPairedData checks the synthetic data's promise: two toy modules with
// the same data seed see the same latent for an item, so their observations
// are correlated through it, and a module's missing fraction is honoured.
func TestPairedData(t *testing.T) {
	a, _ := toy.New(toy.Config{Name: "a", Dim: 1, Latent: 1, DataSeed: 3, Noise: 0.01, Items: 2000})
	b, _ := toy.New(toy.Config{Name: "b", Dim: 1, Latent: 1, DataSeed: 3, Noise: 0.01, Items: 2000, Missing: 0.3})
	ids := make([]uint64, 2000)
	for i := range ids {
		ids[i] = uint64(i)
	}
	xa, _, _ := a.LoadBatch(ids)
	xb, pb, _ := b.LoadBatch(ids)
	va, vb := xa.(*toy.Obs).Data, xb.(*toy.Obs).Data
	corr := correlation(va, vb)
	if math.Abs(corr) < 0.95 {
		t.Errorf("observations of the same items in two modules correlate %.3f; want |r| > 0.95 (shared latent)", corr)
	}
	missing := 0
	for _, p := range pb {
		if !p {
			missing++
		}
	}
	if f := float64(missing) / float64(len(pb)); math.Abs(f-0.3) > 0.05 {
		t.Errorf("missing fraction %.3f, want about 0.3", f)
	}
}

func correlation(a, b []float32) float64 {
	var ma, mb float64
	for i := range a {
		ma += float64(a[i])
		mb += float64(b[i])
	}
	ma /= float64(len(a))
	mb /= float64(len(b))
	var sab, saa, sbb float64
	for i := range a {
		da, db := float64(a[i])-ma, float64(b[i])-mb
		sab += da * db
		saa += da * da
		sbb += db * db
	}
	return sab / math.Sqrt(saa*sbb)
}

// A damaged checkpoint is reported as such (module.ErrCorruptCheckpoint),
// so the SDK falls back to the previous one; another module's is not.
func TestRestoreTellsDamageFromMismatch(t *testing.T) {
	m, err := toy.New(toy.Config{Name: "left", Dim: 5, Latent: 3})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := m.Save(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0xff
	other, _ := toy.New(toy.Config{Name: "right", Dim: 4, Latent: 3})
	tests := []struct {
		name    string
		m       *toy.Toy
		data    []byte
		corrupt bool
	}{
		{"truncated", m, good[:len(good)/2], true},
		{"flipped byte", m, flipped, true},
		{"empty", m, nil, true},
		{"another shape", other, good, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.m.Restore(bytes.NewReader(tt.data))
			if err == nil || errors.Is(err, module.ErrCorruptCheckpoint) != tt.corrupt {
				t.Errorf("Restore: %v; want an error, damaged %v", err, tt.corrupt)
			}
		})
	}
}
