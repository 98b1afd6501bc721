package bus

import "fmt"

// Subjects is the subject scheme of one pipeline: every subject starts with
// serket.v<WireVersion>.<pipeline>. The zero value is not usable; use
// NewSubjects.
type Subjects struct {
	prefix string
}

// NewSubjects returns the scheme of the named pipeline ("" means "default").
// It returns an error if the name is not a valid subject token.
func NewSubjects(pipeline string) (Subjects, error) {
	if pipeline == "" {
		pipeline = DefaultPipeline
	}
	if !ValidName(pipeline) {
		return Subjects{}, fmt.Errorf("bus: pipeline name %q: want lower-case letters, digits and '-', starting with a letter, at most 32 bytes", pipeline)
	}
	return Subjects{prefix: fmt.Sprintf("serket.v%d.%s", WireVersion, pipeline)}, nil
}

// DefaultPipeline is the pipeline name used when none is given.
const DefaultPipeline = "default"

// Prefix is serket.v2.<pipeline>; Prefix()+".>" matches every subject of the pipeline.
func (s Subjects) Prefix() string { return s.prefix }

// Step is where the integrator announces each training step (StepBegin).
func (s Subjects) Step() string { return s.prefix + ".train.step" }

// Post is where module publishes its training posteriors (Posterior).
func (s Subjects) Post(module string) string { return s.prefix + ".post." + module }

// Latent is where the integrator broadcasts each step's latents (Latent).
func (s Subjects) Latent() string { return s.prefix + ".latent" }

// ZGrad is where module publishes its decoder gradients (ZGrad).
func (s Subjects) ZGrad(module string) string { return s.prefix + ".zgrad." + module }

// EGrad is where the integrator sends module its expert gradient (ExpertGrad).
func (s Subjects) EGrad(module string) string { return s.prefix + ".egrad." + module }

// Control is where the integrator sends module its training-run requests
// (Control → RunState): enrol, save, restore.
func (s Subjects) Control(module string) string { return s.prefix + ".train.ctl." + module }

// TrainStatus is module's training-status endpoint (a request; JSON reply).
func (s Subjects) TrainStatus(module string) string { return s.prefix + ".train.status." + module }

// TrainProgress is where the integrator reports how its training run goes
// (TrainProgress): a few times a second and at every epoch's end. Like
// every training subject, only the integrator may publish on it.
func (s Subjects) TrainProgress() string { return s.prefix + ".train.progress" }

// Infer is the integrator's inference endpoint (InferRequest → InferReply).
func (s Subjects) Infer() string { return s.prefix + ".infer" }

// Encode is module's encode endpoint (EncodeRequest → EncodeReply).
func (s Subjects) Encode(module string) string { return s.prefix + ".encode." + module }

// Decode is module's decode endpoint (DecodeRequest → DecodeReply).
func (s Subjects) Decode(module string) string { return s.prefix + ".decode." + module }

// Features is module's feature endpoint (FeatureRequest → FeatureReply).
func (s Subjects) Features(module string) string { return s.prefix + ".features." + module }

// Score is module's scoring endpoint (ScoreRequest → ScoreReply).
func (s Subjects) Score(module string) string { return s.prefix + ".score." + module }

// Prior is prior module's endpoint (PriorRequest → PriorReply): what
// anyone may ask (inference, evaluation, streaming). Nothing asked here
// is learned from.
func (s Subjects) Prior(module string) string { return s.prefix + ".prior." + module }

// PriorTrain is prior module's training endpoint: the integrator's
// training steps, which alone it learns from. Like every training
// subject, only the integrator may publish on it (Permissions).
func (s Subjects) PriorTrain(module string) string { return s.prefix + ".train.prior." + module }

// ObsPost is where module streams timestamped posteriors of its sensor (Posterior).
func (s Subjects) ObsPost(module string) string { return s.prefix + ".obs.post." + module }

// Belief is where the integrator streams fused beliefs (Belief).
func (s Subjects) Belief() string { return s.prefix + ".belief" }

// Said is where module publishes what it renders of each belief
// (DecodeReply), when it is asked to say beliefs.
func (s Subjects) Said(module string) string { return s.prefix + ".said." + module }

// Headers of sensor messages (raw observations on any subject a module
// streams from): the observation's media type and its time in Unix
// nanoseconds.
const (
	HeaderContentType = "Content-Type"
	HeaderTime        = "Serket-Time"
	// HeaderSeq carries the sequence number of the belief a module's
	// rendering on …said.<module> is of (HeaderTime then is the belief's).
	HeaderSeq = "Serket-Seq"
)

// Relative resolves a subject a person typed: one that already starts with
// "serket." or "$" is returned as is; anything else is taken as relative to
// the pipeline ("latent" → serket.v2.default.latent, "post.*" → …post.*).
func (s Subjects) Relative(subject string) string {
	if len(subject) >= 7 && subject[:7] == "serket." || len(subject) > 0 && subject[0] == '$' {
		return subject
	}
	if subject == "" || subject == ">" {
		return s.prefix + ".>"
	}
	return s.prefix + "." + subject
}

// ServiceName is the micro service name of a module or of the integrator.
func ServiceName(module string) string { return "serket-" + module }

// Metadata keys of every serket micro service.
const (
	MetaPipeline   = "pipeline"
	MetaLatent     = "latent"
	MetaLikelihood = "likelihood"
	MetaWire       = "wire"
	MetaModule     = "module"
	MetaRole       = "role" // "module", "prior" (RolePrior) or "integrator"
	MetaPID        = "pid"
	MetaHost       = "host"
	// MetaBLAS is the GEMM a Go module's networks run on (nn.Backend):
	// "openblas", or "gonum", pure Go and several times slower.
	MetaBLAS = "blas"
	// MetaTraining lists, comma-separated, what a module's training step
	// understands beyond the plan's terms: "row-weights" (Latent.W). An
	// integrator whose objective weighs rows refuses a module without it
	// rather than train it on the wrong objective.
	MetaTraining = "training"
	// TrainsRowWeights is MetaTraining's mark of Latent.W.
	TrainsRowWeights = "row-weights"
	// MetaPrivate is the size of a module's private latent, which it
	// keeps to itself (module.Spec.Private); absent or "0": none.
	MetaPrivate = "private"
)
