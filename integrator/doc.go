// Package integrator fuses the modules' posteriors into one shared latent and
// serves it.
//
// poe.go is the product of experts with the N(0, I) prior expert and its
// exact gradients (DESIGN.md section 3). service.go is the integrator process:
// a micro service (serket-integrator) that discovers the pipeline's modules
// through micro's $SRV.INFO, so a module started later joins without a
// restart and one that stops answering is dropped, and answers inference
// requests (DESIGN.md section 5): the observing modules encode, whatever
// arrived before the deadline is fused, the wanted modules decode, and the
// reply carries the latent, who contributed, why others did not, and the
// outputs.
//
// The integrator never imports a modality; it knows modules only by the
// names, latent sizes and likelihoods they announce.
package integrator
