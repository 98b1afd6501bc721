package torchref

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/internal/atomicfile"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/language"
	"github.com/serket-go/serket/modules/mvae"
	"github.com/serket-go/serket/nn"
	"github.com/serket-go/serket/poe"
)

// Modality is what ExportStep needs of a modality: one on mvae networks
// that loads its own batches, as the built-in ones are.
type Modality interface {
	module.Modality
	module.Loader
	Net() *mvae.Net
	Likelihood() mvae.Likelihood
}

// StepConfig is one training step for ExportStep.
type StepConfig struct {
	Dir        string              // where the step goes (created if needed)
	Modalities map[string]Modality // by module name, at the weights the step starts from
	IDs        []uint64            // the batch
	Plan       []bus.Term          // the plan, before the aggregation's strata
	PlanName   string              // what Plan was made by, for the record
	// Agg is the aggregation (nil: PoE); a Learned one must be bound to
	// the modules, and its gates are exported as they are.
	Agg        aggregate.Aggregation
	Lambda     map[string]float32 // unscaled λ per module (missing: 1)
	Beta       float32
	Seed, Step uint64 // the noise's, as StepMath takes them
}

// StepMeta is meta.json of an exported step: everything about it that is
// not an array.
type StepMeta struct {
	Modalities  []string           `json:"modalities"` // sorted
	Batch       int                `json:"batch"`
	Latent      int                `json:"latent"`
	Hidden      int                `json:"hidden"`
	Aggregation string             `json:"aggregation"`
	Plan        string             `json:"plan"`
	PlanTerms   []TermMeta         `json:"plan_terms"` // Plan, before the strata
	Terms       []TermMeta         `json:"terms"`      // as modules decode them: each plan term once per stratum
	Lambda      map[string]float32 `json:"lambda"`     // unscaled, every module
	Beta        float32            `json:"beta"`
	MaxLogVar   float64            `json:"max_logvar"` // the experts' log-variance clamp
	// Likelihoods are each module's likelihood: its name, and the
	// log-variance of a Gaussian.
	Likelihoods map[string]StepLikelihood `json:"likelihoods"`
	Params      map[string][]ParamMeta    `json:"params"` // per module, in Params order
	Gates       []ParamMeta               `json:"gates,omitempty"`
	GateOrder   []string                  `json:"gate_modules,omitempty"` // module of each gate, as bound
	Objective   float64                   `json:"objective"`              // the step's objective: Σ over plan terms of TermStats.ELBO
	TermELBO    []float64                 `json:"term_elbo"`              // each plan term's
}

// TermMeta is a bus.Term in StepMeta. From, for a mixture's stratum, names
// the experts its latent is drawn from (MoE's one expert, MoPoE's subset);
// empty: the product of all of Subset.
type TermMeta struct {
	Subset  []string `json:"subset"`
	Targets []string `json:"targets"`
	From    []string `json:"from"`
}

func termMetas(terms []bus.Term) []TermMeta {
	out := make([]TermMeta, len(terms))
	for i, t := range terms {
		out[i] = TermMeta{Subset: slices.Clone(t.Subset), Targets: slices.Clone(t.Targets), From: append([]string{}, t.From...)}
	}
	return out
}

// StepLikelihood is one module's likelihood in StepMeta.
type StepLikelihood struct {
	Name   string  `json:"name"`
	LogVar float32 `json:"logvar,omitempty"`
}

// ParamMeta is one parameter tensor in StepMeta.
type ParamMeta struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
}

// ExportStep takes one training step in this process, with the
// modalities and StepMath as the distributed step does, but stops before
// any optimizer step, and writes into cfg.Dir what a reference needs to
// recompute it from its definition and what serket got:
//
//	meta.json                   StepMeta
//	<module>/x.npy              float32 B×In, the encoder's input
//	<module>/ids.npy            int32 B×tokens, a categorical likelihood's classes
//	<module>/present.npy        uint8 B, the module's present rows
//	<module>/mu.npy, logvar.npy float32 B×D, the posterior it sent
//	<module>/<param>.npy        float32, each parameter before the step ((out, in))
//	<module>/<param>.grad.npy   float32, its gradient of the objective
//	gate/<param>.npy, .grad.npy a Learned aggregation's parameters and gradients
//	term<i>.eps.npy, .z.npy     float32 B×D, term i's noise and latent
//	term<i>.w.npy               float32 B, term i's row weights (if any)
//
// Arrays are row-major, of the shapes given (and listed in meta.json for
// the parameters). The modalities' gradients are left in their
// parameters' G, and the aggregation's in its.
func ExportStep(cfg StepConfig) error {
	if cfg.Agg == nil {
		cfg.Agg = aggregate.PoE() // as StepMath takes nil
	}
	names := make([]string, 0, len(cfg.Modalities))
	for name := range cfg.Modalities {
		names = append(names, name)
	}
	slices.Sort(names)
	if len(names) == 0 || len(cfg.IDs) == 0 || len(cfg.Plan) == 0 {
		return fmt.Errorf("torchref: a step of %d modalities, %d items and %d plan terms: nothing to export", len(names), len(cfg.IDs), len(cfg.Plan))
	}
	net := cfg.Modalities[names[0]].Net().Config()
	meta := &StepMeta{Modalities: names, Batch: len(cfg.IDs), Latent: net.Latent, Hidden: net.Hidden, Aggregation: cfg.Agg.Name(),
		Plan: cfg.PlanName, PlanTerms: termMetas(cfg.Plan), Lambda: map[string]float32{}, Beta: cfg.Beta, MaxLogVar: poe.MaxLogVar,
		Likelihoods: map[string]StepLikelihood{}, Params: map[string][]ParamMeta{}}
	x := &stepExport{cfg: cfg, meta: meta, names: names, b: len(cfg.IDs), d: net.Latent,
		posts: map[string]*bus.Posterior{}, batches: map[string]module.Batch{}}
	for _, name := range names {
		if err := x.encode(name, net); err != nil {
			return err
		}
	}
	if err := x.step(); err != nil {
		return err
	}
	return writeJSON(filepath.Join(cfg.Dir, "meta.json"), meta)
}

// stepExport is ExportStep's state.
type stepExport struct {
	cfg     StepConfig
	meta    *StepMeta
	names   []string
	b, d    int
	posts   map[string]*bus.Posterior
	batches map[string]module.Batch
}

// encode writes module name's weights and batch, and encodes the batch.
func (x *stepExport) encode(name string, net mvae.Config) error {
	m, dir := x.cfg.Modalities[name], filepath.Join(x.cfg.Dir, name)
	if c := m.Net().Config(); c.Latent != net.Latent || c.Private != 0 || c.Hidden != net.Hidden {
		return fmt.Errorf("torchref: %s: latent %d, private %d, hidden %d; the reference wants every module at latent %d, hidden %d, no private latent",
			name, c.Latent, c.Private, c.Hidden, net.Latent, net.Hidden)
	}
	x.meta.Lambda[name] = 1
	if l, ok := x.cfg.Lambda[name]; ok {
		x.meta.Lambda[name] = l
	}
	lik := StepLikelihood{Name: m.Likelihood().Name()}
	if g, ok := m.Likelihood().(mvae.Gaussian); ok {
		lik.LogVar = g.LogVar
	}
	x.meta.Likelihoods[name] = lik
	for _, p := range m.Net().Params() {
		x.meta.Params[name] = append(x.meta.Params[name], ParamMeta{Name: p.Name, Shape: p.Shape})
		if err := writeNPYIn(dir, p.Name+".npy", p.W, p.Shape...); err != nil {
			return err
		}
	}
	batch, present, err := m.LoadBatch(x.cfg.IDs)
	if err != nil {
		return fmt.Errorf("torchref: %s: %w", name, err)
	}
	in, ok := batch.(mvae.Batch)
	if !ok {
		return fmt.Errorf("torchref: %s: a batch of %T, which has no encoder input", name, batch)
	}
	if err := writeNPYIn(dir, "x.npy", in.Input(), x.b, len(in.Input())/x.b); err != nil {
		return err
	}
	if c, ok := batch.(*language.Captions); ok {
		if err := writeNPYIn(dir, "ids.npy", c.IDs, x.b, len(c.IDs)/x.b); err != nil {
			return err
		}
	}
	mask := make([]uint8, len(present))
	for i, p := range present {
		if p {
			mask[i] = 1
		}
	}
	if err := writeNPYIn(dir, "present.npy", mask); err != nil {
		return err
	}
	mu, lv := make([]float32, x.b*x.d), make([]float32, x.b*x.d)
	if err := m.Encode(batch, mu, lv); err != nil {
		return fmt.Errorf("torchref: %s: %w", name, err)
	}
	x.batches[name] = batch
	x.posts[name] = &bus.Posterior{Step: x.cfg.Step, Mu: bus.Matrix(x.b, x.d, mu), LogVar: bus.Matrix(x.b, x.d, lv), Present: present}
	if err := writeNPYIn(dir, "mu.npy", mu, x.b, x.d); err != nil {
		return err
	}
	return writeNPYIn(dir, "logvar.npy", lv, x.b, x.d)
}

// step fuses, decodes and back-propagates the step, and writes its noise,
// latents, row weights, objective and gradients.
func (x *stepExport) step() error {
	sm := &integrator.StepMath{}
	sm.Reset(integrator.StepMath{Step: x.cfg.Step, Seed: x.cfg.Seed, B: x.b, D: x.d, Plan: x.cfg.Plan, Lambda: x.cfg.Lambda, Beta: x.cfg.Beta, Agg: x.cfg.Agg})
	x.meta.Terms = termMetas(sm.Terms())
	weights := sm.Weights(x.names)
	_, z := sm.Latents(x.posts)
	rows := sm.RowWeights()
	for i := range sm.Terms() {
		term := "term" + strconv.Itoa(i)
		if err := writeNPYIn(x.cfg.Dir, term+".eps.npy", sm.Noise()[i], x.b, x.d); err != nil {
			return err
		}
		if err := writeNPYIn(x.cfg.Dir, term+".z.npy", z[i].Data, x.b, x.d); err != nil {
			return err
		}
		if len(rows) > 0 {
			if err := writeNPYIn(x.cfg.Dir, term+".w.npy", rows[i].Data); err != nil {
				return err
			}
		}
	}
	zgrads := map[string]*bus.ZGrad{}
	for _, name := range x.names {
		zg, err := x.decode(name, sm.Terms(), z, rows, weights[name])
		if err != nil {
			return err
		}
		zgrads[name] = zg
	}
	grads, stats, err := sm.Grads(zgrads)
	if err != nil {
		return fmt.Errorf("torchref: %w", err)
	}
	for _, st := range stats {
		x.meta.Objective += st.ELBO
		x.meta.TermELBO = append(x.meta.TermELBO, st.ELBO)
	}
	for _, name := range x.names {
		net := x.cfg.Modalities[name].Net()
		if err := net.BackwardEncoder(grads[name].DMu.Data, grads[name].DLogVar.Data); err != nil {
			return fmt.Errorf("torchref: %s: %w", name, err)
		}
		if err := writeGrads(filepath.Join(x.cfg.Dir, name), net.Params()); err != nil {
			return err
		}
	}
	return x.gates()
}

// decode decodes every term that targets module name, its rows weighed as
// a module process weighs them: λ/B where present, times the term's row
// weight.
func (x *stepExport) decode(name string, terms []bus.Term, z, rows []bus.Tensor, weight float32) (*bus.ZGrad, error) {
	m, present := x.cfg.Modalities[name], x.posts[name].Present
	zg := &bus.ZGrad{Step: x.cfg.Step}
	var zs, ws, lls, dzs [][]float32
	for i, t := range terms {
		if !slices.Contains(t.Targets, name) {
			continue
		}
		w := make([]float32, x.b)
		for r := range w {
			if present[r] {
				w[r] = weight
				if len(rows) > 0 {
					w[r] *= rows[i].Data[r]
				}
			}
		}
		ll, dz := make([]float32, x.b), make([]float32, x.b*x.d)
		zs, ws, lls, dzs = append(zs, z[i].Data), append(ws, w), append(lls, ll), append(dzs, dz)
		zg.Terms = append(zg.Terms, bus.TermGrad{Term: i, DZ: bus.Matrix(x.b, x.d, dz), LogLik: bus.Vector(ll)})
	}
	// As the module process decodes them: all of its terms in one call.
	if err := module.DecodeTerms(m, zs, x.batches[name], ws, lls, dzs); err != nil {
		return nil, fmt.Errorf("torchref: %s: %w", name, err)
	}
	return zg, nil
}

// gates writes a Learned aggregation's parameters and their gradients,
// and which module each belongs to.
func (x *stepExport) gates() error {
	l, ok := x.cfg.Agg.(aggregate.Learned)
	if !ok {
		return nil
	}
	dir := filepath.Join(x.cfg.Dir, "gate")
	for _, p := range l.Params() {
		// Bind names module m's gates "gate.m".
		m, ok := strings.CutPrefix(p.Name, "gate.")
		if !ok {
			return fmt.Errorf("torchref: aggregation %s: parameter %q is no module's gate", x.cfg.Agg.Name(), p.Name)
		}
		x.meta.Gates = append(x.meta.Gates, ParamMeta{Name: p.Name, Shape: p.Shape})
		x.meta.GateOrder = append(x.meta.GateOrder, m)
		if err := writeNPYIn(dir, p.Name+".npy", p.W, p.Shape...); err != nil {
			return err
		}
	}
	return writeGrads(dir, l.Params())
}

func writeGrads(dir string, params []*nn.Param) error {
	for _, p := range params {
		if err := writeNPYIn(dir, p.Name+".grad.npy", p.G, p.Shape...); err != nil {
			return err
		}
	}
	return nil
}

// writeNPYIn writes arr ([]float32, []int32 or []uint8) as dir/name, a
// NumPy array of the given shape (flat if none), making dir if needed.
// The files are scratch for one comparison: written whole, not synced.
func writeNPYIn(dir, name string, arr any, shape ...int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("torchref: %w", err)
	}
	var descr string
	var n int
	switch a := arr.(type) {
	case []float32:
		descr, n = "<f4", len(a)
	case []int32:
		descr, n = "<i4", len(a)
	case []uint8:
		descr, n = "|u1", len(a)
	default:
		panic(fmt.Sprintf("torchref: an array of %T", arr))
	}
	if len(shape) == 0 {
		shape = []int{n}
	}
	return os.WriteFile(filepath.Join(dir, name), npyBytes(descr, shape, arr), 0o644)
}

// npyBytes is the .npy file (format 1.0) of arr, little-endian: npyio
// walks every element by reflection, a hundred times slower on the
// exported steps' few million values.
func npyBytes(descr string, shape []int, arr any) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	header := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, tuple)
	// The magic, version and length take 10 bytes; the header ends in a
	// newline, padded with spaces so that the data starts 64-aligned.
	header += strings.Repeat(" ", 63-(10+len(header))%64) + "\n"
	var buf bytes.Buffer
	buf.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&buf, binary.LittleEndian, uint16(len(header)))
	buf.WriteString(header)
	binary.Write(&buf, binary.LittleEndian, arr) // a bytes.Buffer does not fail
	return buf.Bytes()
}

func writeJSON(path string, v any) error {
	err := atomicfile.Write(path, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	})
	if err != nil {
		return fmt.Errorf("torchref: %w", err)
	}
	return nil
}
