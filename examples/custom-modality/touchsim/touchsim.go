// Package touchsim simulates the touch sensor: what a fingertip would
// report for each Fashion-MNIST-3 item. It is the one place that looks at
// an item's class (as `serket data prepare` does to speak the class name
// for the audio shard): each class has a typical material and build, and
// each item varies around it (its size, its wear, the sensor's noise),
// deterministically from a seed and the item's id.
//
// The module (package touch) never imports this package: it reads only
// the file Prepare writes.
package touchsim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/examples/custom-modality/touch"
)

// material is a class's typical reading. The vibration spectrum is a bump
// of Level dB centred on octave band Peak (0: 16 Hz … 7: 2 kHz) with a
// width of Width bands, over the sensor's noise floor.
type material struct {
	hardness, stiffness, thickness, mass, stretch, friction, coolness, damping float64
	level, peak, width                                                         float64
}

// classes are indexed like dataset.ClassNames. Soft knits are soft, warm,
// stretchy and buzz at high frequencies; shoes are hard, heavy, grippy and
// rumble low; a leather bag is smooth and cool. Neighbouring garments
// (t-shirt, shirt, pullover, dress) overlap on purpose.
var classes = [dataset.NumClasses]material{
	{hardness: 10, stiffness: 0.05, thickness: 0.6, mass: 150, stretch: 25, friction: 0.50, coolness: 0.20, damping: 0.60, level: 38, peak: 5.5, width: 1.6}, // t-shirt/top: cotton jersey
	{hardness: 25, stiffness: 0.30, thickness: 1.0, mass: 450, stretch: 5, friction: 0.60, coolness: 0.25, damping: 0.50, level: 44, peak: 4.5, width: 1.2},  // trouser: denim twill
	{hardness: 8, stiffness: 0.08, thickness: 2.5, mass: 400, stretch: 30, friction: 0.70, coolness: 0.10, damping: 0.80, level: 40, peak: 3.5, width: 1.8},  // pullover: coarse knit
	{hardness: 8, stiffness: 0.04, thickness: 0.5, mass: 250, stretch: 15, friction: 0.40, coolness: 0.30, damping: 0.50, level: 28, peak: 6.0, width: 1.5},  // dress: light woven
	{hardness: 20, stiffness: 0.40, thickness: 3.5, mass: 1200, stretch: 5, friction: 0.55, coolness: 0.20, damping: 0.70, level: 42, peak: 3.0, width: 1.5}, // coat: wool
	{hardness: 60, stiffness: 2.00, thickness: 15, mass: 300, stretch: 2, friction: 0.80, coolness: 0.50, damping: 0.30, level: 46, peak: 2.0, width: 1.3},   // sandal: straps on cork
	{hardness: 12, stiffness: 0.10, thickness: 0.4, mass: 200, stretch: 8, friction: 0.35, coolness: 0.30, damping: 0.50, level: 36, peak: 5.0, width: 1.4},  // shirt: woven cotton
	{hardness: 50, stiffness: 3.00, thickness: 25, mass: 700, stretch: 3, friction: 0.90, coolness: 0.40, damping: 0.40, level: 50, peak: 2.5, width: 1.6},   // sneaker: mesh and tread
	{hardness: 40, stiffness: 1.50, thickness: 4.0, mass: 600, stretch: 2, friction: 0.50, coolness: 0.55, damping: 0.30, level: 30, peak: 4.0, width: 2.0},  // bag: grained leather
	{hardness: 70, stiffness: 5.00, thickness: 30, mass: 1000, stretch: 1, friction: 0.75, coolness: 0.60, damping: 0.35, level: 34, peak: 1.5, width: 1.4},  // ankle boot: smooth leather
}

// noiseFloor is the vibration sensor's noise floor, in dB.
const noiseFloor = 12

// Reading simulates the touch reading of item id of the given class: the
// same (class, seed, id) always gives the same reading.
func Reading(class int, seed, id uint64) []float32 {
	m := classes[class]
	r := rand.New(rand.NewPCG(seed, id^0x746f756368)) // "touch"
	n := r.NormFloat64
	size := math.Exp(0.2 * n()) // a bigger item is heavier, thicker, stiffer
	wear := r.Float64()         // worn items are softer and smoother
	clamp := func(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }
	x := []float64{
		clamp(m.hardness*math.Exp(0.25*n())-5*wear+3*n(), 0, 100),
		m.stiffness * size * math.Exp(0.5*n()),
		m.thickness * math.Sqrt(size) * math.Exp(0.35*n()),
		m.mass * math.Pow(size, 1.5) * math.Exp(0.3*n()),
		m.stretch * math.Exp(0.45*n()),
		clamp(m.friction-0.1*wear+0.12*n(), 0.05, 1.5),
		clamp(m.coolness+0.1*n(), 0, 1),
		clamp(m.damping+0.12*n(), 0, 1),
	}
	peak, level := m.peak+0.6*n(), m.level-4*wear+4*n()
	for b := range 8 {
		d := (float64(b) - peak) / m.width
		v := level - 6*d*d
		// the bump over the sensor's noise floor, plus measurement noise
		v = 10*math.Log10(math.Pow(10, v/10)+math.Pow(10, noiseFloor/10.0)) + 3*n()
		x = append(x, v)
	}
	out := make([]float32, touch.Dim)
	for j, v := range x {
		out[j] = float32(v)
	}
	return out
}

// Prepare simulates a reading for every item of the prepared dataset in dir
// (its manifest.json) and writes them, with their normalisation over the
// training items, to dir/touch.dat. It returns what it wrote.
func Prepare(dir string, seed uint64) (*touch.Data, error) {
	man, err := dataset.ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	d := &touch.Data{Seed: seed}
	var sum, sq [touch.Dim]float64
	var n float64
	tmp := make([]float32, touch.Dim)
	for _, it := range man.Items {
		x := Reading(int(it.Class), seed, it.ID)
		d.IDs = append(d.IDs, it.ID)
		d.Readings = append(d.Readings, x...)
		if it.Split != dataset.Train && man.Counts[dataset.Train] > 0 {
			continue
		}
		if err := touch.Transform(tmp, x); err != nil {
			return nil, fmt.Errorf("touchsim: item %d: %w", it.ID, err) // a bug in Reading
		}
		for j, v := range tmp {
			sum[j] += float64(v)
			sq[j] += float64(v) * float64(v)
		}
		n++
	}
	if n < 2 {
		return nil, fmt.Errorf("touchsim: %s has %d training items; the normalisation needs 2 or more", dir, int(n))
	}
	for j := range sum {
		mean := sum[j] / n
		d.Mean[j] = float32(mean)
		d.Std[j] = float32(math.Sqrt(math.Max(sq[j]/n-mean*mean, 1e-6)))
	}
	if err := touch.WriteFile(touch.Path(dir), d); err != nil {
		return nil, err
	}
	return d, nil
}

// Class returns the class index of a name: a Fashion-MNIST class name
// ("ankle boot", "t-shirt/top") or a word of one ("boot", "t-shirt").
func Class(name string) (int, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	for c := range dataset.NumClasses {
		if name == dataset.ClassNames[c] || name == dataset.SpokenNames[c] {
			return c, nil
		}
	}
	for c := range dataset.NumClasses {
		for _, w := range strings.FieldsFunc(dataset.ClassNames[c], func(r rune) bool { return r == '/' || r == ' ' }) {
			if name == w {
				return c, nil
			}
		}
	}
	return 0, fmt.Errorf("unknown class %q (the classes are %s)", name, strings.Join(dataset.ClassNames[:], ", "))
}
