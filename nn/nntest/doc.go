// Package nntest checks gradients of nn layers and of scalar functions such
// as the log-likelihoods against central finite differences.
//
// The checks evaluate in float32, as the layers do, so they use a large step
// (1e-2) and compare whole vectors over a sample of at most 64 coordinates
// per tensor: the relative error ‖fd − analytic‖ / max(‖fd‖, ‖analytic‖)
// must stay below 1e-2. Functions with kinks (ReLU) must be checked away
// from them; GradCheck draws inputs with |x| ≥ 0.1 for that reason.
package nntest
