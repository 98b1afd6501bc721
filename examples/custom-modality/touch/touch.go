// Package touch is a serket modality written outside serket's modules/: a
// fingertip's touch reading of an object (16 values: hardness, stiffness,
// thickness, mass, stretch, friction, coolness, damping and the power of
// the vibration in 8 octave bands while stroking it), with an MVAE-style
// encoder and decoder (package mvae) and a Gaussian likelihood on the
// normalised values.
//
// The modality reads only its own data file (touch.dat, see Data): the
// readings by sample id and their normalisation, never a label. It parses
// readings people type (16 numbers, name=value pairs or JSON) and renders a
// latent as the reading the decoder expects, in the same name=value text.
package touch

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/mvae"
)

// Config configures the modality.
type Config struct {
	Name string      // module name; default "touch"
	Net  mvae.Config // Latent, Hidden, LR, Seed, …; In and Out are set by New
	Data *Data       // the readings and their normalisation (required)
	// LogVar is the fixed log-variance of the likelihood on normalised
	// values; default 0 (unit variance).
	LogVar float32
	// Pairing is partial pairing (serket train --paired-fraction): the
	// zero value means every item has its touch reading.
	Pairing mvae.Pairing
}

// Touch is the modality. Encoding, decoding, learning and checkpoints
// are its networks', which the embedded mvae.Modality provides; touch's
// own code loads, parses and renders readings.
type Touch struct {
	*mvae.Modality[*Readings]
	data    *Data
	norm    []float32 // the readings, normalised, in data.IDs order
	pairing mvae.Pairing
	spare   mvae.Spare[Readings] // the last step's batch, for LoadBatch to refill
}

// The capabilities the SDK finds by type assertion; these lines make the
// compiler check them.
var (
	_ module.Learner  = (*Touch)(nil)
	_ module.Loader   = (*Touch)(nil)
	_ module.Recycler = (*Touch)(nil)
	_ module.Parser   = (*Touch)(nil)
	_ module.Renderer = (*Touch)(nil)
	_ module.Saver    = (*Touch)(nil)
	_ module.Scorer   = (*Touch)(nil)
	_ module.Featurer = (*Touch)(nil)
	_ module.Picker   = (*Readings)(nil)
)

// New returns the modality with fresh parameters (deterministic for
// cfg.Net.Seed).
func New(cfg Config) (*Touch, error) {
	if cfg.Data == nil {
		return nil, fmt.Errorf("touch: no data: the module needs %s for its readings and normalisation (run `touch prepare`)", FileName)
	}
	cfg.Net.In, cfg.Net.Out = Dim, Dim
	m, err := mvae.NewModality[*Readings](mvae.Parts{
		Kind: "touch", Name: cfg.Name, Net: cfg.Net,
		Likelihood: mvae.Gaussian{LogVar: cfg.LogVar},
		Meta:       map[string]string{"dim": strconv.Itoa(Dim)},
	})
	if err != nil {
		return nil, err
	}
	t := &Touch{Modality: m, data: cfg.Data}
	if t.pairing, err = pairing(cfg.Pairing, m.Spec().Name); err != nil {
		return nil, err
	}
	t.norm = make([]float32, len(cfg.Data.Readings))
	for i, id := range cfg.Data.IDs {
		if err := cfg.Data.Normalise(t.norm[i*Dim:(i+1)*Dim], cfg.Data.Readings[i*Dim:(i+1)*Dim]); err != nil {
			return nil, fmt.Errorf("touch: item %d: %w", id, err)
		}
	}
	return t, nil
}

// pairing is p checked, with its defaults: every item paired, and the
// mask drawn over the built-in modalities and this one.
func pairing(p mvae.Pairing, name string) (mvae.Pairing, error) {
	if p.Fraction < 0 || p.Fraction > 1 || math.IsNaN(p.Fraction) {
		return p, fmt.Errorf("touch: paired fraction %v: want 0 < f ≤ 1", p.Fraction)
	}
	if p.Fraction == 0 {
		p.Fraction = 1
	}
	if len(p.Modalities) == 0 {
		// Every module must draw the mask over the same list, in the same
		// order: the built-in ones default to vision, language, audio.
		p.Modalities = append(dataset.Modalities(), name)
	}
	return p, nil
}

// Readings is a batch of normalised readings, N×Dim: a vector of numbers
// per row, which the encoder reads and the Gaussian likelihood scores as
// they are, so mvae's batch of rows serves.
type Readings = mvae.Rows

// LoadBatch implements module.Loader: the readings of ids from the data
// file. An id the file lacks is an error; an item the partial-pairing mask
// withholds is absent (a zero row, present false).
func (t *Touch) LoadBatch(ids []uint64) (module.Batch, []bool, error) {
	out := t.spare.Take() // the last step's batch, if the SDK handed it back
	if out == nil {
		out = &Readings{}
	}
	out.N, out.X = len(ids), mvae.Resize(out.X, len(ids)*Dim)
	present := make([]bool, len(ids))
	for i, id := range ids {
		k, ok := slices.BinarySearch(t.data.IDs, id)
		if !ok {
			return nil, nil, fmt.Errorf("touch: %s has no item %d (was it prepared for this dataset?)", FileName, id)
		}
		if !t.pairing.Keeps(id, t.Spec().Name) {
			continue
		}
		present[i] = true
		copy(out.X[i*Dim:(i+1)*Dim], t.norm[k*Dim:(k+1)*Dim])
	}
	mvae.ClearAbsent(out.X, present, Dim) // a reused row may hold an old reading
	return out, present, nil
}

// Recycle implements module.Recycler: the SDK hands back each training
// step's batch when the step is over, and LoadBatch refills it rather than
// allocate. (A batch of touch readings is small; a modality with
// megabytes per batch, such as audio, gains more.)
func (t *Touch) Recycle(x module.Batch) {
	if r, ok := x.(*Readings); ok {
		t.spare.Keep(r)
	}
}

// Parse implements module.Parser. Each observation is one reading:
//
//   - text/plain: 16 numbers in Features order ("41 0.3 1.2 …", commas
//     and brackets allowed), or name=value pairs naming every feature
//     ("hardness=41 stiffness=0.3 …", what Render writes);
//   - application/json: an array of 16 numbers, or an object with a number
//     for every feature name.
func (t *Touch) Parse(raw []bus.Payload) (module.Batch, error) {
	out := &Readings{N: len(raw), X: make([]float32, len(raw)*Dim)}
	reading := make([]float32, Dim)
	for i, p := range raw {
		var err error
		switch typ := strings.TrimSpace(strings.Split(p.Type, ";")[0]); typ {
		case "text/plain", "":
			err = parseText(reading, string(p.Data))
		case "application/json":
			err = parseJSON(reading, p.Data)
		default:
			err = fmt.Errorf("content type %q, want text/plain or application/json", p.Type)
		}
		if err == nil {
			err = t.data.Normalise(out.X[i*Dim:(i+1)*Dim], reading)
		}
		if err != nil {
			return nil, fmt.Errorf("observation %d: %w", i, err)
		}
	}
	return out, nil
}

func parseText(dst []float32, s string) error {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "{") {
		return parseJSON(dst, []byte(s))
	}
	fields := strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' || r == '[' || r == ']' || r == ';'
	})
	if len(fields) == 0 {
		return fmt.Errorf("empty reading: want %d numbers or name=value pairs (%s)", Dim, names())
	}
	if strings.Contains(fields[0], "=") {
		vals := map[string]float64{}
		for _, f := range fields {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				return fmt.Errorf("%q: want name=value", f)
			}
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("%s=%q is not a number", k, v)
			}
			vals[k] = x
		}
		return fromMap(dst, vals)
	}
	if len(fields) != Dim {
		return fmt.Errorf("%d numbers, want %d (%s)", len(fields), Dim, names())
	}
	for j, f := range fields {
		x, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return fmt.Errorf("value %d (%s) is %q, want a number", j+1, Features[j].Name, f)
		}
		dst[j] = float32(x)
	}
	return nil
}

func parseJSON(dst []float32, b []byte) error {
	var arr []float64
	if err := json.Unmarshal(b, &arr); err == nil {
		if len(arr) != Dim {
			return fmt.Errorf("a JSON array of %d numbers, want %d (%s)", len(arr), Dim, names())
		}
		for j, v := range arr {
			dst[j] = float32(v)
		}
		return nil
	}
	var obj map[string]float64
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("JSON: want an array of %d numbers or an object {name: number}: %w", Dim, err)
	}
	return fromMap(dst, obj)
}

func fromMap(dst []float32, vals map[string]float64) error {
	for k := range vals {
		if FeatureIndex(k) < 0 {
			return fmt.Errorf("unknown feature %q (the features are %s)", k, names())
		}
	}
	for j, f := range Features {
		v, ok := vals[f.Name]
		if !ok {
			return fmt.Errorf("no value for %s (every feature is needed: %s)", f.Name, names())
		}
		dst[j] = float32(v)
	}
	return nil
}

func names() string {
	var s []string
	for _, f := range Features {
		s = append(s, f.Name)
	}
	return strings.Join(s, " ")
}

// Render implements module.Renderer: the reading at the decoder's mean,
// in physical units, as "hardness=41.2 stiffness=0.31 …" text (which Parse
// reads back).
func (t *Touch) Render(z []float32, n int) ([]bus.Payload, error) {
	mean, err := t.Output(z, n)
	if err != nil {
		return nil, err
	}
	out := make([]bus.Payload, n)
	reading := make([]float32, Dim)
	for i := range n {
		t.data.Denormalise(reading, mean[i*Dim:(i+1)*Dim])
		out[i] = bus.Payload{Type: "text/plain; charset=utf-8", Data: []byte(Format(reading))}
	}
	return out, nil
}

// Format writes a reading as name=value pairs.
func Format(reading []float32) string {
	var sb strings.Builder
	for j, v := range reading[:Dim] {
		if j > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(Features[j].Name)
		sb.WriteByte('=')
		sb.WriteString(strconv.FormatFloat(float64(v), 'g', 4, 32))
	}
	return sb.String()
}
