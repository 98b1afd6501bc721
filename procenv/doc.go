// Package procenv is the contract between a serket process and the
// launcher that starts it (`serket up`, `serket train`, or any supervisor
// that follows it): the environment variables the launcher sets, named by
// the Env… constants; the flags whose defaults they are (Flags, for a
// module process); and the pipe on which a process says that its start-up
// is over (NotifyReady).
//
// Everything on both sides goes through these names: the launcher (package
// launch and cmd/serket) writes them, serket's built-in modules and
// integrator and a module written outside serket read them, so a module of
// one's own run under the launcher needs no arguments. A module uses the
// contract through module.Flags, which adds the bus's rule for names and
// module.Run's options; the built-in `serket module KIND` commands do the
// same.
//
// A module process reads (each variable the default of one flag):
//
//	NATS_URL, NATS_CREDS, NATS_USER, NATS_PASSWORD   --nats --creds --user --password
//	NATS_NKEY                                         --nkey
//	NATS_CA, NATS_CERT, NATS_KEY                      --tls-ca --tls-cert --tls-key
//	SERKET_PIPELINE, SERKET_MODULE, SERKET_LATENT     --pipeline --name --latent
//	SERKET_LOG_LEVEL                                  --log-level
//	SERKET_CHECKPOINT_DIR (+ /<name>.ckpt)            --checkpoint
//	SERKET_TRAIN=1                                    --train
//	SERKET_SENSORS (comma-separated),
//	SERKET_SENSOR_TYPE, SERKET_SENSOR_RATE,
//	SERKET_SAY_BELIEFS=1                              --sensor --sensor-type --sensor-rate --say-beliefs
//	SERKET_DATA, SERKET_LR                            --data --lr                     (training flags)
//	SERKET_PAIRED_FRACTION, SERKET_PAIRING_SEED,
//	SERKET_MODALITIES (comma-separated)               --paired-fraction --pairing-seed --modalities
//
// and SERKET_READY_FD, the readiness pipe (NotifyReady). The integrator
// process reads the connection and pipeline variables, SERKET_LATENT,
// SERKET_PIPELINE_FILE (the file it was started from, for its train
// section), SERKET_RESTART (how many times it was restarted, so that a
// restarted training integrator resumes) and the streaming-fusion settings
// SERKET_SLOP, SERKET_MAX_AHEAD and SERKET_BELIEF_PERIOD.
//
// Precedence is flag, then environment, then the default. The names never
// change: pipelines and modules built against one serket keep working with
// the next.
//
// procenv imports nothing of serket's, so that every package, the dataset
// included, can name a variable without pulling in NATS.
package procenv
