package report

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"image"
	"path/filepath"
)

// The page's view of a report: every file already written, every string
// still raw (the template escapes it).
type page struct {
	Title, Subtitle string
	Summary         []KV
	Notes           []string
	Matrices        []matrixView
	Curves          []figureView
	Scatters        []figureView
	Grids           []gridView
	Audio           []clipView
	Tables          []Table
	Contents        []link
}

type link struct{ ID, Text string }

type imgView struct {
	Src, Alt string
	W, H     int  // CSS pixels
	Pixel    bool // draw pixel-exact (no smoothing when scaled)
}

type figureView struct {
	ID, Title, Caption string
	Img                *imgView
	Missing            string // shown instead of Img
}

type matrixView struct {
	figureView
	RowLabel, ColLabel string
	Cols               []string
	Rows               []matrixRow
}

type matrixRow struct {
	Name  string
	Cells []string
}

type gridView struct {
	ID, Title, Caption string
	Strips             []stripRow // one picture per row
	Cols               []string   // table form
	Rows               []cellRow  // table form
}

type stripRow struct {
	Label string
	Img   imgView
}

type cellRow struct {
	Label string
	Cells []cellView
}

type cellView struct {
	Img  *imgView
	Text string
}

type clipView struct {
	ID, Title, Caption string
	WAV                string
	Spec               *imgView
}

// render writes every file of r's report into dir, index.html last.
func render(dir string, r *Report) error {
	p := &page{Title: r.Title, Subtitle: r.Subtitle, Summary: r.Summary, Notes: r.Notes, Tables: r.Tables}
	if p.Title == "" {
		p.Title = "Report"
	}
	if len(p.Summary) > 0 {
		p.Contents = append(p.Contents, link{"summary", "Summary"})
	}
	if len(p.Notes) > 0 {
		p.Contents = append(p.Contents, link{"notes", "Notes"})
	}

	for i := range r.Matrices {
		m := &r.Matrices[i]
		name := fmt.Sprintf("matrix-%02d.png", i+1)
		untitled := *m // the section's heading names the figure
		untitled.Title = ""
		f := heatMapFigure(&untitled)
		if err := f.save(filepath.Join(dir, name)); err != nil {
			return err
		}
		v := matrixView{
			figureView: figureView{ID: fmt.Sprintf("matrix-%d", i+1), Title: m.Title, Caption: m.Caption, Img: imgOf(f, name, m.Title)},
			RowLabel:   m.RowLabel, ColLabel: m.ColLabel, Cols: m.Cols,
		}
		for r, row := range m.Values {
			mr := matrixRow{Name: m.Rows[r]}
			for _, x := range row {
				mr.Cells = append(mr.Cells, m.format(x))
			}
			v.Rows = append(v.Rows, mr)
		}
		p.Matrices = append(p.Matrices, v)
	}
	if len(p.Matrices) > 0 {
		p.Contents = append(p.Contents, link{"matrices", "Heat maps"})
	}

	for i := range r.Curves {
		c := r.Curves[i]
		c.Title = "" // the page titles the figure
		v, err := renderFigure(dir, "curve", i, r.Curves[i].Title, r.Curves[i].Caption, "No finite value to plot.",
			func() (figure, error) { return lineFigure(&c) })
		if err != nil {
			return err
		}
		p.Curves = append(p.Curves, v)
	}
	if len(p.Curves) > 0 {
		p.Contents = append(p.Contents, link{"curves", "Curves"})
	}

	for i := range r.Scatters {
		s := r.Scatters[i]
		s.Title = ""
		v, err := renderFigure(dir, "scatter", i, r.Scatters[i].Title, r.Scatters[i].Caption, "No point with finite coordinates to plot.",
			func() (figure, error) { return scatterFigure(&s) })
		if err != nil {
			return err
		}
		p.Scatters = append(p.Scatters, v)
	}
	if len(p.Scatters) > 0 {
		p.Contents = append(p.Contents, link{"scatters", "Latent space"})
	}

	for i := range r.Grids {
		v, err := renderGrid(dir, i, &r.Grids[i])
		if err != nil {
			return err
		}
		p.Grids = append(p.Grids, v)
	}
	if len(p.Grids) > 0 {
		p.Contents = append(p.Contents, link{"grids", "Samples"})
	}

	for i := range r.Audio {
		c := &r.Audio[i]
		v := clipView{ID: fmt.Sprintf("clip-%d", i+1), Title: c.Title, Caption: c.Caption}
		if c.WAV != nil {
			v.WAV = fmt.Sprintf("clip-%02d.wav", i+1)
			if err := writeFile(filepath.Join(dir, v.WAV), c.WAV); err != nil {
				return err
			}
		}
		if c.Spectrogram != nil {
			name := fmt.Sprintf("clip-%02d-spectrogram.png", i+1)
			img := ImageGrid([][]image.Image{{c.Spectrogram}}, c.Scale)
			if err := writePNG(filepath.Join(dir, name), img); err != nil {
				return err
			}
			v.Spec = pixelImg(img, name, "spectrogram: "+c.Title)
		}
		p.Audio = append(p.Audio, v)
	}
	if len(p.Audio) > 0 {
		p.Contents = append(p.Contents, link{"audio", "Audio"})
	}
	if len(p.Tables) > 0 {
		p.Contents = append(p.Contents, link{"tables", "Tables"})
	}

	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, p); err != nil {
		return fmt.Errorf("report: index.html: %w", err)
	}
	return writeFile(filepath.Join(dir, "index.html"), buf.Bytes())
}

func renderGrid(dir string, i int, g *Grid) (gridView, error) {
	v := gridView{ID: fmt.Sprintf("grid-%d", i+1), Title: g.Title, Caption: g.Caption, Cols: g.ColLabels}
	label := func(r int) string {
		if g.RowLabels == nil {
			return ""
		}
		return g.RowLabels[r]
	}
	strips := g.ColLabels == nil
	for _, row := range g.Cells {
		for _, c := range row {
			if c.Text != "" {
				strips = false
			}
		}
	}
	// One scale for the whole grid, so that all its images match.
	scale := g.Scale
	if scale == 0 {
		var w, h int
		for _, row := range g.Cells {
			for _, c := range row {
				if c.Image != nil {
					w, h = max(w, c.Image.Bounds().Dx()), max(h, c.Image.Bounds().Dy())
				}
			}
		}
		scale = AutoScale(w, h)
	}
	for r, row := range g.Cells {
		if strips {
			imgs := make([]image.Image, len(row))
			for j, c := range row {
				imgs[j] = c.Image
			}
			img := ImageGrid([][]image.Image{imgs}, scale)
			if img.Bounds().Empty() {
				v.Strips = append(v.Strips, stripRow{Label: label(r)})
				continue
			}
			name := fmt.Sprintf("grid-%02d-row-%02d.png", i+1, r+1)
			if err := writePNG(filepath.Join(dir, name), img); err != nil {
				return v, err
			}
			v.Strips = append(v.Strips, stripRow{Label: label(r), Img: *pixelImg(img, name, fmt.Sprintf("%s, row %d: %s", g.Title, r+1, label(r)))})
			continue
		}
		cr := cellRow{Label: label(r)}
		for j, c := range row {
			cv := cellView{Text: c.Text}
			if c.Image != nil {
				name := fmt.Sprintf("grid-%02d-r%02d-c%02d.png", i+1, r+1, j+1)
				img := ImageGrid([][]image.Image{{c.Image}}, scale)
				if err := writePNG(filepath.Join(dir, name), img); err != nil {
					return v, err
				}
				cv.Img = pixelImg(img, name, fmt.Sprintf("%s, row %d, column %d", g.Title, r+1, j+1))
			}
			cr.Cells = append(cr.Cells, cv)
		}
		v.Rows = append(v.Rows, cr)
	}
	return v, nil
}

// renderFigure draws figure i of a kind (curve, scatter) into dir as
// <kind>-NN.png and returns its place on the page; a figure with nothing
// to draw gets the missing text instead.
func renderFigure(dir, kind string, i int, title, caption, missing string, draw func() (figure, error)) (figureView, error) {
	v := figureView{ID: fmt.Sprintf("%s-%d", kind, i+1), Title: title, Caption: caption}
	f, err := draw()
	switch {
	case errors.Is(err, ErrNoData):
		v.Missing = missing
	case err != nil:
		return v, err
	default:
		name := fmt.Sprintf("%s-%02d.png", kind, i+1)
		if err := f.save(filepath.Join(dir, name)); err != nil {
			return v, err
		}
		v.Img = imgOf(f, name, title)
	}
	return v, nil
}

func imgOf(f figure, name, alt string) *imgView {
	w, h := f.pixels()
	return &imgView{Src: name, Alt: alt, W: w, H: h}
}

func pixelImg(img image.Image, name, alt string) *imgView {
	b := img.Bounds()
	return &imgView{Src: name, Alt: alt, W: b.Dx(), H: b.Dy(), Pixel: true}
}

var pageTemplate = template.Must(template.New("index.html").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       line-height: 1.45; color: #1a1a1a; background: #fff; margin: 0 auto; max-width: 70rem; padding: 1rem 1.5rem 4rem; }
h1 { margin-bottom: 0.2rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
h3 { margin: 1.6rem 0 0.4rem; }
.subtitle { color: #555; margin-top: 0; }
nav { font-size: 0.95rem; color: #555; }
nav a { margin-right: 0.9rem; }
.intro { color: #444; max-width: 48rem; }
figure { margin: 0.6rem 0 1.4rem; }
figcaption, .caption { color: #444; font-size: 0.95rem; max-width: 48rem; margin-top: 0.3rem; }
img { max-width: 100%; height: auto; }
img.pixel { image-rendering: pixelated; image-rendering: crisp-edges; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.95rem; }
th, td { border: 1px solid #d0d0d0; padding: 0.25rem 0.6rem; text-align: left; vertical-align: middle; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.grid td { text-align: center; }
table.grid td .text { max-width: 16rem; display: inline-block; }
table.strips td { border: none; padding: 0.15rem 0.4rem; }
table.strips th { background: none; border: none; text-align: right; font-weight: normal; color: #333; padding-right: 0.6rem; }
.missing { color: #a00; }
audio { display: block; margin: 0.3rem 0; }
details { margin: 0.3rem 0 1rem; }
summary { cursor: pointer; color: #333; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{with .Subtitle}}<p class="subtitle">{{.}}</p>{{end}}
{{with .Contents}}<nav>Contents: {{range .}}<a href="#{{.ID}}">{{.Text}}</a>{{end}}</nav>{{end}}

{{with .Summary}}
<h2 id="summary">Summary</h2>
<table class="summary">
<tr><th>Figure</th><th>Value</th><th>Note</th></tr>
{{range .}}<tr><td>{{.Name}}</td><td class="num">{{.Value}}</td><td>{{.Note}}</td></tr>
{{end}}</table>
{{end}}

{{with .Notes}}
<h2 id="notes">Notes</h2>
{{range .}}<p>{{.}}</p>
{{end}}{{end}}

{{with .Matrices}}
<h2 id="matrices">Heat maps</h2>
<p class="intro">Each cell holds the value for its row and column, written in the cell; its colour follows the scale on the right (dark purple low, yellow high).
A grey cell marked – was not measured. The same numbers are in the table under each picture.</p>
{{range .}}
<h3 id="{{.ID}}">{{.Title}}</h3>
<figure>
{{with .Img}}<img src="{{.Src}}" alt="{{.Alt}}" width="{{.W}}" height="{{.H}}">{{end}}
{{with .Caption}}<figcaption>{{.}}</figcaption>{{end}}
</figure>
<details><summary>The numbers</summary>
<table class="matrix">
<tr><th>{{.RowLabel}}{{if and .RowLabel .ColLabel}} \ {{end}}{{.ColLabel}}</th>{{range .Cols}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr><th>{{.Name}}</th>{{range .Cells}}<td class="num">{{.}}</td>{{end}}</tr>
{{end}}</table>
</details>
{{end}}{{end}}

{{with .Curves}}
<h2 id="curves">Curves</h2>
<p class="intro">Line plots, one line per series (named in the legend on the right); missing values are skipped.</p>
{{range .}}
<h3 id="{{.ID}}">{{.Title}}</h3>
<figure>
{{with .Img}}<img src="{{.Src}}" alt="{{.Alt}}" width="{{.W}}" height="{{.H}}">{{end}}
{{with .Missing}}<p class="missing">{{.}}</p>{{end}}
{{with .Caption}}<figcaption>{{.}}</figcaption>{{end}}
</figure>
{{end}}{{end}}

{{with .Scatters}}
<h2 id="scatters">Latent space</h2>
<p class="intro">Each point is one item, placed by a two-dimensional projection and coloured by its class (legend on the right, with the number of points).
Classes that form separate clusters are told apart by the representation.</p>
{{range .}}
<h3 id="{{.ID}}">{{.Title}}</h3>
<figure>
{{with .Img}}<img src="{{.Src}}" alt="{{.Alt}}" width="{{.W}}" height="{{.H}}">{{end}}
{{with .Missing}}<p class="missing">{{.}}</p>{{end}}
{{with .Caption}}<figcaption>{{.}}</figcaption>{{end}}
</figure>
{{end}}{{end}}

{{with .Grids}}
<h2 id="grids">Samples</h2>
<p class="intro">Generated samples: each row is what the model produced from the input named at its left.</p>
{{range .}}
<h3 id="{{.ID}}">{{.Title}}</h3>
{{with .Caption}}<p class="caption">{{.}}</p>{{end}}
{{if .Strips}}<table class="strips">
{{range .Strips}}<tr><th>{{.Label}}</th><td>{{with .Img}}{{if .Src}}<img class="pixel" src="{{.Src}}" alt="{{.Alt}}" width="{{.W}}" height="{{.H}}">{{end}}{{end}}</td></tr>
{{end}}</table>
{{else}}<table class="grid">
{{with .Cols}}<tr><th></th>{{range .}}<th>{{.}}</th>{{end}}</tr>{{end}}
{{range .Rows}}<tr><th>{{.Label}}</th>{{range .Cells}}<td>{{with .Img}}<img class="pixel" src="{{.Src}}" alt="{{.Alt}}" width="{{.W}}" height="{{.H}}">{{end}}{{if and .Img .Text}}<br>{{end}}{{with .Text}}<span class="text">{{.}}</span>{{end}}</td>{{end}}</tr>
{{end}}</table>
{{end}}
{{end}}{{end}}

{{with .Audio}}
<h2 id="audio">Audio</h2>
<p class="intro">Each clip can be played in the browser (or downloaded as a WAV file). Its spectrogram shows time from left to right and frequency (mel bands) from bottom to top, louder in brighter colours.</p>
{{range .}}
<h3 id="{{.ID}}">{{.Title}}</h3>
<figure>
{{with .WAV}}<audio controls preload="none" src="{{.}}"></audio><a href="{{.}}">{{.}}</a> (WAV file){{end}}
{{with .Spec}}<br><img class="pixel" src="{{.Src}}" alt="{{.Alt}}" width="{{.W}}" height="{{.H}}">{{end}}
{{with .Caption}}<figcaption>{{.}}</figcaption>{{end}}
</figure>
{{end}}{{end}}

{{with .Tables}}
<h2 id="tables">Tables</h2>
{{range .}}
{{with .Title}}<h3>{{.}}</h3>{{end}}
<table>
{{with .Header}}<tr>{{range .}}<th>{{.}}</th>{{end}}</tr>{{end}}
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>
{{with .Caption}}<p class="caption">{{.}}</p>{{end}}
{{end}}{{end}}
</body>
</html>
`))
