package integrator

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"path/filepath"
	"slices"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/internal/atomicfile"
)

// trainState is the integrator's checkpoint.
type trainState struct {
	// Run is the run's id: its modules' checkpoints carry it, so that a
	// resumed run restores its own. (Files from before it have none.)
	Run      string `json:"run,omitempty"`
	Step     uint64 `json:"step"`
	Epoch    int    `json:"epoch"`
	Position int    `json:"position"` // items of Epoch already done
	Config   string `json:"config"`
	// Aggregation is the run's (aggregate.Parse's name); empty is PoE, as
	// runs from before it are.
	Aggregation string `json:"aggregation,omitempty"`
	// Gates are a learned aggregation's weights at Step (gpoe's).
	Gates *gateState `json:"gates,omitempty"`
	// Prior is the run's prior module (TrainConfig.Prior), if any: what
	// serves or measures the run must start it too.
	Prior string `json:"prior,omitempty"`
	// Partial is Epoch's statistics over its steps so far (sums, not yet
	// means; Seconds the time spent), and ELBOs their objectives, so that a
	// resumed epoch logs one line for all of its steps.
	Partial *EpochStats `json:"partial,omitempty"`
	ELBOs   []float64   `json:"elbos,omitempty"`
	// MetricsSize is the length of the metrics log when the checkpoint was
	// written, if the log is a file.
	MetricsSize *int64 `json:"metrics_size,omitempty"`
	// CRC is the CRC-32C of the state's compact JSON without CRC; 0 (in
	// files from before it) means unchecked.
	CRC uint32 `json:"crc32c,omitempty"`
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// sum is the CRC of st.
func (st trainState) sum() (uint32, error) {
	st.CRC = 0
	b, err := json.Marshal(st)
	if err != nil {
		return 0, err
	}
	return crc32.Checksum(b, crcTable), nil
}

// clone is a copy of st that shares nothing with it.
func (st trainState) clone() trainState {
	c := st
	if st.Partial != nil {
		c.Partial = st.Partial.clone()
	}
	c.ELBOs = slices.Clone(st.ELBOs)
	if st.Gates != nil {
		g := *st.Gates
		g.Modules, g.Params = slices.Clone(g.Modules), slices.Clone(g.Params)
		c.Gates = &g
	}
	if st.MetricsSize != nil {
		n := *st.MetricsSize
		c.MetricsSize = &n
	}
	return c
}

// readState parses a training checkpoint; damage (JSON that does not
// parse, a checksum that does not match) wraps atomicfile.ErrCorrupt.
func readState(r io.Reader) (trainState, error) {
	var st trainState
	data, err := io.ReadAll(r)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("%w: it does not parse as a training checkpoint: %v", atomicfile.ErrCorrupt, err)
	}
	if st.CRC != 0 {
		if sum, err := st.sum(); err != nil || sum != st.CRC {
			return st, fmt.Errorf("%w: checksum mismatch", atomicfile.ErrCorrupt)
		}
	}
	return st, nil
}

// check refuses a state no run writes (an unchecksummed file that was
// damaged or edited) as damaged: where it is in the epoch, and its partial
// statistics, must fit a run over items items.
func (st trainState) check(items int) error {
	switch {
	case st.Epoch < 0 || st.Position < 0 || st.Position > items:
		return fmt.Errorf("%w: epoch %d, position %d of %d items", atomicfile.ErrCorrupt, st.Epoch, st.Position, items)
	case st.MetricsSize != nil && *st.MetricsSize < 0:
		return fmt.Errorf("%w: metrics log size %d", atomicfile.ErrCorrupt, *st.MetricsSize)
	case st.Partial != nil && (st.Partial.Epoch != st.Epoch || st.Partial.Steps != len(st.ELBOs)):
		return fmt.Errorf("%w: the epoch so far (epoch %d, %d steps) does not match the checkpoint (epoch %d, %d objectives)",
			atomicfile.ErrCorrupt, st.Partial.Epoch, st.Partial.Steps, st.Epoch, len(st.ELBOs))
	case st.Run != "" && !bus.ValidToken(st.Run):
		return fmt.Errorf("%w: run id %q", atomicfile.ErrCorrupt, st.Run)
	case st.Partial == nil && len(st.ELBOs) > 0:
		return fmt.Errorf("%w: objectives without the epoch's statistics", atomicfile.ErrCorrupt)
	}
	return nil
}

// metricsFile is a metrics log that a resumed run can cut back.
type metricsFile interface {
	io.Writer
	io.Seeker
	Truncate(size int64) error
}

// metricsSize is the length of the metrics log w, if it is a file.
func metricsSize(w io.Writer) *int64 {
	f, ok := w.(metricsFile)
	if !ok {
		return nil
	}
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil
	}
	return &n
}

// cutMetrics cuts the metrics log w back to the length it had at the
// checkpoint st, dropping what a crashed run logged after it.
func (ig *Integrator) cutMetrics(w io.Writer, st trainState) error {
	f, ok := w.(metricsFile)
	if !ok || st.MetricsSize == nil {
		return nil
	}
	want := *st.MetricsSize
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("integrator: resume: metrics log: %w", err)
	}
	switch {
	case n > want:
		if err := f.Truncate(want); err != nil {
			return fmt.Errorf("integrator: resume: cutting the metrics log back to the checkpoint: %w", err)
		}
		if _, err := f.Seek(want, io.SeekStart); err != nil {
			return fmt.Errorf("integrator: resume: metrics log: %w", err)
		}
		ig.log.Info("dropped the metrics logged after the checkpoint; those epochs are redone", "bytes", n-want)
	case n < want:
		ig.log.Warn("the metrics log is shorter than at the checkpoint; lines are missing", "bytes", n, "at_checkpoint", want)
	}
	return nil
}

// saveState writes st to path, keeping the file it replaces as the
// previous generation.
func (ig *Integrator) saveState(path string, st trainState) error {
	sum, err := st.sum()
	if err != nil {
		return fmt.Errorf("integrator: checkpoint: %w", err)
	}
	st.CRC = sum
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("integrator: checkpoint: %w", err)
	}
	err = atomicfile.WriteKeep(path, func(w io.Writer) error { _, err := w.Write(append(data, '\n')); return err })
	if err != nil {
		return fmt.Errorf("integrator: checkpoint: %w", err)
	}
	return nil
}

// readRunState reads the integrator.json of the run in dir; found is
// false when there is none.
func readRunState(dir string) (st trainState, found bool, err error) {
	_, _, err = atomicfile.Read(filepath.Join(dir, "integrator.json"), func(name string, rd io.Reader) error {
		var err error
		if st, err = readState(rd); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return st, false, nil
	}
	return st, err == nil, err
}

// RunPrior is the prior module the run whose checkpoints are in dir was
// trained with ("" for none, or no run there): serving or measuring the
// run takes it too, from its checkpoint.
func RunPrior(dir string) (string, error) {
	st, _, err := readRunState(dir)
	return st.Prior, err
}

// RunAggregation is the aggregation the run whose checkpoints are in dir
// was trained with, from its integrator.json: a pipeline serving or
// measuring the run fuses as it was trained to. found is false, and the
// aggregation PoE, when dir holds no integrator.json (a run of serket bench
// import, or none at all).
func RunAggregation(dir string) (agg aggregate.Aggregation, found bool, err error) {
	st, found, err := readRunState(dir)
	if err != nil {
		return nil, false, err
	}
	if !found {
		return aggregate.PoE(), false, nil
	}
	agg, err = aggregate.Parse(st.Aggregation)
	if err != nil {
		return nil, false, fmt.Errorf("integrator: the run in %s: %w", dir, err)
	}
	if l, ok := agg.(aggregate.Learned); ok {
		if err := loadedAggregation(l, st.Gates, filepath.Join(dir, "integrator.json")); err != nil {
			return nil, false, fmt.Errorf("integrator: %w", err)
		}
	}
	return agg, true, nil
}
