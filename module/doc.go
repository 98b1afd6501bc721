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
// Its main takes the settings of a module process with [Flags]: the
// module-process contract (package procenv), the same flags `serket module
// KIND` takes, with their defaults from the environment `serket up` and
// `serket train` set. They sit beside the module's own flags on its flag set
// (the standard library's or pflag's), and the options they give Run tell
// the launcher when the module is ready:
//
//	var f module.Flags
//	f.Register(flag.CommandLine, "touch", 64)
//	flag.Parse()
//	if err := f.Resolve(); err != nil { … }
//	log, err := f.Logger(os.Stderr)
//	…
//	err = module.Run(ctx, m, f.Options(log))
//
// The SDK depends on package bus (and procenv, which imports nothing of
// serket's), not on serket's dataset or modalities.
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
