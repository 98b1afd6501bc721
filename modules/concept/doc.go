// Package concept is the concept-formation part of a SERKET-style
// multimodal VAE: a Bayesian Gaussian mixture over the shared latent z
// whose components are the concepts, learned online from the VAE's
// posteriors by stochastic variational inference (SVI; Hoffman, Blei,
// Wang and Paisley 2013, "Stochastic Variational Inference"), and used in
// turn as the VAE's prior: a component's Gaussian is the prior of the
// latents assigned to it.
//
// # Model
//
// K components (a truncation: the mixture uses as many as the data need),
// D latent dimensions, diagonal covariances; per component k and dimension
// d,
//
//	π ~ Dirichlet(α0, …, α0)
//	τ_kd ~ Gamma(a0, b0)                    (shape, rate)
//	μ_kd | τ_kd ~ N(m0, 1/(β0·τ_kd))
//	c_n ~ Categorical(π),  z_n | c_n = k ~ N(μ_k, diag 1/τ_k).
//
// An item is not a point but a diagonal Gaussian q_n(z) = N(x_n, diag v_n),
// a posterior of the VAE, so its expected sufficient statistics are E[z] =
// x and E[z²] = x² + v (v = 0: a point).
//
// # Variational posterior and updates
//
// q(π) = Dirichlet(α), q(μ_kd, τ_kd) = NormalGamma(m, β, a, b), q(c_n) =
// Categorical(r_n). The local step gives each item of a minibatch its
// responsibilities
//
//	r_nk ∝ exp ℓ_nk,  ℓ_nk = E[log π_k] + Σ_d ½(E[log τ] − log 2π − E[τ]·((x−m)² + v) − 1/β)
//
// with E[log π_k] = ψ(α_k) − ψ(Σα), E[τ] = a/b, E[log τ] = ψ(a) − log b.
// A batch of b items from a data set of n stands for n/b copies of itself,
// so with s = n/b, N = s·Σ_n r_nk, S1 = s·Σ r·x, S2 = s·Σ r·(x² + v), the
// batch-VB posterior it implies is
//
//	α̂_k = α0 + N,  β̂ = β0 + N,  m̂ = (β0·m0 + S1)/β̂,  â = a0 + N/2,
//	b̂ = b0 + ½(S2 − S1²/N + β0·N·(S1/N − m0)²/β̂).
//
// The global step moves the natural parameters (α; βm, β, a, 2b + βm²),
// in which the natural gradient of the ELBO is λ̂ − λ, a step ρ_t towards
// it: λ ← (1−ρ)λ + ρλ̂, with ρ_t = (Tau0 + t)^(−Kappa) after t steps, or
// a constant Config.Rho. In (m, β, a, b) that reads
//
//	β' = (1−ρ)β + ρβ̂,  m' = ((1−ρ)βm + ρβ̂m̂)/β',  a' = (1−ρ)a + ρâ,
//	b' = (1−ρ)b + ρb̂ + ½(1−ρ)ρ·ββ̂(m − m̂)²/β',
//
// the last form keeping b' > 0 without a cancellation. With ρ = 1 and n =
// b (Rho: 1, the whole data set as the batch, NoMerge) an Update is one
// iteration of batch (coordinate-ascent) VB, and UpdateStats.ELBO never
// decreases from one to the next.
//
// # Merge moves
//
// Components that split one cluster between them leave VB's fixed points
// only slowly, and SVI's shrinking steps can freeze them for good (in 16
// latent dimensions, some runs kept 11 or 12 components for 10 clusters
// for 8 epochs). So after each step the mixture merges pairs of
// components where that raises the ELBO, as the memoized online VB of
// Hughes and Sudderth (2013) does. A merge adds one component's effective statistics (its
// natural parameters less the prior's) to the other's and returns it to the
// prior; with q(π, μ, τ) optimal given the statistics the change of the
// ELBO is a difference of log-normalisers (Dirichlet: Σ log Γ(α_k);
// Normal-Gamma: log Γ(a) − a·log b − ½·log β per dimension) less the
// entropy of the responsibilities the merge loses, which the batch
// estimates (times n/b) for the pairs of components that shared any of its
// items. Pairs are merged greedily, best gain first, each component in one
// merge per step. Config.NoMerge turns this off.
//
// # Initialisation
//
// The first Update seeds the K component means from its batch by k-means++
// (D² sampling, with a PCG generator seeded by Seed; a batch with fewer
// distinct items than K gives the rest draws around the batch's mean),
// with the prior's precision and a share n/K of the data each, so that
// the first local step splits the batch among them. Components are only
// ever created there: a concept with no or one or two items in the first
// batch can end up absorbed by a neighbour, so give the first Update a
// batch large enough to hold every concept a few times, and make it one
// from a latent space that already has its structure.
//
// # Inference
//
// Assign is the E-step without learning, for evidence about z given as a
// diagonal Gaussian in natural parameters (precision, precision·mean; a
// precision of 0 says nothing about that dimension). Each component is
// taken as the Gaussian N(m_k, σ²_k) with σ² = b(β+1)/(aβ), the squared
// scale of the posterior predictive (a Student-t with 2a degrees of
// freedom): unlike 1/E[τ] = b/a it keeps the uncertainty of the mean, so a
// component at the prior is broad (σ² ≈ 100 with the defaults) and no
// evidence picks it; unlike the t's variance b(β+1)/((a−1)β) it is finite
// for every a > 0. For a component with many items all three agree. Fuse
// combines the chosen component's Gaussian with the evidence into q_n, what
// a caller learns from.
//
// # Defaults
//
// K = 30. α0 = 0.01, a sparse Dirichlet; on 10 clusters in 16
// and 32 dimensions α0 = 0.001, 0.01 and 1 gave the same components and
// assignments, with merges or without, since VB empties a component
// through the Occam factors of its Normal-Gamma (and the merges), not
// through α0; what α0 sets is the expected weight of an emptied component,
// α0/(Kα0 + n), far below DefaultMinShare. β0 = 0.01: the prior of a mean
// has 100 times the variance of the component, weak for a latent of unit
// scale, and an empty component's 1/β = 100 keeps it from taking items.
// a0 = b0 = 1: a precision of expected value 1 (a latent that is roughly
// standard normal) with the weight of two items. m0 = 0. Tau0 = 10 and
// Kappa = 0.7: a first step of ρ = 0.2 rather than 1 keeps the broad
// seeded components for a few steps instead of fitting them tightly to one
// batch; without merges, Tau0 = 1 left 19 to 27 components for 10 clusters
// after 3 epochs (D = 16 and 32) where Tau0 = 10 left 10 or 11, and with
// merges both find 10. Kappa in (0.5, 1] is what SVI's convergence needs.
// A latent space that keeps moving while the VAE trains is better tracked
// with a constant Rho.
//
// # The module
//
// Module serves a Mixture as a prior module (module.RunPrior; serket
// module concept). At each training step of its run it is given, for
// every term of the step, what the term's experts say of each item; it
// Assigns each item a category, sends that category's Gaussian back as
// the item's prior (the integrator fuses with it and takes the KL from
// it), and learns by one Update from the items' posteriors under those
// priors, q_n = prior × evidence, each item once, in the term whose
// experts say the most of it (the joint one): coordinate ascent
// alternates the VAE's gradient step with the mixture's SVI step on
// E_q[log p(z | c)]. Not every term's posterior: one item's latents
// given vision alone, language alone and all of them are not three items,
// and a mixture fitted to all of them found categories of which modality
// spoke rather than of what was seen (on the demo's budget, categories
// given every modality matched the classes worse than given vision
// alone). SVI rather than SERKET's
// collapsed Gibbs sampling because the data arrive as minibatches of a
// latent space that keeps moving: Gibbs would keep an assignment per item
// of the whole set, stale as soon as the encoders change, where SVI keeps
// only the global parameters and forgets old latents at the rate ρ_t. For
// its first Warmup steps it sends N(0, I) and learns nothing: the
// encoders' latent has no structure yet to seed categories from.
//
// # Conventions
//
// Inputs and outputs are float32, row-major B×D, variances as variances and
// log-variances as natural logs; the arithmetic is float64. Everything is
// deterministic given Seed and the sequence of calls. Update and Assign
// panic, with a message that starts "concept:", on mismatched lengths and
// on non-finite inputs or negative variances and precisions: the caller
// validates what comes from outside before it gets here. New returns
// errors wrapping ErrInvalidConfig; Restore returns errors wrapping
// ErrBadCheckpoint, and ErrCorruptCheckpoint for damage, and changes
// nothing when it fails. Update and Restore change the mixture; Assign and
// the inspectors only read it, so Assigns with their own Assignment and rng
// may run concurrently, with each other but not with Update or Restore.
package concept
