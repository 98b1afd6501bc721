// Package boundedread reads the files a person names (inputs, datasets,
// checkpoints) up to a limit the caller states: what the bus or the parser
// downstream can take. A file over the limit is refused from its size alone,
// before a byte of it is read, so a huge or sparse file costs nothing; a
// device, FIFO or socket (/dev/zero, a named pipe) has no size to check and
// a FIFO blocks whoever opens it, so it is refused before it is opened.
// Every error names the file and the limit.
package boundedread

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"syscall"
)

// Errors the refusals wrap; test with errors.Is.
var (
	ErrTooLarge   = errors.New("file too large")
	ErrNotRegular = errors.New("not a regular file")
)

// File returns the contents of the regular file at path, refusing a file of
// more than limit bytes (or one that grows past it while it is read) with an
// error wrapping ErrTooLarge, and anything but a regular file with one
// wrapping ErrNotRegular. Memory is bounded by the file's size, at most
// limit bytes.
func File(path string, limit int64) ([]byte, error) {
	f, size, err := open(path, limit)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c := &capped{f: f, path: path, left: limit, limit: limit}
	// The size stat gave, and a byte more so that the read that finds EOF
	// does not grow the buffer.
	buf := make([]byte, 0, size+1)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4096) // it grew since stat; c stops it at the limit
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// Open opens the regular file at path for reading by a parser that takes
// an io.Reader, with the same refusals as File. Reading more than limit
// bytes from it (the file grew) fails with an error wrapping ErrTooLarge.
// The caller closes it.
func Open(path string, limit int64) (io.ReadCloser, error) {
	f, _, err := open(path, limit)
	if err != nil {
		return nil, err
	}
	return &capped{f: f, path: path, left: limit, limit: limit}, nil
}

// open checks path twice: by name before opening, so that a FIFO is
// refused without the open that would block until a writer comes, and by
// the opened descriptor (opened non-blocking), so that a file swapped in
// between is caught too.
func open(path string, limit int64) (*os.File, int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, 0, err
	}
	if err := check(path, st, limit); err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err
	}
	if st, err = f.Stat(); err == nil {
		err = check(path, st, limit)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

func check(path string, st fs.FileInfo, limit int64) error {
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: %w (%s); give a file of at most %s", path, ErrNotRegular, kind(st.Mode()), Size(limit))
	}
	if st.Size() > limit {
		return tooLarge(path, st.Size(), limit)
	}
	return nil
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "mode " + m.String()
}

// tooLarge is the refusal of a file of size bytes (-1: more than limit,
// found while reading).
func tooLarge(path string, size, limit int64) error {
	if size < 0 {
		return fmt.Errorf("%s: %w: it grew past the limit of %s while it was read", path, ErrTooLarge, Size(limit))
	}
	return fmt.Errorf("%s: %w: %s, the limit is %s", path, ErrTooLarge, Size(size), Size(limit))
}

// capped fails once more than limit bytes have been read from the file.
type capped struct {
	f           *os.File
	path        string
	left, limit int64
}

func (c *capped) Read(p []byte) (int, error) {
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.f.Read(p)
	if c.left -= int64(n); c.left < 0 {
		return 0, tooLarge(c.path, -1, c.limit)
	}
	return n, err
}

func (c *capped) Close() error { return c.f.Close() }

// Size formats n bytes for a person: "32 MiB" when it is whole mebibytes,
// else with the exact count, "33.0 MiB (33554433 bytes)".
func Size(n int64) string {
	const mib = 1 << 20
	switch {
	case n >= mib && n%mib == 0:
		return fmt.Sprintf("%d MiB", n/mib)
	case n >= mib:
		return fmt.Sprintf("%.1f MiB (%d bytes)", float64(n)/mib, n)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
