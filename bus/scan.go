package bus

import (
	"encoding/binary"
	"fmt"
)

// maxItems bounds the msgpack values of one message: the largest legitimate
// message is a StepBegin of MaxBatch ids; tensors are one bin value each.
const maxItems = 4*MaxBatch + 4096

// scan walks the msgpack encoding in data without decoding it and refuses
// one that could make the decoder allocate far more than len(data): every
// declared length must fit in the bytes that remain (each value takes at
// least one byte), and the values in all must number at most maxItems.
// msgpack/v5 pre-allocates slices from declared lengths, so a 1 MiB message
// of a million nils would otherwise cost hundreds of MB before it is refused.
func scan(data []byte) error {
	pos, pending, total := 0, 1, 0
	need := func(n int) error {
		if n < 0 || n > len(data)-pos {
			return fmt.Errorf("%w: truncated at byte %d", ErrMalformed, pos)
		}
		return nil
	}
	length := func(size int) (int, error) {
		if err := need(size); err != nil {
			return 0, err
		}
		var n uint64
		switch size {
		case 1:
			n = uint64(data[pos])
		case 2:
			n = uint64(binary.BigEndian.Uint16(data[pos:]))
		case 4:
			n = uint64(binary.BigEndian.Uint32(data[pos:]))
		}
		pos += size
		if n > uint64(len(data)) {
			return 0, fmt.Errorf("%w: length %d at byte %d exceeds the message", ErrMalformed, n, pos)
		}
		return int(n), nil
	}
	for pending > 0 {
		if pending > len(data)-pos {
			return fmt.Errorf("%w: %d more values declared than bytes remain", ErrMalformed, pending-(len(data)-pos))
		}
		b := data[pos]
		pos++
		pending--
		if total++; total > maxItems {
			return fmt.Errorf("%w: more than %d values", ErrTooLarge, maxItems)
		}
		var skip, items int
		var err error
		switch {
		case b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3: // fixint, nil, bool
		case b >= 0x80 && b <= 0x8f:
			items = 2 * int(b&0x0f)
		case b >= 0x90 && b <= 0x9f:
			items = int(b & 0x0f)
		case b >= 0xa0 && b <= 0xbf:
			skip = int(b & 0x1f)
		case b == 0xc4 || b == 0xd9:
			skip, err = length(1)
		case b == 0xc5 || b == 0xda:
			skip, err = length(2)
		case b == 0xc6 || b == 0xdb:
			skip, err = length(4)
		case b == 0xc7, b == 0xc8, b == 0xc9: // ext 8/16/32: length, type, data
			skip, err = length(1 << (b - 0xc7))
			skip++
		case b == 0xca || b == 0xce || b == 0xd2:
			skip = 4
		case b == 0xcb || b == 0xcf || b == 0xd3:
			skip = 8
		case b == 0xcc || b == 0xd0:
			skip = 1
		case b == 0xcd || b == 0xd1:
			skip = 2
		case b >= 0xd4 && b <= 0xd8: // fixext 1..16 plus the type byte
			skip = 1<<(b-0xd4) + 1
		case b == 0xdc:
			items, err = length(2)
		case b == 0xdd:
			items, err = length(4)
		case b == 0xde:
			items, err = length(2)
			items *= 2
		case b == 0xdf:
			items, err = length(4)
			items *= 2
		default: // 0xc1 is never used
			return fmt.Errorf("%w: invalid byte 0x%02x at %d", ErrMalformed, b, pos-1)
		}
		if err != nil {
			return err
		}
		if err := need(skip); err != nil {
			return err
		}
		pos += skip
		pending += items
	}
	return nil
}
