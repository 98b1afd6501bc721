package dataset

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/serket-go/serket/internal/boundedread"
)

// Limits of what ReadIDX accepts. Fashion-MNIST's largest file holds 47 MB.
const (
	MaxIDXDims  = 4
	MaxIDXBytes = 1 << 30
)

// maxIDXFileBytes bounds an IDX file on disk: MaxIDXBytes of data, its
// header, and gzip's framing, which makes incompressible data larger by 5
// bytes per 64 KiB block.
const maxIDXFileBytes = MaxIDXBytes + 1<<20

// IDX type codes (the third byte of the magic).
const idxUint8 = 0x08

// ReadIDX reads one IDX file (the MNIST format: magic 0x00 0x00 type ndims,
// ndims big-endian uint32 sizes, then the data) from r, gzip-compressed or
// plain: gzip is recognised by its magic bytes. Only unsigned-byte data
// (0x0801 labels, 0x0803 images, and the like) is accepted. The data must be
// exactly as long as the dims say, at most MaxIDXBytes; a corrupt or
// truncated input gives an error saying what is wrong, never a panic.
func ReadIDX(r io.Reader) (dims []int, data []byte, err error) {
	return readIDXPrefix(r, 0)
}

// readIDXPrefix is ReadIDX that, if items > 0, stops after the first items
// entries of the first dimension (dims[0] is then at most items): a limited
// Prepare need not inflate all of Fashion-MNIST.
func readIDXPrefix(r io.Reader, items int) (dims []int, data []byte, err error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(2)
	if len(head) == 0 {
		if err == nil || err == io.EOF {
			return nil, nil, errors.New("idx: empty input")
		}
		return nil, nil, fmt.Errorf("idx: %w", err)
	}
	var src io.Reader = br
	if len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, nil, errors.New("idx: truncated gzip header")
		}
		if err != nil {
			return nil, nil, fmt.Errorf("idx: %w", err)
		}
		zr.Multistream(false)
		defer zr.Close()
		src = zr
	}
	return readIDX(src, items)
}

func readIDX(r io.Reader, items int) ([]int, []byte, error) {
	var magic [4]byte
	if n, err := io.ReadFull(r, magic[:]); err != nil {
		return nil, nil, truncated("magic number", n, 4, err)
	}
	if magic[0] != 0 || magic[1] != 0 {
		return nil, nil, fmt.Errorf("idx: bad magic number %#08x: not an IDX file", binary.BigEndian.Uint32(magic[:]))
	}
	if magic[2] != idxUint8 {
		return nil, nil, fmt.Errorf("idx: magic number %#08x: data type %#02x is not unsigned bytes (0x08)", binary.BigEndian.Uint32(magic[:]), magic[2])
	}
	nd := int(magic[3])
	if nd < 1 || nd > MaxIDXDims {
		return nil, nil, fmt.Errorf("idx: magic number %#08x: %d dimensions, want 1 to %d", binary.BigEndian.Uint32(magic[:]), nd, MaxIDXDims)
	}
	raw := make([]byte, 4*nd)
	if n, err := io.ReadFull(r, raw); err != nil {
		return nil, nil, truncated("dimensions", n, len(raw), err)
	}
	dims := make([]int, nd)
	size := uint64(1)
	for i := range dims {
		d := uint64(binary.BigEndian.Uint32(raw[4*i:]))
		dims[i] = int(d)
		size *= d // d < 2^32 and size ≤ MaxIDXBytes before this: no overflow
		if size > MaxIDXBytes {
			return nil, nil, fmt.Errorf("idx: dimensions %v exceed the limit of %d bytes", dimsSoFar(raw, nd), MaxIDXBytes)
		}
	}
	prefix := items > 0 && items < dims[0]
	if prefix {
		size = size / uint64(dims[0]) * uint64(items)
		dims[0] = items
	}
	// Grow as the data arrives rather than trusting the header with one
	// allocation: a 20-byte file claiming a gigabyte costs nothing.
	var buf bytes.Buffer
	buf.Grow(int(min(size, 64<<20)))
	_, err := buf.ReadFrom(io.LimitReader(r, int64(size)))
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, nil, fmt.Errorf("idx: reading %d data bytes: %w", size, err)
	}
	if uint64(buf.Len()) < size {
		return nil, nil, fmt.Errorf("idx: truncated data: have %d of the %d bytes that dimensions %v need", buf.Len(), size, dims)
	}
	if prefix {
		return dims, buf.Bytes(), nil
	}
	var one [1]byte
	switch n, err := io.ReadFull(r, one[:]); {
	case n > 0:
		return nil, nil, fmt.Errorf("idx: trailing bytes after the %d data bytes of dimensions %v", size, dims)
	case err != io.EOF:
		return nil, nil, fmt.Errorf("idx: after the data: %w", err)
	}
	return dims, buf.Bytes(), nil
}

func dimsSoFar(raw []byte, nd int) []uint32 {
	out := make([]uint32, nd)
	for i := range out {
		out[i] = binary.BigEndian.Uint32(raw[4*i:])
	}
	return out
}

func truncated(what string, n, want int, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("idx: truncated %s: have %d of %d bytes", what, n, want)
	}
	return fmt.Errorf("idx: reading the %s: %w", what, err)
}

// ReadIDXFile is [ReadIDX] of a file; errors name the file. A file larger
// than MaxIDXBytes of data can be, or one that is not a regular file, is
// refused before it is read.
func ReadIDXFile(path string) (dims []int, data []byte, err error) {
	f, err := boundedread.Open(path, maxIDXFileBytes)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	dims, data, err = ReadIDX(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return dims, data, nil
}

// Images is one split of an image classification set: N images of
// Rows×Cols pixels, row-major, one byte per pixel (0 background to 255
// ink), image i at Pixels[i*Rows*Cols:], and its label Labels[i].
type Images struct {
	N, Rows, Cols int
	Pixels        []uint8
	Labels        []uint8
}

// Image returns the pixels of image i (aliasing Pixels).
func (im *Images) Image(i int) []uint8 {
	n := im.Rows * im.Cols
	return im.Pixels[i*n : (i+1)*n : (i+1)*n]
}

// FashionMNIST is Zalando's Fashion-MNIST: 60,000 train and 10,000 test
// images of 28×28 pixels in 10 classes (see [ClassNames]).
type FashionMNIST struct {
	Train, Test Images
}

// ErrNoFashionMNIST is wrapped by [LoadFashionMNIST]'s error when the
// directory or one of its files is missing.
var ErrNoFashionMNIST = errors.New("Fashion-MNIST not found")

// The files of Fashion-MNIST, without the .gz that Debian's copy has.
var fmnistFiles = [4]string{
	"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
	"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
}

// fmnistRaw is the four files as read from disk, before decoding: Prepare
// hashes them to know whether a prepared dataset is stale.
type fmnistRaw struct {
	paths [4]string
	data  [4][]byte
}

func readFashionMNISTFiles(dir string) (*fmnistRaw, error) {
	notFound := func(detail string) error {
		return fmt.Errorf("%w in %s (%s): install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass --fashion-mnist DIR", ErrNoFashionMNIST, dir, detail)
	}
	if st, err := os.Stat(dir); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, notFound(err.Error())
	} else if !st.IsDir() {
		return nil, notFound("not a directory")
	}
	raw := &fmnistRaw{}
	for i, name := range fmnistFiles {
		var err error
		for _, p := range []string{name + ".gz", name} {
			path := filepath.Join(dir, p)
			raw.data[i], err = boundedread.File(path, maxIDXFileBytes)
			if err == nil {
				raw.paths[i] = path
				break
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		if err != nil {
			return nil, notFound(name + ".gz missing")
		}
	}
	return raw, nil
}

// LoadFashionMNIST reads Fashion-MNIST's four IDX files (gzip or plain)
// from dir and checks that they agree: as many labels as images, labels
// below 10. A missing dir or file gives an error wrapping
// [ErrNoFashionMNIST] that says how to install it.
func LoadFashionMNIST(dir string) (*FashionMNIST, error) {
	raw, err := readFashionMNISTFiles(dir)
	if err != nil {
		return nil, err
	}
	return raw.decode(0, 0)
}

// decode decodes the files, only the first limitTrain train and limitTest
// test items of each if those are > 0.
func (raw *fmnistRaw) decode(limitTrain, limitTest int) (*FashionMNIST, error) {
	var (
		dims [4][]int
		data [4][]byte
		errs [4]error
		wg   sync.WaitGroup
	)
	// Inflating the train images is most of the time: do the files at once.
	for i := range raw.data {
		wg.Go(func() {
			limit := limitTrain
			if i >= 2 {
				limit = limitTest
			}
			dims[i], data[i], errs[i] = readIDXPrefix(bytes.NewReader(raw.data[i]), limit)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", raw.paths[i], errs[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	fm := &FashionMNIST{}
	for s, im := range []*Images{&fm.Train, &fm.Test} {
		ip, lp := 2*s, 2*s+1
		if len(dims[ip]) != 3 {
			return nil, fmt.Errorf("%s: dimensions %v: want images (magic 0x0803, N×rows×cols)", raw.paths[ip], dims[ip])
		}
		if len(dims[lp]) != 1 {
			return nil, fmt.Errorf("%s: dimensions %v: want labels (magic 0x0801, N)", raw.paths[lp], dims[lp])
		}
		if dims[ip][0] != dims[lp][0] {
			return nil, fmt.Errorf("%s has %d images but %s has %d labels", raw.paths[ip], dims[ip][0], raw.paths[lp], dims[lp][0])
		}
		for i, l := range data[lp] {
			if l >= NumClasses {
				return nil, fmt.Errorf("%s: label %d of item %d is not a class (0 to %d)", raw.paths[lp], l, i, NumClasses-1)
			}
		}
		*im = Images{N: dims[ip][0], Rows: dims[ip][1], Cols: dims[ip][2], Pixels: data[ip], Labels: data[lp]}
	}
	return fm, nil
}
