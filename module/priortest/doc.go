// Package priortest is the conformance suite of serket prior modules
// (module.PriorModel: SERKET's concept mixture, an HMM over time, a
// topic model, …). Every prior model, built in or plugged in, runs it
// from its own tests:
//
//	func TestConformance(t *testing.T) {
//		priortest.Run(t, priortest.Config{
//			New:         func() (module.PriorModel, error) { return hmm.New(cfg) },
//			Checksummed: true, // its checkpoint has a checksum
//		})
//	}
//
// Config.New must return a model in the same state at every call (seed
// its randomness): the suite compares one instance with another, and the
// one served over the bus with one called directly, exactly. A model's
// answers must be deterministic given its state and the query, whose
// Step seeds any randomness it has; nothing else may.
//
// # What it checks
//
// Each check is a subtest; the ones marked Saver run only for a model
// that is a module.Saver.
//
//   - Spec: PriorSpec validates (a bus name, a latent size > 0) and is the
//     same for every instance.
//   - Outputs: on random evidence (three terms, one of which saw nothing,
//     rows with no evidence in any term, dimensions with zero precision),
//     from a fresh model and a taught one, Prior writes every element it
//     is given (the suite primes Mu and LogVar with NaN: RunPrior fills
//     them with N(0, I), which a model that leaves some unwritten would
//     send for a category it meant to give), keeps the lengths, and gives
//     finite Mu and LogVar, |LogVar| ≤ bus.MaxPriorLogVar (the bound the
//     wire enforces), Concept −1 or in [0, bus.MaxConcepts) and Prob in
//     [0, 1]; the bus.PriorReply RunPrior would build from them passes
//     bus.Marshal and bus.UnmarshalFrom with the bus.Expect the
//     integrator applies, and decodes to the same values. Two fresh
//     instances answer alike.
//   - InferenceDoesNotLearn: fresh and taught, a query with Learn false
//     answers the same when repeated, also after other non-learning
//     queries, and a Saver's checkpoint stays byte for byte the same.
//   - Learning: Config.Warmup + Config.LearnSteps training calls on
//     evidence of three well-separated clusters change the prior the
//     model gives the same items, and a Saver's checkpoint; two instances
//     taught the same calls answer, and save, alike.
//   - Checkpoint (Saver): a fresh instance restored from a taught one's
//     checkpoint saves the same bytes, answers alike, and learns alike
//     from the next training call.
//   - DamagedCheckpoints (Saver): Restore of an empty input, 64 KiB of
//     zero bytes (what /dev/zero gives), the first half of a checkpoint
//     and one with its last byte cut fails and leaves the model as it was
//     (its checkpoint and its answers). Of a checkpoint with its middle
//     byte flipped, the suite demands a refusal (model unchanged) when
//     Config.Checksummed says the format has a checksum; without one it
//     takes a refusal or a restore after which the model still gives
//     valid priors (the Outputs rules).
//   - Wire: the model served by module.RunPrior (role "prior", training
//     allowed) on an in-process nats-server, as the integrator speaks to
//     it; only for a model that passed Spec and Outputs (RunPrior answers
//     outputs of other lengths than it gave with an error). Inference: a
//     PriorRequest is answered with a valid PriorReply of
//     the request's step, one term per term, equal to a direct call's.
//     Malformed: garbage bytes, a NaN or negative precision, an infinite
//     shift, a latent of the wrong size, terms of different batch sizes,
//     no terms, another wire version and another message type each get a
//     micro error reply and count as rejected; the model still answers
//     after them. ForgedTraining: a training request of a session the
//     module was never enrolled in, then of another session than its own,
//     then of its session but not from "integrator", then of its session from
//     "integrator" but on the inference subject (…prior.<m>: anyone may ask
//     there; training comes on …train.prior.<m>), is answered from the
//     model as it is: the "learned" counter of its status does not move,
//     "refused" does, its answers stay a fresh model's and a Saver's
//     checkpoint file stays the same. Training: once enrolled, every
//     training request of its session is learned from ("learned" counts
//     them) exactly as direct calls learn; a Saver's checkpoint saved over
//     the bus is its Save behind the run's label, and restoring it over
//     the bus rolls back a later step.
//
// Training calls number their steps from 1; inference queries use steps
// of their own. The suite runs in a few seconds for a small model; its
// costs are Warmup + LearnSteps training calls, some ten times, and one
// nats-server per Wire check.
package priortest
