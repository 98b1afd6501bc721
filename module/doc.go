// Package module is serket's module SDK: the interface a modality implements
// and Run, which connects it to a pipeline as its own process.
//
// A modality is small: [Modality] (encode to a Gaussian posterior, decode a
// latent to a log-likelihood and its gradient) plus optional capabilities the
// SDK finds by type assertion — [Learner] (train), [Loader] (own dataset
// shard), [Parser] and [Renderer] (raw input and output for people), [Saver]
// (checkpoints). A new modality implements these in its own package and
// calls [Run] from its main; nothing in serket has to change.
//
// [Run] registers a nats.go micro service named serket-<module> (so
// `nats micro ls`, PING, INFO and STATS work), and speaks the protocol of the
// pipeline: encode and decode requests for inference, and the training step
// (StepBegin → Posterior → Latent → ZGrad → ExpertGrad). All calls into the
// modality come from one goroutine; an inference request that arrives in the
// middle of a training step waits until the step ends, so a modality may keep
// its activations between Encode and Learn.
//
// Package moduletest is the conformance suite every modality should pass.
package module
