// Package bus is serket's transport: connecting to NATS, an embedded
// nats-server, the subject scheme of a pipeline, the versioned wire messages
// and their codec, and discovery of the services of a pipeline.
//
// # Wire messages
//
// Every message is a msgpack map with a header (type string, wire version,
// sender name) and its own fields. Tensors travel as a shape plus
// little-endian float32 bytes; element-by-element msgpack of a []float32 is
// about 24× slower. [Marshal] refuses a message it would be wrong to send
// (bad shape, NaN or Inf, larger than the payload limit) and [Unmarshal]
// refuses one it would be wrong to accept, with a [*DecodeError] that names
// the message type, the sender and the field. Neither panics on any input.
//
// # Conventions
//
// Batches are row-major B×D: B samples, D latent dimensions. Variances travel
// as log-variances, never as standard deviations. Module names are lower-case
// subject tokens (see [ValidName]).
package bus
