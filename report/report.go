package report

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/png"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/serket-go/serket/internal/atomicfile"
)

// Report is everything one report shows, in this order: the title, the
// summary table, the notes, then one section per non-empty kind of figure.
// Every field but Title may be left empty; a section with nothing in it is
// left out. Strings are shown as plain text (HTML is escaped).
type Report struct {
	Title    string
	Subtitle string // e.g. the checkpoint directory, the date, the commit

	// Summary is the table of headline figures at the top.
	Summary []KV
	// Notes are paragraphs shown under the summary: what was measured, how,
	// caveats.
	Notes []string

	// Matrices are heat maps with the value written in each cell, e.g. the
	// coherence of each target modality (columns) given each subset of
	// modalities (rows). Each is also given as a table of numbers.
	Matrices []Matrix
	// Curves are line plots, e.g. the training and test ELBO per epoch.
	Curves []Curve
	// Scatters are 2-D projections of points coloured by class, e.g. the
	// latent means projected by PCA2.
	Scatters []Scatter
	// Grids are generated samples: one row per conditioning input.
	Grids []Grid
	// Audio clips, each playable and with its spectrogram.
	Audio []Clip
	// Tables are any other tables.
	Tables []Table
	// Files are written into the report directory as they are (e.g. the
	// figures as JSON), each under its name: a plain file name, not
	// index.html and not a name the figures take (matrix-*, curve-*,
	// scatter-*, grid-*, clip-*).
	Files map[string][]byte
}

// KV is one row of the summary table.
type KV struct {
	Name  string
	Value string
	Note  string // e.g. what the number means or what chance would be
}

// Matrix is a table of numbers drawn as a heat map.
type Matrix struct {
	Title   string
	Caption string // what the figure shows, under it
	// RowLabel and ColLabel name what the rows and columns are, e.g.
	// "given" and "generated"; they label the axes.
	RowLabel, ColLabel string
	Rows, Cols         []string
	// Values[i][j] is the value for Rows[i] and Cols[j]. NaN (or an
	// infinity) means not measured: a grey cell labelled "–".
	Values [][]float64
	// Min and Max are the ends of the colour scale. If both are 0 the scale
	// is [0, 1] when every finite value lies in it (coherences, accuracies),
	// else the range of the finite values.
	Min, Max float64
	// Format formats a value for its cell and the table, e.g. "%.3f" or
	// "%.0f%%"; the default is "%.2f".
	Format string
}

// Curve is one line plot with one or more series.
type Curve struct {
	Title          string
	Caption        string
	XLabel, YLabel string
	Series         []Series
}

// Series is one line of a Curve.
type Series struct {
	Name string
	// X may be nil: the points are then at x = 1, 2, …, len(Y) (epochs).
	// Otherwise len(X) == len(Y). Points with a NaN or infinite coordinate
	// are skipped.
	X, Y []float64
}

// Scatter is a set of 2-D points, each of a class.
type Scatter struct {
	Title          string
	Caption        string
	XLabel, YLabel string
	// XY holds the points interleaved, x0, y0, x1, y1, …, as PCA2 returns
	// them. Points with a NaN or infinite coordinate are skipped.
	XY []float64
	// Labels[i] is the class of point i, an index into Classes.
	Labels  []int
	Classes []string
}

// Grid is a table of generated samples: row i is what the model produced
// from the input named RowLabels[i].
//
// A grid whose cells are all images (or empty) and that has no ColLabels
// is drawn as one picture per row, the images side by side (ImageGrid);
// any other grid is an HTML table with one small picture or text per cell.
type Grid struct {
	Title     string
	Caption   string
	RowLabels []string // nil, or one per row of Cells
	ColLabels []string // nil, or one per column (the longest row)
	Cells     [][]Cell
	// Scale is the upscaling factor of the images; 0 picks AutoScale
	// (3 for 28×28).
	Scale int
}

// Cell is one entry of a Grid: an image, a text, both (the text is shown
// under the image) or neither (an empty cell).
type Cell struct {
	Image image.Image
	Text  string
}

// Images returns a row of image cells.
func Images(imgs ...image.Image) []Cell {
	row := make([]Cell, len(imgs))
	for i, im := range imgs {
		row[i].Image = im
	}
	return row
}

// Texts returns a row of text cells.
func Texts(texts ...string) []Cell {
	row := make([]Cell, len(texts))
	for i, s := range texts {
		row[i].Text = s
	}
	return row
}

// Clip is a sound: a WAV file that the report can play, and/or a picture of
// its spectrogram (see SpectrogramImage).
type Clip struct {
	Title   string
	Caption string
	// WAV is a whole RIFF/WAVE file (e.g. from speech.WriteWAV), written
	// as is; nil for none.
	WAV []byte
	// Spectrogram is shown upscaled by Scale (0: AutoScale); nil for none.
	Spectrogram image.Image
	Scale       int
}

// Table is a plain table of text.
type Table struct {
	Title   string
	Caption string
	Header  []string   // nil for none
	Rows    [][]string // when Header is set, each row has len(Header) cells
}

// ---------------------------------------------------------------------------
// Validation

// Validate checks r as Write would, and returns every problem found, each
// naming its field (e.g. "Curves[1].Series[0]"), or nil.
func (r *Report) Validate() error {
	if r == nil {
		return errors.New("report: nil Report")
	}
	var errs []error
	for i := range r.Matrices {
		errs = append(errs, r.Matrices[i].validate(fmt.Sprintf("Matrices[%d]", i)))
	}
	for i := range r.Curves {
		errs = append(errs, r.Curves[i].validate(fmt.Sprintf("Curves[%d]", i)))
	}
	for i := range r.Scatters {
		errs = append(errs, r.Scatters[i].validate(fmt.Sprintf("Scatters[%d]", i)))
	}
	for i := range r.Grids {
		errs = append(errs, r.Grids[i].validate(fmt.Sprintf("Grids[%d]", i)))
	}
	for i := range r.Audio {
		errs = append(errs, r.Audio[i].validate(fmt.Sprintf("Audio[%d]", i)))
	}
	for i := range r.Tables {
		errs = append(errs, r.Tables[i].validate(fmt.Sprintf("Tables[%d]", i)))
	}
	for name := range r.Files {
		reserved := name == "index.html"
		for _, p := range []string{"matrix-", "curve-", "scatter-", "grid-", "clip-"} {
			reserved = reserved || strings.HasPrefix(name, p)
		}
		if name == "" || name != filepath.Base(name) || name[0] == '.' || reserved {
			errs = append(errs, bad(fmt.Sprintf("Files[%q]", name), "not a plain file name the report may take"))
		}
	}
	return errors.Join(errs...)
}

func bad(field, format string, args ...any) error {
	return fmt.Errorf("report: %s: %s", field, fmt.Sprintf(format, args...))
}

func (m *Matrix) validate(field string) error {
	if m == nil {
		return bad(field, "nil")
	}
	if len(m.Rows) == 0 || len(m.Cols) == 0 {
		return bad(field, "%d rows and %d columns; need at least one of each", len(m.Rows), len(m.Cols))
	}
	if len(m.Values) != len(m.Rows) {
		return bad(field+".Values", "%d rows but %d row names", len(m.Values), len(m.Rows))
	}
	for i, row := range m.Values {
		if len(row) != len(m.Cols) {
			return bad(fmt.Sprintf("%s.Values[%d]", field, i), "%d values but %d column names", len(row), len(m.Cols))
		}
	}
	if math.IsNaN(m.Min) || math.IsNaN(m.Max) || math.IsInf(m.Min, 0) || math.IsInf(m.Max, 0) ||
		!(m.Min < m.Max || (m.Min == 0 && m.Max == 0)) {
		return bad(field, "colour scale [Min, Max] = [%g, %g]; need Min < Max, or both 0", m.Min, m.Max)
	}
	if s := m.format(0.5); strings.Contains(s, "%!") {
		return bad(field+".Format", "%q does not format one number (gives %q)", m.Format, s)
	}
	return nil
}

// scale returns the range of the colour scale.
func (m *Matrix) scale() (lo, hi float64) {
	if m.Min < m.Max {
		return m.Min, m.Max
	}
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, row := range m.Values {
		for _, v := range row {
			if finite(v) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	switch {
	case lo > hi: // nothing finite
		return 0, 1
	case lo >= 0 && hi <= 1:
		return 0, 1
	case lo == hi:
		return lo - 0.5, hi + 0.5
	}
	return lo, hi
}

func (m *Matrix) format(v float64) string {
	if !finite(v) {
		return Dash
	}
	f := m.Format
	if f == "" {
		f = "%.2f"
	}
	return fmt.Sprintf(f, v)
}

func (c *Curve) validate(field string) error {
	if len(c.Series) == 0 {
		return bad(field, "no series")
	}
	for i, s := range c.Series {
		if s.X != nil && len(s.X) != len(s.Y) {
			return bad(fmt.Sprintf("%s.Series[%d] (%q)", field, i, s.Name), "%d x values but %d y values", len(s.X), len(s.Y))
		}
	}
	return nil
}

func (s *Scatter) validate(field string) error {
	if s == nil {
		return bad(field, "nil")
	}
	if len(s.XY)%2 != 0 {
		return bad(field+".XY", "odd length %d; want x, y pairs", len(s.XY))
	}
	if len(s.Labels) != len(s.XY)/2 {
		return bad(field+".Labels", "%d labels for %d points", len(s.Labels), len(s.XY)/2)
	}
	if len(s.Classes) == 0 {
		return bad(field+".Classes", "no class names")
	}
	for i, l := range s.Labels {
		if l < 0 || l >= len(s.Classes) {
			return bad(fmt.Sprintf("%s.Labels[%d]", field, i), "class %d is not in [0, %d)", l, len(s.Classes))
		}
	}
	return nil
}

func (g *Grid) validate(field string) error {
	if len(g.Cells) == 0 {
		return bad(field+".Cells", "no rows")
	}
	if g.RowLabels != nil && len(g.RowLabels) != len(g.Cells) {
		return bad(field+".RowLabels", "%d labels for %d rows", len(g.RowLabels), len(g.Cells))
	}
	nc := 0
	for i, row := range g.Cells {
		nc = max(nc, len(row))
		for j, c := range row {
			if c.Image != nil && c.Image.Bounds().Empty() {
				return bad(fmt.Sprintf("%s.Cells[%d][%d].Image", field, i, j), "empty (%v)", c.Image.Bounds())
			}
		}
	}
	if nc == 0 {
		return bad(field+".Cells", "every row is empty")
	}
	if g.ColLabels != nil && len(g.ColLabels) != nc {
		return bad(field+".ColLabels", "%d labels for %d columns", len(g.ColLabels), nc)
	}
	if g.Scale < 0 || g.Scale > 32 {
		return bad(field+".Scale", "%d; want 0 (automatic) to 32", g.Scale)
	}
	return nil
}

func (c *Clip) validate(field string) error {
	if c.WAV == nil && c.Spectrogram == nil {
		return bad(field, "neither WAV nor Spectrogram")
	}
	if c.WAV != nil && (len(c.WAV) < 12 || string(c.WAV[0:4]) != "RIFF" || string(c.WAV[8:12]) != "WAVE") {
		return bad(field+".WAV", "not a RIFF/WAVE file (%d bytes)", len(c.WAV))
	}
	if c.Spectrogram != nil && c.Spectrogram.Bounds().Empty() {
		return bad(field+".Spectrogram", "empty (%v)", c.Spectrogram.Bounds())
	}
	if c.Scale < 0 || c.Scale > 32 {
		return bad(field+".Scale", "%d; want 0 (automatic) to 32", c.Scale)
	}
	return nil
}

func (t *Table) validate(field string) error {
	if t.Header == nil {
		return nil
	}
	for i, row := range t.Rows {
		if len(row) != len(t.Header) {
			return bad(fmt.Sprintf("%s.Rows[%d]", field, i), "%d cells for %d columns", len(row), len(t.Header))
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Writing

// testHookBeforeRename, when set (by tests), runs on the finished
// temporary directory just before it replaces the report.
var testHookBeforeRename func(tmp string) error

// Write writes r as a self-contained report in dir: index.html (no
// script, no network resource, inline CSS) and the PNG and WAV files it
// links to by relative names, so the directory can be copied or served as
// is.
//
// It validates r first and writes nothing if r is invalid. The report is
// drawn into a hidden sibling directory and renamed to dir only once
// complete (atomicfile.WriteDir), with r.Files beside index.html: dir is
// always either the old report or the whole new one, and on an error
// nothing of the attempt is left.
//
// To keep a mistyped path from deleting anything else, an existing dir is
// only replaced if it is empty or holds an index.html.
func Write(dir string, r *Report) (err error) {
	if err := r.Validate(); err != nil {
		return err
	}
	dir = filepath.Clean(dir)
	base := filepath.Base(dir)
	if base == "." || base == ".." || base == string(filepath.Separator) {
		return fmt.Errorf("report: will not write a report as %q; name a directory", dir)
	}
	if _, err := replaceable(dir); err != nil {
		return err
	}
	err = atomicfile.WriteDir(dir, func(tmp string) error {
		if err := render(tmp, r); err != nil {
			return err
		}
		for _, name := range slices.Sorted(maps.Keys(r.Files)) {
			if err := writeFile(filepath.Join(tmp, name), r.Files[name]); err != nil {
				return err
			}
		}
		if err := syncDir(tmp); err != nil {
			return err
		}
		if testHookBeforeRename != nil {
			return testHookBeforeRename(tmp)
		}
		return nil
	})
	if err != nil && !strings.HasPrefix(err.Error(), "report:") {
		err = fmt.Errorf("report: %w", err)
	}
	return err
}

// replaceable reports whether dir exists, and an error if it exists but
// does not look like a report that Write may replace.
func replaceable(dir string) (bool, error) {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("report: %w", err)
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("report: %s exists and is not a directory", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("report: %w", err)
	}
	if len(ents) == 0 {
		return true, nil
	}
	if fi, err := os.Stat(filepath.Join(dir, "index.html")); err == nil && fi.Mode().IsRegular() {
		return true, nil
	}
	return false, fmt.Errorf("report: %s is not empty and holds no index.html; not replacing it", dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if e := f.Close(); err == nil {
		err = e
	}
	return err
}

// writeFile writes data to path and syncs it.
func writeFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("report: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("report: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

func writePNG(path string, img image.Image) error {
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, img); err != nil {
		return fmt.Errorf("report: encoding %s: %w", filepath.Base(path), err)
	}
	return writeFile(path, buf.Bytes())
}
