// Package mvae is what every modality on the MVAE paper's networks (Wu &
// Goodman 2018) shares: the MLP encoder and decoder on package nn, with
// Adam (Net); the module.Modality built on them (Modality), which forwards
// encoding, decoding, learning and checkpoints to the networks, given a
// modality's batch type and Likelihood; and a modality's own shard of a
// prepared dataset (Source).
//
// The encoder maps In inputs through Hidden-unit SiLU layers to 2·Latent
// outputs: the posterior mean, then the log-variance. The decoder maps a
// latent through Hidden-unit SiLU layers to Out outputs whose meaning (logits,
// means) belongs to the modality's likelihood. A modality says how its batch
// is the encoder's input (Batch) and what the decoder's output means
// (Likelihood: Bernoulli, Gaussian, or its own), embeds *Modality of its
// batch type, and writes only what is its own: loading, parsing, rendering.
//
//	// Touch reads 16 numbers an item; mvae.Rows is its batch.
//	type Touch struct {
//		*mvae.Modality[*mvae.Rows] // Spec, Encode, Decode, LogLik, Learn, Discard, Save, Restore, Features, Means
//		data *Data                  // what LoadBatch, Parse and Render need
//	}
//
//	m, err := mvae.NewModality[*mvae.Rows](mvae.Parts{
//		Kind:       "touch", // its checkpoints' kind
//		Net:        mvae.Config{Latent: 64, In: 16, Out: 16},
//		Likelihood: mvae.Gaussian{},
//	})
//
// A Modality keeps activations and buffers between calls, so it is used
// from one goroutine at a time, as the SDK uses a module.Modality.
package mvae
