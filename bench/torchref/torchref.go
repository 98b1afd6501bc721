// Package torchref exchanges the model and its data with the PyTorch
// reference of bench/torch_quality.py, so that serket and the reference
// train on the same items and are measured by the same code:
//
//   - Export writes each built-in modality's encoder inputs, exactly as the
//     modules read them, as NumPy arrays, with the partial-pairing masks the
//     modules draw;
//   - Import reads the reference's NumPy weights into the modalities'
//     networks, every shape checked, to be saved as module checkpoints;
//   - ExportStep takes one training step in-process, as the distributed
//     step does, and writes its weights, inputs, noise, strata and every
//     parameter's gradient, so that bench/torch_check.py can recompute the
//     step from its definition and compare (the gradient cross-check,
//     TestGradientsMatchPyTorch, `make bench-check`).
//
// Arrays are row-major; weights are (out, in), PyTorch's layout.
package torchref

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"codeberg.org/sbinet/npyio"

	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/internal/atomicfile"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/audio"
	"github.com/serket-go/serket/modules/fmnist3"
	"github.com/serket-go/serket/modules/language"
	"github.com/serket-go/serket/modules/vision"
)

// ExportConfig says what Export writes.
type ExportConfig struct {
	Dir         string    // where the arrays go (created if needed)
	Fractions   []float64 // partial-pairing fractions to write masks for
	PairingSeed uint64    // the masks' seed, as the modules' --pairing-seed
	Limit       int       // the first Limit training items only (0: all)
	Log         *slog.Logger
}

// Export writes, for the train and test splits of m's dataset,
// <split>_<modality>.npy (vision: float32 pixels in [0, 1]; language: int32
// token ids; audio: float32 normalised log-mel), train_present_<F>.npy
// (uint8, N×modalities) the partial-pairing mask of each fraction F, and
// meta.json (the row sizes, counts, vocabulary size and dataset settings).
func Export(m *fmnist3.Model, cfg ExportConfig) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("torchref: %w", err)
	}
	meta := map[string]any{"modalities": m.Names(), "latent": 64, "hidden": 512,
		"tokens": dataset.MaxTokens, "vocab": m.Language.Vocab().Len(), "dataset": m.Manifest.Config}
	sizes := map[string]int{}
	for _, split := range []string{dataset.Train, dataset.Test} {
		var ids []uint64
		for _, it := range m.Manifest.InSplit(split) {
			ids = append(ids, it.ID)
		}
		if split == dataset.Train && cfg.Limit > 0 && cfg.Limit < len(ids) {
			ids = ids[:cfg.Limit]
		}
		meta[split+"_items"] = len(ids)
		for _, name := range m.Names() {
			size, err := exportInputs(m, name, ids, filepath.Join(cfg.Dir, split+"_"+name+".npy"))
			if err != nil {
				return err
			}
			sizes[name] = size
			cfg.Log.Info("exported", "split", split, "modality", name, "items", len(ids))
		}
		if split == dataset.Train {
			fs, err := exportMasks(m.Names(), ids, cfg)
			if err != nil {
				return err
			}
			meta["fractions"] = fs
		}
	}
	meta["sizes"] = sizes
	return atomicfile.Write(filepath.Join(cfg.Dir, "meta.json"), func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(meta)
	})
}

// exportInputs writes modality name's encoder inputs of ids to path and
// returns the size of a row.
func exportInputs(m *fmnist3.Model, name string, ids []uint64, path string) (int, error) {
	b, _, err := m.Modality(name).(module.Loader).LoadBatch(ids)
	if err != nil {
		return 0, fmt.Errorf("torchref: %s: %w", name, err)
	}
	var arr any
	var size int
	switch x := b.(type) {
	case *vision.Images:
		arr, size = x.Pix, vision.Pixels
	case *language.Captions:
		arr, size = x.IDs, len(x.OneHot)/x.N
	case *audio.Features:
		arr, size = x.X, len(x.X)/x.N
	default:
		return 0, fmt.Errorf("torchref: %s: a batch of %T, which the reference does not read", name, b)
	}
	return size, writeNPY(path, arr)
}

// exportMasks writes the partial-pairing mask of each fraction over the
// training ids, as the modules draw it, and returns the fractions as
// written in the file names.
func exportMasks(names []string, ids []uint64, cfg ExportConfig) ([]string, error) {
	var out []string
	for _, f := range cfg.Fractions {
		mask := make([]uint8, len(ids)*len(names))
		for i, id := range ids {
			for k, name := range names {
				if dataset.Present(id, dataset.Train, name, names, f, cfg.PairingSeed) {
					mask[i*len(names)+k] = 1
				}
			}
		}
		fs := strconv.FormatFloat(f, 'g', -1, 64)
		out = append(out, fs)
		if err := writeNPY(filepath.Join(cfg.Dir, "train_present_"+fs+".npy"), mask); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func writeNPY(path string, arr any) error {
	err := atomicfile.Write(path, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		if err := npyio.Write(bw, arr); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return fmt.Errorf("torchref: %w", err)
	}
	return nil
}

// Import reads from/<modality>/<param>.npy into every parameter of m's
// networks (enc.0.W, enc.0.b, …, dec.3.b), refusing a file of another
// shape or type, or with a value that is not finite, and saves them as
// out/<modality>.ckpt. It copies from/metrics.jsonl too, when there is one:
// the reference trainer's log, whose throughput bench quality reports.
func Import(m *fmnist3.Model, from, out string) error {
	for _, name := range m.Names() {
		for _, p := range m.Net(name).Params() {
			if err := readNPY(filepath.Join(from, name, p.Name+".npy"), p.Shape, p.W); err != nil {
				return err
			}
		}
	}
	if err := m.Save(out); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(from, "metrics.jsonl"))
	if err != nil {
		return nil // no log: no throughput to report
	}
	if err := atomicfile.Write(filepath.Join(out, "metrics.jsonl"), func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
		return fmt.Errorf("torchref: %w", err)
	}
	return nil
}

// readNPY reads a float32 array of the given shape into dst.
func readNPY(path string, shape []int, dst []float32) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("torchref: %w", err)
	}
	defer f.Close()
	r, err := npyio.NewReader(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("torchref: %s: %w", path, err)
	}
	if got := r.Header.Descr.Shape; fmt.Sprint(got) != fmt.Sprint(shape) || strings.Trim(r.Header.Descr.Type, "'\"") != "<f4" {
		return fmt.Errorf("torchref: %s: a %s array of shape %v, want <f4 of shape %v", path, r.Header.Descr.Type, got, shape)
	}
	var v []float32
	if err := r.Read(&v); err != nil {
		return fmt.Errorf("torchref: %s: %w", path, err)
	}
	for i, x := range v {
		if x != x || x > 3e38 || x < -3e38 {
			return fmt.Errorf("torchref: %s: value %d is %v", path, i, x)
		}
	}
	copy(dst, v)
	return nil
}
