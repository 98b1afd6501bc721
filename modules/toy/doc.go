// Package toy is a linear-Gaussian modality for tests, examples and the
// foundation's default pipeline.
//
// Its data are synthetic and paired across every toy module with the same
// data seed: item id has a latent z_id ~ N(0, I_D) shared by all of them, and
// the module named m observes x = A_m z_id + c_m + σ ε, with A_m and c_m drawn
// from a seed derived from m. So observing one toy module tells you about the
// others, which is what cross-modal inference needs, and the true
// log-likelihood is known in closed form.
//
// The model is linear too: the encoder is mu = W x + b with a learned
// log-variance per latent dimension, and the decoder is p(x|z) = N(V z + c,
// σ² I) with σ fixed. Raw input is text: n numbers separated by commas or
// spaces; rendered output is the decoder mean in the same form.
package toy
