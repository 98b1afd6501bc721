// Package mixture is the uniform mixture of diagonal Gaussian experts that
// mixture-of-experts multimodal VAEs use as their joint posterior, and the
// exact gradients of its stratified ELBO: MMVAE (Shi et al. 2019,
// "Variational Mixture-of-Experts Autoencoders for Multi-Modal Deep
// Generative Models") mixes the modules' posteriors, and MoPoE (Sutter et
// al. 2021, "Generalized Multimodal ELBO") mixes the products of experts of
// subsets of them.
//
// In each row the joint posterior is the mixture of the M components present
// in that row,
//
//	q(z|X) = (1/M) sum_k q_k(z),  q_k = N(mu_k, diag(exp(l_k))),
//
// and the stratified ELBO draws one latent from each component (stratum) r
// and averages:
//
//	ELBO = (1/M) sum_r [ loglik(z_r) - beta*(log q(z_r|X) - log N(z_r; 0, I)) ],
//	z_r  = mu_r + exp(l_r/2)*eps_r.
//
// This is the objective of the MMVAE paper with one sample per stratum (in
// the authors' code, m_iwae_looser with K = 1; their function named m_elbo
// is a different, importance-weighted objective with each component's
// closed-form KL). For stratum r a Mixture draws z_r (Sample), gives each
// row's factor 1/M (Weights), the one-sample penalty log q - log p and its
// weighted sum (Penalty), and adds to every component's gradient (Backward).
// The decoders stay with the caller, who passes their gradient with
// respect to z, each row weighed by its Weights.
//
// Backward is the full derivative of the one-sample estimate, as automatic
// differentiation of that objective gives it: through z_r (the
// reparameterisation path) and through log q's direct dependence on every
// component's mu_k and l_k (the score part). The score part has zero mean
// only when summed over all the strata of a row (their average is an
// expectation under q itself); dropping it would give the path-derivative
// estimator that DReG reduces to at one sample (MMVAE's m_dreg_looser),
// whose strata are biased one by one. Keeping it makes each stratum's
// gradient the exact gradient of its own term, which is what finite
// differences check and what lets a caller weight or skip strata.
//
// For MoPoE the caller fuses each subset with package poe and passes the
// fused Mu and LogVar as a component, then chains the component's gradient
// into that subset's poe.Fused.Backward, which takes dL/dvariance:
// dvar = DLogVar / Var. A fused log-variance is clamped here like any other,
// so a subset whose experts all sit near -MaxLogVar can fall below the bound
// and get no DLogVar. (Sutter et al.'s reference code trains MoPoE
// differently: one subset sampled per row, and the weighted sum of the
// subsets' closed-form KLs, an upper bound on the mixture's, which
// poe.Fused.KL gives.)
//
// Rows work as in poe: a nil Present means every row, and a component absent
// from a row is left out of that row's mixture and gets no gradient there. A
// row without stratum r has weight 0 and contributes nothing. Parameters and
// results are float32, B×D row-major; the arithmetic is float64, with
// responsibilities by log-sum-exp so that components far apart neither
// overflow nor underflow. Log-variances are clamped with poe.ClampLogVar and
// get zero gradient outside ±poe.MaxLogVar. Mismatched lengths and misuse
// panic with a message that starts "mixture:".
package mixture
