package dataset_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/serket-go/serket/dataset"
)

var (
	fmOnce sync.Once
	fm     *dataset.FashionMNIST
	fmErr  error
)

// fashionMNIST loads the real Fashion-MNIST once per test binary.
func fashionMNIST(t testing.TB) *dataset.FashionMNIST {
	t.Helper()
	fmOnce.Do(func() { fm, fmErr = dataset.LoadFashionMNIST(dataset.FashionMNISTDir) })
	if fmErr != nil {
		t.Fatalf("these tests read the real Fashion-MNIST (Debian package dataset-fashion-mnist): %v", fmErr)
	}
	return fm
}

// TestFashionMNISTFacts checks the loader against published facts of the
// dataset.
func TestFashionMNISTFacts(t *testing.T) {
	fm := fashionMNIST(t)
	for _, c := range []struct {
		name  string
		im    dataset.Images
		n     int
		first []uint8
	}{
		{"train", fm.Train, 60000, []uint8{9, 0, 0, 3, 0, 2, 7, 2, 5, 5}},
		{"test", fm.Test, 10000, []uint8{9, 2, 1, 1, 6, 1, 4, 6, 5, 7}},
	} {
		im := c.im
		if im.N != c.n || im.Rows != 28 || im.Cols != 28 {
			t.Errorf("%s: %d×%d×%d, want %d×28×28", c.name, im.N, im.Rows, im.Cols, c.n)
		}
		if len(im.Pixels) != c.n*784 || len(im.Labels) != c.n {
			t.Errorf("%s: %d pixels and %d labels", c.name, len(im.Pixels), len(im.Labels))
		}
		if got := im.Labels[:10]; !slices.Equal(got, c.first) {
			t.Errorf("%s: first labels %v, want %v", c.name, got, c.first)
		}
		if lo, hi := slices.Min(im.Pixels), slices.Max(im.Pixels); lo != 0 || hi != 255 {
			t.Errorf("%s: pixels span %d..%d, want 0..255", c.name, lo, hi)
		}
		var counts [dataset.NumClasses]int
		for _, l := range im.Labels {
			counts[l]++
		}
		for k, n := range counts {
			if n != c.n/10 {
				t.Errorf("%s: class %d (%s) has %d images, want %d", c.name, k, dataset.ClassNames[k], n, c.n/10)
			}
		}
	}
	// Image 0 of the train set is an ankle boot: ink in the middle, none in
	// the top-left corner.
	img := fm.Train.Image(0)
	if img[0] != 0 || img[14*28+14] == 0 {
		t.Errorf("train image 0: corner %d, centre %d", img[0], img[14*28+14])
	}
}

// TestReadIDXPlainAndGzip: the same file, compressed or not, reads the same;
// gzip is found by its magic bytes, not the name.
func TestReadIDXPlainAndGzip(t *testing.T) {
	dir := t.TempDir()
	plain := idx([]int{3, 2}, []byte{1, 2, 3, 4, 5, 6})
	for name, b := range map[string][]byte{"a.gz": plain, "b": gz(plain), "c.idx": plain} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		dims, data, err := dataset.ReadIDXFile(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(dims, []int{3, 2}) || !slices.Equal(data, []byte{1, 2, 3, 4, 5, 6}) {
			t.Errorf("%s: dims %v data %v", name, dims, data)
		}
	}
}

// idx builds an IDX file of unsigned bytes.
func idx(dims []int, data []byte) []byte {
	b := []byte{0, 0, 0x08, byte(len(dims))}
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, uint32(d))
	}
	return append(b, data...)
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func corruptIDXCases() []struct {
	name string
	in   []byte
	want string
} {
	labels := idx([]int{10}, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	zl := gz(labels)
	badCRC := slices.Clone(zl)
	badCRC[len(badCRC)-8] ^= 0xff
	return []struct {
		name string
		in   []byte
		want string
	}{
		{"zero bytes", nil, "empty"},
		{"wrong magic", append([]byte{0x12, 0x34}, labels[2:]...), "bad magic"},
		{"not bytes", append([]byte{0, 0, 0x0d}, labels[3:]...), "not unsigned bytes"},
		{"no dims", []byte{0, 0, 8, 0}, "0 dimensions"},
		{"too many dims", []byte{0, 0, 8, 9}, "9 dimensions"},
		{"truncated magic", []byte{0, 0, 8}, "truncated magic"},
		{"truncated dims", labels[:6], "truncated dimensions"},
		{"truncated data", labels[:len(labels)-3], "truncated data: have 7 of the 10 bytes"},
		{"trailing data", append(slices.Clone(labels), 0), "trailing bytes"},
		{"dims overflow", idx([]int{1 << 31, 1 << 31, 1 << 31}, nil), "exceed the limit"},
		{"dims over the limit", idx([]int{1 << 16, 1 << 15}, nil), "exceed the limit"},
		{"truncated gzip", zl[:len(zl)/2], "truncated data"},
		{"truncated gzip header", zl[:5], "truncated gzip header"},
		{"gzip checksum", badCRC, "checksum"},
	}
}

// TestReadIDXCorrupt: each way a file can be damaged gives an error saying
// what is wrong, naming the file, never a panic.
func TestReadIDXCorrupt(t *testing.T) {
	dir := t.TempDir()
	for _, c := range corruptIDXCases() {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := dataset.ReadIDX(bytes.NewReader(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ReadIDX: %v, want an error containing %q", err, c.want)
			}
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
			if err := os.WriteFile(path, c.in, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err = dataset.ReadIDXFile(path)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ReadIDXFile: %v, want an error naming %s and containing %q", err, path, c.want)
			}
		})
	}
}

// TestLoadFashionMNISTMissing: no dataset, or part of one, says which
// Debian package to install.
func TestLoadFashionMNISTMissing(t *testing.T) {
	partial := t.TempDir()
	os.WriteFile(filepath.Join(partial, "train-images-idx3-ubyte.gz"), gz(idx([]int{1, 1, 1}, []byte{0})), 0o644)
	for _, dir := range []string{filepath.Join(t.TempDir(), "nope"), t.TempDir(), partial} {
		_, err := dataset.LoadFashionMNIST(dir)
		if !errors.Is(err, dataset.ErrNoFashionMNIST) {
			t.Fatalf("%s: %v, want ErrNoFashionMNIST", dir, err)
		}
		for _, want := range []string{dir, "dataset-fashion-mnist", "--fashion-mnist"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
	}
}

// TestLoadFashionMNISTInconsistent: files that disagree are refused.
func TestLoadFashionMNISTInconsistent(t *testing.T) {
	write := func(dir string, trainLabels []byte) {
		os.WriteFile(filepath.Join(dir, "train-images-idx3-ubyte"), idx([]int{2, 1, 1}, []byte{0, 1}), 0o644)
		os.WriteFile(filepath.Join(dir, "train-labels-idx1-ubyte"), idx([]int{len(trainLabels)}, trainLabels), 0o644)
		os.WriteFile(filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), gz(idx([]int{1, 1, 1}, []byte{7})), 0o644)
		os.WriteFile(filepath.Join(dir, "t10k-labels-idx1-ubyte.gz"), gz(idx([]int{1}, []byte{3})), 0o644)
	}
	ok := t.TempDir()
	write(ok, []byte{1, 2})
	got, err := dataset.LoadFashionMNIST(ok)
	if err != nil || got.Train.N != 2 || got.Test.N != 1 || got.Test.Labels[0] != 3 {
		t.Fatalf("plain and gzip files mixed: %+v, %v", got, err)
	}
	for name, labels := range map[string][]byte{"3 labels": {1, 2, 3}, "label 10": {1, 10}} {
		dir := t.TempDir()
		write(dir, labels)
		if _, err := dataset.LoadFashionMNIST(dir); err == nil || !strings.Contains(err.Error(), "train-") {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
}

func FuzzReadIDX(f *testing.F) {
	f.Add(idx([]int{2, 2, 2}, []byte{1, 2, 3, 4, 5, 6, 7, 8}))
	f.Add(gz(idx([]int{3}, []byte{1, 2, 3})))
	for _, c := range corruptIDXCases() {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		dims, data, err := dataset.ReadIDX(bytes.NewReader(b))
		if err != nil {
			return
		}
		n := 1
		for _, d := range dims {
			n *= d
		}
		if len(dims) == 0 || n != len(data) {
			t.Fatalf("dims %v but %d bytes", dims, len(data))
		}
	})
}
