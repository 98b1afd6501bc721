package procenv

// The connection: where the NATS server is and how to sign in. A launcher
// sets NATS_URL always and the others when it was given them (NATS_NKEY:
// the process's own seed file under `serket up --secure`).
const (
	EnvNATSURL      = "NATS_URL"
	EnvNATSCreds    = "NATS_CREDS"
	EnvNATSUser     = "NATS_USER"
	EnvNATSPassword = "NATS_PASSWORD"
	EnvNATSNKey     = "NATS_NKEY"
	EnvNATSCA       = "NATS_CA"
	EnvNATSCert     = "NATS_CERT"
	EnvNATSKey      = "NATS_KEY"
)

// What every process of a pipeline is told.
const (
	EnvPipeline = "SERKET_PIPELINE"  // the pipeline's name (its subject namespace)
	EnvLatent   = "SERKET_LATENT"    // the shared latent size
	EnvLogLevel = "SERKET_LOG_LEVEL" // debug, info, warn or error
	// EnvModule is the process's name in the pipeline file (a module's
	// name on the bus).
	EnvModule = "SERKET_MODULE"
	// EnvRestart is how many times the supervisor has restarted the
	// process before (0 at its first start).
	EnvRestart = "SERKET_RESTART"
	// EnvReadyFD names the descriptor on which a process says that its
	// start-up is over (NotifyReady); set only during the start-up.
	EnvReadyFD = "SERKET_READY_FD"
)

// Training: set by `serket train`, and by `serket up` for a pipeline whose
// integrator trains.
const (
	// EnvTrain ("1") lets a module take part in training runs; without it
	// a module serves inference only and never changes its weights.
	EnvTrain = "SERKET_TRAIN"
	// EnvCheckpointDir is the run's directory; a module's checkpoint is
	// <dir>/<name>.ckpt.
	EnvCheckpointDir  = "SERKET_CHECKPOINT_DIR"
	EnvData           = "SERKET_DATA" // the prepared dataset directory
	EnvLR             = "SERKET_LR"   // Adam's learning rate ("" for each module's own)
	EnvPairedFraction = "SERKET_PAIRED_FRACTION"
	EnvPairingSeed    = "SERKET_PAIRING_SEED"
	// EnvModalities is the comma-separated list of the modules a
	// partial-pairing mask is drawn over, the same in every module.
	EnvModalities = "SERKET_MODALITIES"
)

// Streaming, per module from the pipeline file's sensors, sensor_type,
// rate and say_beliefs.
const (
	EnvSensors    = "SERKET_SENSORS" // comma-separated NATS subjects
	EnvSensorType = "SERKET_SENSOR_TYPE"
	EnvSensorRate = "SERKET_SENSOR_RATE"
	EnvSayBeliefs = "SERKET_SAY_BELIEFS" // "1" to render the beliefs
)

// The integrator's: the pipeline file it was started from (for its train
// section) and the file's fusion section.
const (
	EnvPipelineFile = "SERKET_PIPELINE_FILE"
	EnvSlop         = "SERKET_SLOP"
	EnvMaxAhead     = "SERKET_MAX_AHEAD"
	EnvBeliefPeriod = "SERKET_BELIEF_PERIOD"
)

// DefaultData is the prepared dataset directory when $SERKET_DATA is unset
// (relative to the working directory): where `serket data prepare` writes.
const DefaultData = "data/fmnist3"

// EnvOpenBLASThreads is OpenBLAS's own thread count; serket up sets it to
// 1 for its children unless it is set, since several processes share the
// cores.
const EnvOpenBLASThreads = "OPENBLAS_NUM_THREADS"
