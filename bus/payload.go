package bus

import "github.com/nats-io/nats.go"

// PayloadLimit is the largest message nc may publish: the max_payload its
// server advertises, or DefaultMaxBytes if that is smaller (or nc has not
// yet heard from a server). A sender that marshals within it
// (MarshalLimit) gets a clear ErrTooLarge for a message a server of one's
// own cannot take, where publishing it would fail with nats.ErrMaxPayload
// and, for a reply, leave the requester waiting for its deadline.
func PayloadLimit(nc *nats.Conn) int {
	if max := nc.MaxPayload(); max > 0 && max < DefaultMaxBytes {
		return int(max)
	}
	return DefaultMaxBytes
}
