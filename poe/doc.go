// Package poe is the product of Gaussian experts that fuses modules'
// posteriors into one shared latent, and its exact gradients (DESIGN.md
// section 3): the fused mean and variance of any set of diagonal Gaussian
// experts and the N(0, I) prior, samples of it by reparameterisation, its
// KL divergence from the prior, and the gradient of an objective with
// respect to every expert's mean and log-variance.
//
// It is arithmetic only, with no bus and no modules: the integrator fuses
// with it in training, inference and streaming, and evaluation fuses with
// it to score a trained model. Buffers live in a Fused, reused step after
// step (nothing allocates once it has grown), and results go into the
// caller's slices. Log-variances are clamped to ±MaxLogVar; mismatched
// lengths panic with a message that starts "poe:".
package poe
