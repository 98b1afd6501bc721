package module

import (
	"fmt"
	"io"

	"github.com/serket-go/serket/bus"
)

// Batch is a batch of observations in a modality's own representation
// (pixels, token ids, spectrogram frames, …). The SDK never looks inside; it
// only passes a Batch from the modality's LoadBatch or Parse back to the same
// modality's Encode and Decode.
type Batch interface {
	// Len is the number of rows (samples).
	Len() int
}

// Spec describes a modality. It does not change while the modality runs.
type Spec struct {
	Name       string // module name: a subject token, see bus.ValidName
	Latent     int    // D, the size of the shared latent
	Likelihood string // the decoder's likelihood, e.g. "bernoulli", "categorical", "gaussian"
	// Private is P, the size of a private latent the modality keeps
	// beside the shared one (0: none). With P > 0 its Encode writes, and
	// its Decode, LogLik, Means and Render read, rows of D + P (the
	// shared D first); the SDK shows the rest of the pipeline D only
	// (see Options.Private).
	Private int
}

// Validate reports what is wrong with the spec, if anything.
func (s Spec) Validate() error {
	if !bus.ValidName(s.Name) {
		return fmt.Errorf("module: name %q: want lower-case letters, digits and '-', starting with a letter, at most 32 bytes", s.Name)
	}
	if s.Latent < 1 || s.Latent > 4096 {
		return fmt.Errorf("module %s: latent size %d: want 1 to 4096", s.Name, s.Latent)
	}
	if s.Likelihood == "" {
		return fmt.Errorf("module %s: likelihood is empty", s.Name)
	}
	if s.Private < 0 || s.Private > 4096 {
		return fmt.Errorf("module %s: private latent size %d: want 0 to 4096", s.Name, s.Private)
	}
	return nil
}

// Modality is what every modality implements: an encoder q(z|x) and a
// decoder p(x|z) over a latent of Spec().Latent dimensions (and
// Spec().Private more of its own, if it keeps a private latent).
//
// Slices are row-major B×D (mu, logvar, z, dz) or B (ll, w), B = x.Len().
// The SDK calls the methods of one Modality from one goroutine at a time.
type Modality interface {
	// Spec describes the modality.
	Spec() Spec

	// Encode writes the posterior q(z|x_i) = N(mu_i, exp(logvar_i)) of
	// every row of x into mu and logvar. It must be deterministic.
	Encode(x Batch, mu, logvar []float32) error

	// Decode scores x under the decoder at z: ll[i] = log p(x_i | z_i),
	// and dz[i] = w[i] · ∂ll[i]/∂z_i. Rows with w[i] = 0 (absent
	// observations) get ll[i] = 0 and a zero dz row. A Learner also adds
	// Σ_i w[i] ∂ll[i]/∂θ to its accumulated decoder gradients.
	Decode(z []float32, x Batch, w, ll, dz []float32) error
}

// Learner is a Modality that trains. Within one training step the SDK calls
// Encode once, Decode once per plan term the modality is a target of (same
// batch), or DecodeMany once with all of them for a MultiDecoder, then
// Learn once, or Discard if the step is abandoned; no other call comes in
// between.
type Learner interface {
	Modality

	// Learn back-propagates dmu and dlogvar, the gradients of the step's
	// objective with respect to the posterior of the latest Encode (B×D),
	// through the encoder, then takes one optimizer step that ascends the
	// objective on every parameter, using the decoder gradients accumulated
	// by Decode since the last Learn or Discard, and clears them.
	Learn(dmu, dlogvar []float32) error

	// Discard clears gradients accumulated since the last Learn.
	Discard()
}

// MultiDecoder is a Learner that decodes all of a step's terms in one
// pass: DecodeMany(zs, x, ws, lls, dzs) must do what Decode(zs[t], x,
// ws[t], lls[t], dzs[t]) for t = 0, 1, … does, the decoder gradients summed
// over the terms, so that it can run its matrix products on every term's
// rows at once (bigger products run faster). The SDK calls it in place of
// one Decode per term when a modality has it (see DecodeTerms), with a
// private latent too: every term's private part is drawn first, in term
// order, and the gradients are taken back through the draws after.
type MultiDecoder interface {
	DecodeMany(zs [][]float32, x Batch, ws, lls, dzs [][]float32) error
}

// DecodeTerms decodes the latents zs of one batch x, term by term or, when
// m is a MultiDecoder, in one call: the SDK's training step and any
// reference that recomputes it decode this way, so that they compute the
// same thing.
func DecodeTerms(m Modality, zs [][]float32, x Batch, ws, lls, dzs [][]float32) error {
	if len(ws) != len(zs) || len(lls) != len(zs) || len(dzs) != len(zs) {
		return fmt.Errorf("module %s: %d latents with %d weights, %d likelihoods and %d gradients", m.Spec().Name, len(zs), len(ws), len(lls), len(dzs))
	}
	if md, ok := As[MultiDecoder](m); ok && len(zs) > 1 {
		return md.DecodeMany(zs, x, ws, lls, dzs)
	}
	for t := range zs {
		if err := m.Decode(zs[t], x, ws[t], lls[t], dzs[t]); err != nil {
			return err
		}
	}
	return nil
}

// Scorer is a Modality that computes log-likelihoods without the gradient
// work of Decode: LogLik writes log p(x_i | z_i) for every row of x into
// ll. Evaluation (importance sampling needs thousands of latents per item)
// uses it when present, and Decode otherwise.
type Scorer interface {
	LogLik(z []float32, x Batch, ll []float32) error
}

// Featurer is a Modality that shows its observations and its decoder's
// means as vectors of one length, FeatureLen (pixels, log-mel frames,
// token probabilities, a sensor's readings): evaluation trains a judge (a
// classifier) on the features of real, labelled items and asks it the
// class of the means the decoder generates. Features writes x's rows
// (FeatureLen each) into dst; Means writes the decoder's mean at each row
// of z (n×D) into dst.
type Featurer interface {
	FeatureLen() int
	Features(x Batch, dst []float32) error
	Means(z []float32, n int, dst []float32) error
}

// Picker is a Batch that can be subset: Pick returns the given rows, in
// that order, repeats allowed. Evaluation uses it to score one item under
// many latents, or to take a subset of a batch.
type Picker interface {
	Pick(rows []int) Batch
}

// Loader is a Modality with a dataset of its own: it loads its observations
// by sample id. Only this modality ever reads its shard.
type Loader interface {
	// LoadBatch returns the observations of ids and present[i], whether this
	// modality has item ids[i]; an absent item's row of x is a placeholder.
	// ids belongs to the SDK: it stays valid until the step ends, and a
	// Batch that keeps it must not keep it longer.
	LoadBatch(ids []uint64) (x Batch, present []bool, err error)
}

// Recycler is a Loader that can fill a batch it returned before instead
// of allocating a new one each step (a batch of spectrograms is megabytes,
// and fresh memory costs page faults every step). Once a training step is
// over, the SDK, which then holds no reference to the step's batch, hands
// it back with Recycle; a later LoadBatch may return it refilled, and must
// then leave no trace of its old contents (an absent item's placeholder
// row included). Callers other than the SDK need not recycle.
type Recycler interface {
	Recycle(x Batch)
}

// Parser turns raw observations a person gives (a file's bytes, typed text)
// into a batch of len(raw) rows.
type Parser interface {
	Parse(raw []bus.Payload) (Batch, error)
}

// Renderer decodes latents into outputs a person can look at or listen to:
// one payload per row of z (n×D), rendering the decoder's mean.
type Renderer interface {
	Render(z []float32, n int) ([]bus.Payload, error)
}

// Saver is a Modality whose parameters (and optimizer state) can be saved
// and restored. Restore must leave the modality unchanged when it fails.
type Saver interface {
	Save(w io.Writer) error
	Restore(r io.Reader) error
}
