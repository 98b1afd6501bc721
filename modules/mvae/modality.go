package mvae

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/nn"
)

// Parts are what a modality on mvae networks says about itself; NewModality
// builds the rest.
type Parts struct {
	Kind string // the checkpoint's kind: the modality's, whatever its module is called
	Name string // the module's name (Spec.Name); default Kind
	Net  Config // the networks; In and Out are the modality's sizes (required)
	// Likelihood is what the decoder's output means (required).
	Likelihood Likelihood
	// Meta is saved with every checkpoint.
	Meta map[string]string
	// Check, when not nil, vets the metadata of a checkpoint being
	// restored, before anything changes (the caption vocabulary, say).
	Check func(meta map[string]string) error
}

// Modality is a module.Modality on a Net, with everything the networks
// alone decide: Encode, Decode, Learn, Discard, LogLik, Save and Restore,
// and the features evaluation judges (module.Featurer).
// A modality embeds *Modality[B] for its batch type B and adds what only it
// knows: loading, parsing and rendering.
type Modality[B Batch] struct {
	net   *Net
	spec  module.Spec
	kind  string
	lik   Likelihood
	meta  map[string]string
	check func(map[string]string) error
	// The decoder's step buffers: its output's gradient, and the stacked
	// latents and their gradients of DecodeMany.
	dout, zs, dzs []float32
}

var (
	_ module.Learner      = (*Modality[*Rows])(nil)
	_ module.Saver        = (*Modality[*Rows])(nil)
	_ module.Scorer       = (*Modality[*Rows])(nil)
	_ module.Featurer     = (*Modality[*Rows])(nil)
	_ module.MultiDecoder = (*Modality[*Rows])(nil)
)

// NewModality returns the modality with fresh networks (deterministic for
// p.Net.Seed). Its errors start with p.Kind.
func NewModality[B Batch](p Parts) (*Modality[B], error) {
	if p.Name == "" {
		p.Name = p.Kind
	}
	if p.Likelihood == nil {
		return nil, fmt.Errorf("%s: no likelihood", p.Kind)
	}
	net, err := New(p.Net)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Kind, err)
	}
	spec := module.Spec{Name: p.Name, Latent: net.Config().Latent, Private: net.Config().Private, Likelihood: p.Likelihood.Name()}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", p.Kind, err)
	}
	return &Modality[B]{net: net, spec: spec, kind: p.Kind, lik: p.Likelihood, meta: p.Meta, check: p.Check}, nil
}

// Spec implements module.Modality.
func (m *Modality[B]) Spec() module.Spec { return m.spec }

// Net exposes the networks (benchmarks, evaluation and tests read them).
func (m *Modality[B]) Net() *Net { return m.net }

// Likelihood is what the decoder's output means, as Parts gave it (a
// reference that recomputes the step reads a Gaussian's variance here).
func (m *Modality[B]) Likelihood() Likelihood { return m.lik }

// batch is x as this modality's batch type, its input the encoder's size:
// the SDK hands back what LoadBatch or Parse made, so anything else is a
// caller's mistake, better an error than a panic inside nn.
func (m *Modality[B]) batch(x module.Batch) (B, error) {
	b, ok := x.(B)
	if !ok {
		return b, fmt.Errorf("%s: batch of type %T, want %T", m.kind, x, b)
	}
	if in := m.net.Config().In; len(b.Input()) != b.Len()*in {
		return b, fmt.Errorf("%s: batch of %d rows holds %d values, want %d a row", m.kind, b.Len(), len(b.Input()), in)
	}
	return b, nil
}

// Encode implements module.Modality.
func (m *Modality[B]) Encode(x module.Batch, mu, logvar []float32) error {
	b, err := m.batch(x)
	if err != nil {
		return err
	}
	m.net.Encode(b.Input(), b.Len(), mu, logvar)
	return nil
}

// Decode implements module.Modality: the likelihood of x under the
// decoder's output at z, its gradient back-propagated into dz (and into
// the decoder's accumulated parameter gradients).
func (m *Modality[B]) Decode(z []float32, x module.Batch, w, ll, dz []float32) error {
	b, err := m.batch(x)
	if err != nil {
		return err
	}
	out := m.net.Forward(z, b.Len())
	m.dout = grow(m.dout, len(out))
	m.lik.LogLik(ll, m.dout, out, b, w)
	m.net.Backward(m.dout, b.Len(), dz)
	return nil
}

// DecodeMany implements module.MultiDecoder: the terms' latents stacked
// into one decoder pass of len(zs)·B rows, each term's slice of the output
// scored against x with its own weights, and one backward pass: the same
// sums as one Decode per term, in fewer and larger matrix products.
func (m *Modality[B]) DecodeMany(zs [][]float32, x module.Batch, ws, lls, dzs [][]float32) error {
	b, err := m.batch(x)
	if err != nil {
		return err
	}
	n, wd, od := b.Len(), m.net.Config().Width(), m.net.Config().Out
	for t, z := range zs {
		if len(z) != n*wd || len(dzs[t]) != n*wd || len(lls[t]) != n {
			return fmt.Errorf("%s: term %d: %d latent values, %d gradients and %d likelihoods for %d rows of %d", m.kind, t, len(z), len(dzs[t]), len(lls[t]), n, wd)
		}
	}
	k := len(zs)
	m.zs, m.dzs = grow(m.zs, k*n*wd), grow(m.dzs, k*n*wd)
	for t, z := range zs {
		copy(m.zs[t*n*wd:], z)
	}
	out := m.net.Forward(m.zs, k*n)
	m.dout = grow(m.dout, len(out))
	for t := range zs {
		lo, hi := t*n*od, (t+1)*n*od
		m.lik.LogLik(lls[t], m.dout[lo:hi], out[lo:hi], b, ws[t])
	}
	m.net.Backward(m.dout, k*n, m.dzs)
	for t := range zs {
		copy(dzs[t], m.dzs[t*n*wd:(t+1)*n*wd])
	}
	return nil
}

// LogLik implements module.Scorer.
func (m *Modality[B]) LogLik(z []float32, x module.Batch, ll []float32) error {
	b, err := m.batch(x)
	if err != nil {
		return err
	}
	m.lik.LogLik(ll, nil, m.net.Forward(z, b.Len()), b, nil)
	return nil
}

// Output runs the decoder on n latents z (n×Width) and returns its output
// (n×Out), valid until the decoder runs again: what Render turns into
// something a person can look at.
func (m *Modality[B]) Output(z []float32, n int) ([]float32, error) {
	if d := m.net.Config().Width(); n < 0 || len(z) != n*d {
		return nil, fmt.Errorf("%s: %d latent values for %d rows of %d", m.kind, len(z), n, d)
	}
	return m.net.Forward(z, n), nil
}

// FeatureLen implements module.Featurer: an observation's input values,
// which are the decoder's output's too (pixels, log-mel frames, one-hot
// tokens, readings).
func (m *Modality[B]) FeatureLen() int { return m.net.Config().In }

// Features implements module.Featurer: the batch's input values.
func (m *Modality[B]) Features(x module.Batch, dst []float32) error {
	b, err := m.batch(x)
	if err != nil {
		return err
	}
	if len(dst) != len(b.Input()) {
		return fmt.Errorf("%s: %d features for %d values", m.kind, len(dst), len(b.Input()))
	}
	copy(dst, b.Input())
	return nil
}

// Means implements module.Featurer: the likelihood's mean at the decoder's
// output for each latent.
func (m *Modality[B]) Means(z []float32, n int, dst []float32) error {
	cfg := m.net.Config()
	if cfg.In != cfg.Out {
		return fmt.Errorf("%s: the decoder's output (%d values) is not of the input's size (%d): its means are no features", m.kind, cfg.Out, cfg.In)
	}
	out, err := m.Output(z, n)
	if err != nil {
		return err
	}
	if len(dst) != len(out) {
		return fmt.Errorf("%s: %d means for %d values", m.kind, len(dst), len(out))
	}
	m.lik.Mean(dst, out)
	return nil
}

// Learn implements module.Learner.
func (m *Modality[B]) Learn(dmu, dlogvar []float32) error { return m.net.Learn(dmu, dlogvar) }

// Discard implements module.Learner.
func (m *Modality[B]) Discard() { m.net.Discard() }

// Save implements module.Saver: parameters, Adam's state and the
// metadata, in package nn's checkpoint format of the modality's kind.
func (m *Modality[B]) Save(w io.Writer) error { return m.net.Save(w, m.kind, m.meta) }

// Restore implements module.Saver. A damaged checkpoint, one of another
// kind or shape, or one whose metadata Check refuses changes nothing.
func (m *Modality[B]) Restore(r io.Reader) error {
	if m.check == nil {
		_, err := m.net.Restore(r, m.kind)
		return shapeHint(err)
	}
	// nn.Load gives the metadata only once it has changed the parameters:
	// read the checkpoint whole, restore it into a scratch network first,
	// vet that, then restore for real. Reading whole is bounded by what a
	// checkpoint of this network can hold.
	limit := m.net.CheckpointBound()
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return err
	}
	if int64(len(data)) > limit {
		return fmt.Errorf("checkpoint larger than this network's can be (%d bytes)", limit)
	}
	scratch, err := New(m.net.Config())
	if err != nil {
		return err
	}
	meta, err := scratch.Restore(bytes.NewReader(data), m.kind)
	if err != nil {
		return shapeHint(err)
	}
	if err := m.check(meta); err != nil {
		return err
	}
	_, err = m.net.Restore(bytes.NewReader(data), m.kind)
	return err
}

// shapeHint says what usually makes a sound checkpoint not fit: networks
// of other sizes.
func shapeHint(err error) error {
	if err != nil && errors.Is(err, nn.ErrBadCheckpoint) && !errors.Is(err, nn.ErrCorruptCheckpoint) && strings.Contains(err.Error(), "shape") {
		return fmt.Errorf("%w (it was trained with other network sizes: --latent, --private or --hidden)", err)
	}
	return err
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}
