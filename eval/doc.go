// Package eval measures a running pipeline of any modules on the test
// split of their dataset, reaching them over the bus as the integrator
// does (Connect), whatever their language or process:
//
//   - coherence: how often what a module generates from every subset of the
//     others (and from the prior) has the class of the item it came from,
//     told by a Judge (a classifier of the module's features, or a ranking
//     of its classes' items by its decoder's likelihood);
//   - importance-sampled log-likelihoods (IWAE) of every module together
//     and of each given the others, scored by the modules themselves;
//   - linear probes and k-means of the shared latent.
//
// Evaluate runs them all; Report draws the result, each module's
// generations shown as their media type. The labels come from a file the
// pipeline names (ReadLabels): no module ever reads them, so evaluation
// is the only place where they meet the model.
//
// eval never prints. Long work (Evaluate's phases, training a judge) tells
// a Progress callback how far it has got, and the caller shows it.
package eval
