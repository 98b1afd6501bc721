// Package aggregate is how a multimodal model's joint posterior is built
// from its modules' posteriors (the experts), the survey's central choice
// for joint models (Suzuki & Matsuo): a product of experts with the N(0, I)
// prior (MVAE), a uniform mixture of them (MMVAE), a mixture of the
// products of their subsets (MoPoE), or a product whose weights are
// learned (Gated, a Learned aggregation: parameters the integrator trains
// and keeps). An Aggregation does both halves:
//
//   - training (TermFusion): a plan term's latent, the row weights of its
//     strata, its KL-like penalty and the gradient back to every expert,
//     on the arithmetic of packages poe and mixture; the integrator's
//     StepMath drives it, and its gradients are checked there by finite
//     differences of the whole step;
//   - inference (Posterior): a batch's joint posterior given any subset of
//     experts, its mean and log-variance, draws and their log-density, as
//     the integrator answers inferences and evaluation measures a run.
//
// It has no bus and no modules. Parse reads a name ("poe", "moe",
// "mopoe", "gpoe").
package aggregate
