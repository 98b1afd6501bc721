package foreign

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// DefaultMaxFrame bounds a frame: checkpoints are the largest messages,
// and a PyTorch model of a few million parameters with Adam's state fits
// many times over.
const DefaultMaxFrame = 256 << 20

// errFrame marks a frame that breaks the protocol (too large, empty, not a
// msgpack map): the child has failed.
var errFrame = errors.New("broken frame")

// errTooLarge marks a request over the frame limit: the call fails, and
// the child, which never saw it, serves on.
var errTooLarge = errors.New("over the frame limit (--max-frame)")

// writeFrame writes v as one frame: its msgpack encoding after its length.
// buf is reused storage; the grown buffer is returned.
func writeFrame(w io.Writer, v any, buf []byte, max int) ([]byte, error) {
	body, err := msgpack.Marshal(v)
	if err != nil {
		return buf, err
	}
	if len(body) > max {
		return buf, fmt.Errorf("a request of %d bytes, limit %d: %w", len(body), max, errTooLarge)
	}
	buf = binary.LittleEndian.AppendUint32(buf[:0], uint32(len(body)))
	buf = append(buf, body...)
	_, err = w.Write(buf)
	return buf, err
}

// readFrame reads one frame into dst (a pointer to a struct the map
// decodes into; keys it does not know are skipped). A frame over max
// bytes is refused before it is read.
func readFrame(r *bufio.Reader, dst any, max int) error {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return err
	}
	n := binary.LittleEndian.Uint32(head[:])
	if n == 0 || int64(n) > int64(max) {
		return fmt.Errorf("%w: a frame of %d bytes (want 1 to %d)", errFrame, n, max)
	}
	body := make([]byte, n)
	if got, err := io.ReadFull(r, body); err != nil {
		return fmt.Errorf("%w: the frame ends after %d of %d bytes: %v", errFrame, got, n, err)
	}
	if body[0]&0xf0 != 0x80 && body[0] != 0xde && body[0] != 0xdf {
		return fmt.Errorf("%w: a frame that is not a msgpack map (first byte %#02x)", errFrame, body[0])
	}
	if err := msgpack.Unmarshal(body, dst); err != nil {
		return fmt.Errorf("%w: %v", errFrame, err)
	}
	return nil
}
