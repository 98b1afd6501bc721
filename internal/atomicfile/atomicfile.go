// Package atomicfile writes a file so that readers see either the old
// contents or the whole new contents, never a part: a temporary file in the
// same directory, written, fsynced, renamed over the path, and the
// directory synced. Checkpoints, shards and manifests are written this way.
//
// Checkpoints also keep generations: WriteKeep leaves the file it replaces
// at Prev(path) (a hard link, so that at no moment is there no file at
// path), and Read falls back to that previous generation when the file at
// path turns out damaged — truncated, a checksum that does not match,
// undecodable — as the reader reports by wrapping ErrCorrupt. A file that
// is whole but does not fit (another model's shape, another run) is not
// damaged: Read returns that error and does not fall back, since the
// previous generation would only hide the mismatch.
package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/serket-go/serket/internal/boundedread"
)

// ErrCorrupt is what a reader given to Read wraps (or matches, with an Is
// method) when the file's bytes are damaged: truncated, a checksum
// mismatch, undecodable. Only such errors make Read fall back to the
// previous generation.
var ErrCorrupt = errors.New("damaged file")

// PrevSuffix is appended to a path to name its previous generation.
const PrevSuffix = ".prev"

// Prev is the name of path's previous generation, kept by WriteKeep.
func Prev(path string) string { return path + PrevSuffix }

// Write creates or replaces path with what write writes (buffered). On any
// error nothing is left behind and path is unchanged. The file gets mode
// 0644. Errors are returned as they are; callers add what they were writing.
func Write(path string, write func(io.Writer) error) error {
	return replace(path, write, false)
}

// WriteKeep is Write that keeps the file it replaces, if any, as
// Prev(path) (replacing the generation before it). The old file is linked
// there before the new one is renamed over path, so path always holds a
// whole file; where hard links are not supported it is copied. If keeping
// the old generation fails, path is left unchanged and the error returned.
func WriteKeep(path string, write func(io.Writer) error) error {
	return replace(path, write, true)
}

func replace(path string, write func(io.Writer) error, keep bool) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if keep {
		if err := keepPrev(path, tmp.Name()+PrevSuffix); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// Make the renames themselves durable; not every system can sync a
	// directory.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// keepPrev makes the current file at path (if any) its previous
// generation, through staging, a name of its own in the same directory:
// the old previous generation is replaced in one rename.
func keepPrev(path, staging string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // the first generation
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return &fs.PathError{Op: "keep previous generation of", Path: path, Err: errors.New("not a regular file")}
	}
	if err := os.Link(path, staging); err != nil {
		if err := copyFile(path, staging); err != nil {
			os.Remove(staging)
			return fmt.Errorf("keeping the previous generation of %s: %w", path, err)
		}
	}
	if err := os.Rename(staging, Prev(path)); err != nil {
		os.Remove(staging)
		return err
	}
	return nil
}

// copyFile copies src to a new file dst, synced.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Read opens path and hands it to read, which must leave whatever it fills
// unchanged when it fails. name is the file being read, for read's errors
// to name. If read's error matches ErrCorrupt and a previous generation
// exists, Read hands that to read instead: then used is Prev(path) and
// damaged is the error that made it skip path, for the caller to log. On
// success without a fall-back, used is path and damaged nil.
//
// err is the open error if path cannot be opened (it matches
// fs.ErrNotExist if there is none: a missing path is never replaced by its
// previous generation, which may be a leftover of an old run); read's
// error if it is not about damage, or if there is no previous generation
// (said so); and if the previous generation fails too, an error holding
// both of read's errors.
func Read(path string, read func(name string, r io.Reader) error) (used string, damaged error, err error) {
	err = readFile(path, read)
	if err == nil {
		return path, nil, nil
	}
	if !errors.Is(err, ErrCorrupt) {
		return "", nil, err
	}
	prev := Prev(path)
	perr := readFile(prev, read)
	switch {
	case perr == nil:
		return prev, err, nil
	case errors.Is(perr, fs.ErrNotExist):
		return "", nil, fmt.Errorf("%w (no previous generation %s to fall back on)", err, prev)
	default:
		return "", nil, fmt.Errorf("%w; and the previous generation is unusable too: %w", err, perr)
	}
}

// MaxReadBytes bounds a file Read reads: more than any checkpoint or state
// serket writes, so that only a file in the wrong place (a disk image, a
// sparse file) hits it; a device or FIFO in its place is refused before it
// is opened (see boundedread).
const MaxReadBytes = 4 << 30

func readFile(path string, read func(name string, r io.Reader) error) error {
	f, err := boundedread.Open(path, MaxReadBytes)
	if err != nil {
		return err
	}
	defer f.Close()
	return read(path, bufio.NewReaderSize(f, 1<<20))
}

// WriteDir creates or replaces the directory dir with what fill writes into
// the temporary directory it is given (a sibling of dir). On any error
// nothing is left behind and dir is unchanged; otherwise dir is the new
// directory whole (the old one, if any, is removed after the new one is
// in place). An existing dir must be a directory.
func WriteDir(dir string, fill func(tmp string) error) (err error) {
	dir = filepath.Clean(dir)
	parent, base := filepath.Split(dir)
	if parent == "" {
		parent = "."
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return &os.PathError{Op: "replace", Path: dir, Err: os.ErrExist}
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := fill(tmp); err != nil {
		return err
	}
	old := ""
	if _, err := os.Stat(dir); err == nil {
		old = filepath.Join(parent, "."+base+".old-"+filepath.Base(tmp)[len(base)+6:])
		if err := os.Rename(dir, old); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		return err
	}
	if old != "" {
		os.RemoveAll(old)
	}
	if d, derr := os.Open(parent); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
