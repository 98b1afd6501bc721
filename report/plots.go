package report

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/palette"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// DPI is the resolution of the PNG figures. Write shows them at half
// their pixel size (96 CSS pixels per inch at 2× density), so they stay
// sharp on high-density screens and when zoomed.
const DPI = 192

// cssDPI is the resolution a browser assumes for CSS pixels.
const cssDPI = 96

// Dash is what a missing (NaN or infinite) value is shown as.
const Dash = "–"

// viridisControls are ten points of matplotlib's viridis colour map, at
// 0, 1/9, …, 1. Their luminance rises monotonically, so the map reads the
// same in grey and to colour-blind readers.
var viridisControls = []color.Color{
	color.NRGBA{0x44, 0x01, 0x54, 0xff},
	color.NRGBA{0x48, 0x28, 0x78, 0xff},
	color.NRGBA{0x3e, 0x49, 0x89, 0xff},
	color.NRGBA{0x31, 0x68, 0x8e, 0xff},
	color.NRGBA{0x26, 0x82, 0x8e, 0xff},
	color.NRGBA{0x1f, 0x9e, 0x89, 0xff},
	color.NRGBA{0x35, 0xb7, 0x79, 0xff},
	color.NRGBA{0x6e, 0xce, 0x58, 0xff},
	color.NRGBA{0xb5, 0xde, 0x2b, 0xff},
	color.NRGBA{0xfd, 0xe7, 0x25, 0xff},
}

// Viridis returns a viridis-like sequential colour map (dark purple → blue
// → green → yellow) whose luminance is linear in the value, ranging over
// [min, max]. It panics if min >= max.
func Viridis(min, max float64) palette.ColorMap {
	if !(min < max) {
		panic(fmt.Sprintf("report: Viridis range [%g, %g] is empty", min, max))
	}
	cm, err := moreland.NewLuminance(viridisControls)
	if err != nil {
		panic(err) // the controls are fixed and tested
	}
	cm.SetMax(max)
	cm.SetMin(min)
	return cm
}

// classColors is the "tableau 10" qualitative palette: ten colours that
// stay distinct on screen and in print.
var classColors = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff}, // blue
	color.RGBA{0xff, 0x7f, 0x0e, 0xff}, // orange
	color.RGBA{0x2c, 0xa0, 0x2c, 0xff}, // green
	color.RGBA{0xd6, 0x27, 0x28, 0xff}, // red
	color.RGBA{0x94, 0x67, 0xbd, 0xff}, // purple
	color.RGBA{0x8c, 0x56, 0x4b, 0xff}, // brown
	color.RGBA{0xe3, 0x77, 0xc2, 0xff}, // pink
	color.RGBA{0x7f, 0x7f, 0x7f, 0xff}, // grey
	color.RGBA{0xbc, 0xbd, 0x22, 0xff}, // olive
	color.RGBA{0x17, 0xbe, 0xcf, 0xff}, // cyan
}

// classShapes are cycled once the colours run out, so that classes i and
// i+10 still differ.
var classShapes = []draw.GlyphDrawer{
	draw.CircleGlyph{},
	draw.SquareGlyph{},
	draw.TriangleGlyph{},
	draw.CrossGlyph{},
	draw.PlusGlyph{},
	draw.RingGlyph{},
}

// ClassColor returns the colour of class i in scatter plots and curves.
func ClassColor(i int) color.Color {
	n := len(classColors)
	return classColors[((i%n)+n)%n]
}

func classShape(i int) draw.GlyphDrawer {
	if i < 0 {
		i = -i
	}
	return classShapes[(i/len(classColors))%len(classShapes)]
}

var seriesDashes = [][]vg.Length{
	nil,
	{vg.Points(6), vg.Points(3)},
	{vg.Points(2), vg.Points(2)},
	{vg.Points(6), vg.Points(2), vg.Points(2), vg.Points(2)},
}

// newPlot returns a plot in the report's style: Liberation Sans (which
// gonum/plot embeds), a bold title.
func newPlot(title string) *plot.Plot {
	p := plot.New()
	sans := func(f *font.Font, size float64) {
		f.Variant = "Sans"
		f.Size = vg.Points(size)
	}
	p.Title.Text = title
	sans(&p.Title.TextStyle.Font, 13)
	p.Title.TextStyle.Font.Weight = xfont.WeightBold
	p.Title.Padding = vg.Points(8)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		sans(&a.Label.TextStyle.Font, 11)
		sans(&a.Tick.Label.Font, 10)
	}
	return p
}

// topMargin is the room left above an untitled plot, so that the top
// tick label is not cut off.
func topMargin(p *plot.Plot) vg.Length {
	if p.Title.Text == "" {
		return vg.Points(8)
	}
	return 0
}

func newLegend() plot.Legend {
	l := plot.NewLegend()
	l.TextStyle.Font.Variant = "Sans"
	l.TextStyle.Font.Size = vg.Points(10)
	l.Padding = vg.Points(3)
	return l
}

// figure is something that draws itself on a canvas of a given size.
type figure struct {
	w, h vg.Length
	draw func(dc draw.Canvas) error
}

// save draws f into path; the format follows the extension (.png at DPI,
// or any other format gonum/plot knows: .svg, .pdf, .eps, .jpg, .tif).
// Gonum/plot panics on some degenerate input; that becomes an error.
func (f figure) save(path string) (err error) {
	format := strings.ToLower(strings.TrimPrefix(filepath.Ext(path), "."))
	var c vg.CanvasWriterTo
	if format == "png" {
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(f.w, f.h), vgimg.UseDPI(DPI))}
	} else {
		c, err = draw.NewFormattedCanvas(f.w, f.h, format)
		if err != nil {
			return fmt.Errorf("report: %s: %w", path, err)
		}
	}
	if err := drawSafely(f.draw, draw.New(c)); err != nil {
		return fmt.Errorf("report: drawing %s: %w", filepath.Base(path), err)
	}
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(file); err != nil {
		file.Close()
		return fmt.Errorf("report: writing %s: %w", path, err)
	}
	if err := file.Sync(); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}

func drawSafely(fn func(draw.Canvas) error, dc draw.Canvas) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("gonum/plot: %v", r)
		}
	}()
	return fn(dc)
}

// pixels returns the size of f in CSS pixels.
func (f figure) pixels() (w, h int) {
	return int(math.Round(f.w.Dots(cssDPI))), int(math.Round(f.h.Dots(cssDPI)))
}

func textWidth(sty text.Style, s string) vg.Length { return sty.Rectangle(s).Max.X }

// ---------------------------------------------------------------------------
// Heat map

// HeatMap draws m as a heat map with the value written in each cell and a
// colour bar, into path (.png, or .svg/.pdf). Rows are drawn top to bottom
// in the order of m.Rows. Missing (NaN or infinite) values are drawn grey
// and labelled "–".
func HeatMap(m *Matrix, path string) error {
	if err := m.validate("Matrix"); err != nil {
		return err
	}
	return heatMapFigure(m).save(path)
}

// matrixGrid adapts a Matrix to plotter.GridXYZ: column c, row r counted
// from the bottom (Y increases upwards, m.Rows run downwards).
type matrixGrid struct{ m *Matrix }

func (g matrixGrid) Dims() (c, r int) { return len(g.m.Cols), len(g.m.Rows) }
func (g matrixGrid) Z(c, r int) float64 {
	v := g.m.Values[len(g.m.Rows)-1-r][c]
	if math.IsInf(v, 0) {
		return math.NaN()
	}
	return v
}
func (g matrixGrid) X(c int) float64 { return float64(c) }
func (g matrixGrid) Y(r int) float64 { return float64(r) }

func heatMapFigure(m *Matrix) figure {
	lo, hi := m.scale()
	cm := Viridis(lo, hi)
	pal := cm.Palette(256)
	cols := pal.Colors()
	nr, nc := len(m.Rows), len(m.Cols)

	p := newPlot(m.Title)
	p.X.Label.Text = m.ColLabel
	p.Y.Label.Text = m.RowLabel
	h := plotter.NewHeatMap(matrixGrid{m}, pal)
	h.Min, h.Max = lo, hi
	h.Underflow, h.Overflow = cols[0], cols[len(cols)-1]
	h.NaN = color.Gray{0xd9}
	p.Add(h)

	// The values, in black on light cells and white on dark ones.
	var xys plotter.XYs
	var labels []string
	var styles []text.Style
	cellFont := p.X.Tick.Label.Font
	cellFont.Size = vg.Points(11)
	for r := range nr {
		for c := range nc {
			v := m.Values[r][c]
			var s string
			var bg color.Color
			switch {
			case math.IsNaN(v) || math.IsInf(v, 0):
				s, bg = Dash, h.NaN
			default:
				s = m.format(v)
				bg = cols[int(math.Round((math.Max(lo, math.Min(hi, v))-lo)/(hi-lo)*float64(len(cols)-1)))]
			}
			fg := color.Color(color.Black)
			if luminance(bg) < 0.45 {
				fg = color.White
			}
			xys = append(xys, plotter.XY{X: float64(c), Y: float64(nr - 1 - r)})
			labels = append(labels, s)
			styles = append(styles, text.Style{
				Color:   fg,
				Font:    cellFont,
				XAlign:  draw.XCenter,
				YAlign:  draw.YCenter,
				Handler: p.TextHandler,
			})
		}
	}
	lab := &plotter.Labels{XYs: xys, Labels: labels, TextStyle: styles}
	p.Add(lab)

	p.NominalX(m.Cols...)
	rows := make([]string, nr)
	for r := range nr {
		rows[r] = m.Rows[nr-1-r]
	}
	p.NominalY(rows...)
	p.X.Padding, p.Y.Padding = 0, 0
	p.X.Label.Padding = vg.Points(4)
	p.X.Min, p.X.Max = -0.5, float64(nc)-0.5
	p.Y.Min, p.Y.Max = -0.5, float64(nr)-0.5

	// Size: room for the row labels, cells of at least 80×34 pt (wider when a
	// column name or a value needs it) and a colour bar.
	cellW := vg.Points(80)
	for _, s := range m.Cols {
		cellW = max(cellW, textWidth(p.X.Tick.Label, s)+vg.Points(12))
	}
	for _, s := range labels {
		cellW = max(cellW, textWidth(styles[0], s)+vg.Points(12))
	}
	rowW := vg.Length(0)
	for _, s := range m.Rows {
		rowW = max(rowW, textWidth(p.Y.Tick.Label, s))
	}
	const barW = 70
	w := rowW + vg.Points(40) + cellW*vg.Length(nc) + vg.Points(barW)
	hgt := vg.Points(34)*vg.Length(nr) + vg.Points(75)

	return figure{w: w, h: hgt, draw: func(dc draw.Canvas) error {
		main := draw.Crop(dc, 0, -vg.Points(barW), 0, -topMargin(p))
		p.Draw(main)
		data := p.DataCanvas(main)

		// The colour bar, its data area aligned with the cells.
		bar := newPlot("")
		bar.Add(&plotter.ColorBar{ColorMap: cm, Vertical: true, Colors: 256})
		bar.HideX()
		bar.X.Padding, bar.Y.Padding = 0, 0
		bar.Y.Min, bar.Y.Max = lo, hi
		strip := draw.Crop(dc, dc.Max.X-dc.Min.X-vg.Points(barW)+vg.Points(22), -vg.Points(6), 0, 0)
		inner := bar.DataCanvas(strip)
		strip.Min.Y += data.Min.Y - inner.Min.Y
		strip.Max.Y += data.Max.Y - inner.Max.Y
		bar.Draw(strip)
		return nil
	}}
}

// luminance is the relative luminance of c in [0, 1].
func luminance(c color.Color) float64 {
	r, g, b, _ := c.RGBA()
	lin := func(v uint32) float64 {
		x := float64(v) / 0xffff
		if x <= 0.04045 {
			return x / 12.92
		}
		return math.Pow((x+0.055)/1.055, 2.4)
	}
	return 0.2126*lin(r) + 0.7152*lin(g) + 0.0722*lin(b)
}

// ---------------------------------------------------------------------------
// Line plot

// ErrNoData is returned by LinePlot and ScatterPlot when there is no
// finite point to draw.
var ErrNoData = errors.New("report: no finite data to plot")

// LinePlot draws the series of c as lines (with point markers while a
// series has at most 60 points) and a legend, into path. Points whose x or
// y is NaN or infinite are left out; if none is left it returns ErrNoData.
func LinePlot(c Curve, path string) error {
	if err := c.validate("Curve"); err != nil {
		return err
	}
	f, err := lineFigure(&c)
	if err != nil {
		return err
	}
	return f.save(path)
}

func lineFigure(c *Curve) (figure, error) {
	p := newPlot(c.Title)
	p.X.Label.Text = c.XLabel
	p.Y.Label.Text = c.YLabel
	p.Add(plotter.NewGrid())
	legend := newLegend()
	drawn := false
	for i, s := range c.Series {
		xys := make(plotter.XYs, 0, len(s.Y))
		for j, y := range s.Y {
			x := float64(j + 1)
			if s.X != nil {
				x = s.X[j]
			}
			if finite(x) && finite(y) {
				xys = append(xys, plotter.XY{X: x, Y: y})
			}
		}
		name := s.Name
		if name == "" {
			name = fmt.Sprintf("series %d", i+1)
		}
		if len(xys) == 0 {
			legend.Add(name + " (no finite values)")
			continue
		}
		drawn = true
		line, err := plotter.NewLine(xys)
		if err != nil {
			return figure{}, fmt.Errorf("report: Curve %q series %q: %w", c.Title, name, err)
		}
		line.Color = ClassColor(i)
		line.Width = vg.Points(1.5)
		line.Dashes = seriesDashes[(i/len(classColors))%len(seriesDashes)]
		p.Add(line)
		thumbs := []plot.Thumbnailer{line}
		if len(xys) <= 60 {
			pts, err := plotter.NewScatter(xys)
			if err != nil {
				return figure{}, fmt.Errorf("report: Curve %q series %q: %w", c.Title, name, err)
			}
			pts.Color = line.Color
			pts.Shape = classShape(i)
			pts.Radius = vg.Points(2.2)
			p.Add(pts)
			thumbs = append(thumbs, pts)
		}
		legend.Add(name, thumbs...)
	}
	if !drawn {
		return figure{}, ErrNoData
	}
	return withLegend(p, legend, vg.Points(440), vg.Points(250)), nil
}

// withLegend draws p with legend to its right (outside the data), so the
// legend never hides data.
func withLegend(p *plot.Plot, legend plot.Legend, w, h vg.Length) figure {
	legend.Top = true
	legend.Left = true
	// Only the width matters here; Rectangle measures every entry.
	r := legend.Rectangle(draw.Canvas{})
	lw := r.Max.X - r.Min.X
	if lw > 0 {
		lw += vg.Points(14)
	}
	return figure{w: w + lw, h: h, draw: func(dc draw.Canvas) error {
		main := draw.Crop(dc, 0, -lw, 0, -topMargin(p))
		p.Draw(main)
		if lw > 0 {
			data := p.DataCanvas(main)
			lc := draw.Crop(dc, dc.Max.X-dc.Min.X-lw+vg.Points(10), 0, 0, 0)
			lc.Max.Y = data.Max.Y
			legend.Draw(lc)
		}
		return nil
	}}
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// ---------------------------------------------------------------------------
// Scatter plot

// ScatterPlot draws the points of s, one colour (and from the 11th class
// on, one marker shape) per class, with a legend of the class names, into
// path. Points with a NaN or infinite coordinate are left out; if none is
// left it returns ErrNoData.
func ScatterPlot(s *Scatter, path string) error {
	if err := s.validate("Scatter"); err != nil {
		return err
	}
	f, err := scatterFigure(s)
	if err != nil {
		return err
	}
	return f.save(path)
}

func scatterFigure(s *Scatter) (figure, error) {
	p := newPlot(s.Title)
	p.X.Label.Text = s.XLabel
	p.Y.Label.Text = s.YLabel
	p.Add(plotter.NewGrid())
	legend := newLegend()

	n := len(s.XY) / 2
	byClass := make([]plotter.XYs, len(s.Classes))
	for i := range n {
		x, y := s.XY[2*i], s.XY[2*i+1]
		if finite(x) && finite(y) {
			byClass[s.Labels[i]] = append(byClass[s.Labels[i]], plotter.XY{X: x, Y: y})
		}
	}
	// Fewer, smaller, lighter markers when there are many points.
	radius := vg.Points(2.5)
	alpha := uint8(230)
	if n > 2000 {
		radius, alpha = vg.Points(1.5), 150
	} else if n > 500 {
		radius, alpha = vg.Points(2), 190
	}
	drawn := false
	for k, pts := range byClass {
		name := s.Classes[k]
		if len(pts) == 0 {
			continue
		}
		drawn = true
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			return figure{}, fmt.Errorf("report: Scatter %q class %q: %w", s.Title, name, err)
		}
		r, g, b, _ := ClassColor(k).RGBA()
		sc.Color = color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), alpha}
		sc.Shape = classShape(k)
		sc.Radius = radius
		p.Add(sc)
		thumb := *sc
		thumb.Radius = vg.Points(3.5)
		thumb.Color = ClassColor(k)
		legend.Add(fmt.Sprintf("%s (%d)", name, len(pts)), &thumb)
	}
	if !drawn {
		return figure{}, ErrNoData
	}
	return withLegend(p, legend, vg.Points(400), vg.Points(340)), nil
}
