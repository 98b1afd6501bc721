package module

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/internal/atomicfile"
)

// A module's checkpoint file is the modality's own bytes (Saver.Save)
// behind a label that says which training run and step the weights are
// of, so that an integrator resuming or rolling back a run can tell a
// module's checkpoint of that run and step from a fresh start, another
// run, or a newer save that the run never committed:
//
//	"serket-ckpt-1\n"  magic, 14 bytes
//	n                  1 byte: the length of the run id
//	run id             n bytes (bus.ValidToken)
//	step               8 bytes, little-endian
//	CRC-32C            4 bytes, little-endian, of n, the run id and the step
//	…                  the modality's checkpoint
//
// A file without the magic is the modality's bytes alone (a checkpoint
// written before labels, or by `serket bench import`): its weights are of
// no run.

const labelMagic = "serket-ckpt-1\n"

// Label is what a checkpoint says of its weights: the run (its id, "" for
// none) and the step of that run they are of.
type Label struct {
	Run  string
	Step uint64
}

func (l Label) String() string {
	if l.Run == "" {
		return "no run"
	}
	return fmt.Sprintf("run %s step %d", l.Run, l.Step)
}

func writeLabel(w io.Writer, l Label) error {
	b := make([]byte, 0, len(labelMagic)+1+len(l.Run)+12)
	b = append(b, labelMagic...)
	start := len(b)
	b = append(b, byte(len(l.Run)))
	b = append(b, l.Run...)
	b = binary.LittleEndian.AppendUint64(b, l.Step)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], crcTable))
	_, err := w.Write(b)
	return err
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// readLabel reads the label at the start of r, if there is one; without
// the magic it reads nothing and returns the zero Label. A label that is
// cut short or fails its checksum is damage (ErrCorruptCheckpoint).
func readLabel(r *bufio.Reader) (Label, error) {
	magic, err := r.Peek(len(labelMagic))
	if err != nil || string(magic) != labelMagic {
		return Label{}, nil // unlabelled (or too short: the modality will say)
	}
	r.Discard(len(labelMagic))
	n, err := r.ReadByte()
	if err != nil {
		return Label{}, fmt.Errorf("%w: label cut short", ErrCorruptCheckpoint)
	}
	body := make([]byte, 1+int(n)+12)
	body[0] = n
	if _, err := io.ReadFull(r, body[1:]); err != nil {
		return Label{}, fmt.Errorf("%w: label cut short", ErrCorruptCheckpoint)
	}
	end := len(body) - 4
	if crc32.Checksum(body[:end], crcTable) != binary.LittleEndian.Uint32(body[end:]) {
		return Label{}, fmt.Errorf("%w: label checksum mismatch", ErrCorruptCheckpoint)
	}
	l := Label{Run: string(body[1 : 1+n]), Step: binary.LittleEndian.Uint64(body[1+n : end])}
	if !bus.ValidToken(l.Run) {
		return Label{}, fmt.Errorf("%w: label run id %q", ErrCorruptCheckpoint, l.Run)
	}
	return l, nil
}

// ErrCorruptCheckpoint is what a Saver's Restore wraps (errors.Is) when the
// checkpoint is damaged — truncated, a checksum mismatch, undecodable —
// rather than whole but of another model. Run then restores the previous
// generation instead, the file the last save replaced (kept beside it as
// Checkpoint+".prev"), and logs both; for any other Restore error it stops
// with the error, since an older file of the same mismatched model would
// only hide the mismatch. nn's checkpoint errors match it.
var ErrCorruptCheckpoint = atomicfile.ErrCorrupt

// save writes s to path atomically (see package atomicfile) behind label,
// keeping the checkpoint it replaces as the previous generation.
func save(s Saver, path string, label Label) error {
	err := atomicfile.WriteKeep(path, func(w io.Writer) error {
		if label.Run != "" {
			if err := writeLabel(w, label); err != nil {
				return err
			}
		}
		return s.Save(w)
	})
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return nil
}

// RestoreFrom restores s from a checkpoint as Run writes it, read from r:
// its label (which it returns; the zero Label for a checkpoint without
// one), then the modality's bytes. A tool that opens the file itself
// (through a bound of its own, say) uses it rather than s.Restore.
func RestoreFrom(s Saver, r io.Reader) (Label, error) { return restoreFrom(s, r) }

// restoreFrom restores s from r (the label, then the modality's bytes).
func restoreFrom(s Saver, r io.Reader) (Label, error) {
	br := bufio.NewReader(r)
	l, err := readLabel(br)
	if err != nil {
		return Label{}, err
	}
	return l, s.Restore(br)
}

// RestoreFile restores s from the checkpoint at path, or from its previous
// generation if path is damaged (logged on log, if not nil), and returns
// the label of the one it used. Tools that load a module's checkpoint
// outside Run (evaluation, generation from a checkpoint) use it, so that
// they read what Run writes.
func RestoreFile(s Saver, path string, log *slog.Logger) (Label, error) {
	l, used, damaged, err := readNewest(s, path)
	if err == nil && damaged != nil && log != nil {
		log.Error("checkpoint is damaged; restoring the previous generation instead", "path", path, "err", damaged, "restored", used)
	}
	return l, err
}

// readNewest restores s from path, or from its previous generation if
// path is damaged, and says which it used and what damage it found.
func readNewest(s Saver, path string) (l Label, used string, damaged, err error) {
	used, damaged, err = atomicfile.Read(path, func(name string, r io.Reader) error {
		var err error
		if l, err = restoreFrom(s, r); err != nil {
			return fmt.Errorf("checkpoint %s is unusable: %w", name, err)
		}
		return nil
	})
	return l, used, damaged, err
}

// restore restores s from path if it exists, or from its previous
// generation if path is damaged, logs which, and returns its label (the
// zero Label when there is no checkpoint).
func restore(s Saver, path string, log *slog.Logger) (l Label, restored bool, err error) {
	l, used, damaged, err := readNewest(s, path)
	if errors.Is(err, fs.ErrNotExist) {
		// A previous generation alone is no checkpoint: it may be left
		// over from a run whose checkpoint was removed to start afresh.
		if _, perr := os.Stat(atomicfile.Prev(path)); perr == nil {
			log.Warn("no checkpoint, starting afresh; a previous generation is left beside it", "path", path, "previous", atomicfile.Prev(path))
		} else {
			log.Info("no checkpoint: fresh weights", "path", path)
		}
		return Label{}, false, nil
	}
	if err != nil {
		if e := (*fs.PathError)(nil); errors.As(err, &e) && e.Path == path {
			return Label{}, false, fmt.Errorf("checkpoint: %w", err)
		}
		return Label{}, false, fmt.Errorf("%w; move %s away to start afresh", err, path)
	}
	if damaged != nil {
		log.Error("checkpoint is damaged; restoring the previous generation instead", "path", path, "err", damaged, "restored", used)
	}
	log.Info("restored checkpoint", "path", used, "weights", l)
	return l, true, nil
}

// restoreLabelled restores s from whichever of path and its previous
// generation carries want, so that a run rolls back to its last
// checkpoint even when this module saved a newer one that the run never
// committed. It leaves s unchanged, and says what it found, when neither
// does.
func restoreLabelled(s Saver, path string, want Label) error {
	var found []string
	for _, p := range []string{path, atomicfile.Prev(path)} {
		l, err := peekLabel(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			found = append(found, p+": none")
			continue
		case err != nil:
			found = append(found, fmt.Sprintf("%s: %v", p, err))
			continue
		case l != want:
			found = append(found, fmt.Sprintf("%s: %v", p, l))
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		_, err = restoreFrom(s, f)
		f.Close()
		if err != nil {
			found = append(found, fmt.Sprintf("%s is unusable: %v", p, err))
			continue
		}
		return nil
	}
	return fmt.Errorf("no checkpoint of %v (%s)", want, strings.Join(found, "; "))
}

// CheckpointLabel reads the label of the checkpoint at path: the run and
// step its weights are of (the zero Label for a checkpoint without one).
func CheckpointLabel(path string) (Label, error) { return peekLabel(path) }

// peekLabel reads the label of the checkpoint at path.
func peekLabel(path string) (Label, error) {
	f, err := os.Open(path)
	if err != nil {
		return Label{}, err
	}
	defer f.Close()
	return readLabel(bufio.NewReaderSize(f, 128))
}
