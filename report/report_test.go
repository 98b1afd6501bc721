package report

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// sineWAV is a 16-bit mono PCM WAV file of a 440 Hz tone.
func sineWAV(seconds float64, rate int) []byte {
	n := int(seconds * float64(rate))
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("RIFF")
	binary.Write(&b, le, uint32(36+2*n))
	b.WriteString("WAVEfmt ")
	binary.Write(&b, le, uint32(16))
	binary.Write(&b, le, uint16(1)) // PCM
	binary.Write(&b, le, uint16(1)) // mono
	binary.Write(&b, le, uint32(rate))
	binary.Write(&b, le, uint32(2*rate))
	binary.Write(&b, le, uint16(2))
	binary.Write(&b, le, uint16(16))
	b.WriteString("data")
	binary.Write(&b, le, uint32(2*n))
	for i := range n {
		binary.Write(&b, le, int16(12000*math.Sin(2*math.Pi*440*float64(i)/float64(rate))))
	}
	return b.Bytes()
}

func randomImage(rng *rand.Rand, w, h int) *image.Gray {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
	}
	return img
}

// spectrogram is a picture of a rising tone, frames×mels.
func spectrogram(frames, mels int) image.Image {
	feat := make([]float32, frames*mels)
	for t := range frames {
		for m := range mels {
			feat[t*mels+m] = float32(-math.Abs(float64(m - t*mels/frames)))
		}
	}
	img, err := SpectrogramImage(feat, frames, mels)
	if err != nil {
		panic(err)
	}
	return img
}

var coherence = [][]float64{
	{0.913, 0.874, math.NaN()},
	{0.655, 0.702, 0.588},
	{0.101, 0.097, 0.123},
}

func cloneRows(m [][]float64) [][]float64 {
	out := make([][]float64, len(m))
	for i, row := range m {
		out[i] = slices.Clone(row)
	}
	return out
}

// synthetic is a small report with one of everything.
func synthetic(title string) *Report {
	rng := rand.New(rand.NewPCG(1, 2))
	r := &Report{
		Title:    title,
		Subtitle: "checkpoints: out/run <1>, commit abc123",
		Summary: []KV{
			{Name: "test ELBO", Value: "-312.4", Note: "nats per item"},
			{Name: "image → label", Value: "0.81", Note: "chance 0.10 & <b>not bold</b>"},
		},
		Notes: []string{"Measured on 2000 test items.", "A second paragraph with <i>markup</i> shown as text."},
		Matrices: []Matrix{{
			Title:    "Coherence",
			Caption:  "Fraction of generated samples of the column's modality classified as the input's class.",
			RowLabel: "given", ColLabel: "generated",
			Rows:   []string{"vision", "vision+audio", "prior"},
			Cols:   []string{"vision", "language", "audio"},
			Values: cloneRows(coherence),
		}},
		Curves: []Curve{
			{
				Title: "ELBO", XLabel: "epoch", YLabel: "nats per item",
				Series: []Series{
					{Name: "train", Y: []float64{-500, -420, -380, -360, -350}},
					{Name: "test", X: []float64{1, 3, 5}, Y: []float64{-510, -400, math.NaN()}},
				},
			},
			{
				Title: "KL", XLabel: "epoch", YLabel: "nats",
				Series: []Series{{Name: "kl", X: []float64{1, 2, 3, 4}, Y: []float64{10, 14, 15, 15.5}}},
			},
			{
				Title:  "diverged",
				Series: []Series{{Name: "nan", Y: []float64{math.NaN(), math.Inf(1)}}},
			},
		},
		Grids: []Grid{
			{
				Title:     "vision from each class's caption",
				RowLabels: []string{"a photo of a <shirt>", "trousers", "a sneaker", "a bag"},
			},
			{
				Title:     "captions from images",
				ColLabels: []string{"input", "sample 1", "sample 2"},
				RowLabels: []string{"shirt", "bag"},
				Cells: [][]Cell{
					{{Image: randomImage(rng, 28, 28)}, {Text: "a photo of a shirt"}, {Text: "a <script>bad()</script> top"}},
					{{Image: randomImage(rng, 28, 28), Text: "input"}, {Text: "a bag"}, {}},
				},
			},
		},
		Audio: []Clip{{
			Title:       "audio from the caption “a sneaker”",
			Caption:     "a sine tone standing in for speech",
			WAV:         sineWAV(0.2, 16000),
			Spectrogram: spectrogram(80, 32),
		}},
		Tables: []Table{{
			Title:  "per class",
			Header: []string{"class", "accuracy"},
			Rows:   [][]string{{"shirt", "0.61"}, {"<bag>", "0.97"}},
		}},
	}
	for range 4 {
		var row []image.Image
		for range 4 {
			row = append(row, randomImage(rng, 28, 28))
		}
		r.Grids[0].Cells = append(r.Grids[0].Cells, Images(row...))
	}
	s := Scatter{Title: "latent means (PCA)", XLabel: "PC 1", YLabel: "PC 2", Classes: []string{"shirt", "trousers", "bag"}}
	for i := range 100 {
		k := i % 3
		s.XY = append(s.XY, float64(3*k)+rng.NormFloat64(), float64(k%2)*2+rng.NormFloat64())
		s.Labels = append(s.Labels, k)
	}
	r.Scatters = []Scatter{s}
	return r
}

var srcRE = regexp.MustCompile(`<(img|audio)\b[^>]*?\bsrc="([^"]*)"`)
var hrefRE = regexp.MustCompile(`\bhref="([^"]*)"`)

// checkReport checks dir as a browser would need it: every referenced file
// is there, every PNG decodes and is more than a blank, and the page loads
// nothing from elsewhere. It returns index.html.
func checkReport(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	if !strings.HasPrefix(page, "<!DOCTYPE html>") || !strings.Contains(page, "</html>") {
		t.Fatalf("index.html is not a whole HTML page")
	}
	for _, tag := range []string{"table", "figure", "tr", "h2", "h3", "p", "details", "style"} {
		open := len(regexp.MustCompile(`<`+tag+`[\s>]`).FindAllString(page, -1))
		if closed := strings.Count(page, "</"+tag+">"); open != closed {
			t.Errorf("<%s>: %d opened, %d closed", tag, open, closed)
		}
	}
	lower := strings.ToLower(page)
	for _, s := range []string{"<script", "http://", "https://", "//cdn", "@import", "<link"} {
		if strings.Contains(lower, s) {
			t.Errorf("index.html contains %q: not self-contained or not escaped", s)
		}
	}
	refs := srcRE.FindAllStringSubmatch(page, -1)
	if len(refs) == 0 {
		t.Fatal("index.html references no image or sound")
	}
	referenced := map[string]bool{"index.html": true}
	for _, m := range refs {
		name := m[2]
		if name == "" || strings.Contains(name, "/") || strings.Contains(name, ":") {
			t.Errorf("<%s src=%q>: not a plain relative name", m[1], name)
			continue
		}
		referenced[name] = true
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("<%s src=%q>: %v", m[1], name, err)
			continue
		}
		switch filepath.Ext(name) {
		case ".png":
			img, err := png.Decode(bytes.NewReader(data))
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			b := img.Bounds()
			if b.Dx() < 50 || b.Dy() < 50 {
				t.Errorf("%s is only %v", name, b)
			}
			colours := map[color.RGBA]bool{}
			for y := b.Min.Y; y < b.Max.Y; y += 3 {
				for x := b.Min.X; x < b.Max.X; x += 3 {
					colours[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)] = true
				}
			}
			if len(colours) < 8 {
				t.Errorf("%s has only %d colours: blank?", name, len(colours))
			}
		case ".wav":
			if len(data) < 44 || string(data[:4]) != "RIFF" {
				t.Errorf("%s is not a WAV file", name)
			}
		default:
			t.Errorf("unexpected file type %q", name)
		}
	}
	for _, m := range hrefRE.FindAllStringSubmatch(page, -1) {
		h := m[1]
		if strings.HasPrefix(h, "#") {
			if !strings.Contains(page, `id="`+h[1:]+`"`) {
				t.Errorf("link %q goes nowhere", h)
			}
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, h)); err != nil {
			t.Errorf("link %q: %v", h, err)
		}
	}
	// Nothing in the directory that the page does not show.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !referenced[e.Name()] {
			t.Errorf("%s is in the report but not referenced", e.Name())
		}
	}
	return page
}

func TestWriteSyntheticReport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "report")
	r := synthetic(`Eval <script>alert("x")</script> & friends`)
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	page := checkReport(t, dir)

	if strings.Contains(page, "<script>alert") || strings.Contains(page, "<b>not bold</b>") ||
		strings.Contains(page, "<i>markup</i>") || strings.Contains(page, "<shirt>") {
		t.Error("a string of the report appears unescaped in index.html")
	}
	for _, want := range []string{"&lt;script&gt;alert", "&amp; friends", "&lt;b&gt;not bold&lt;/b&gt;", "a photo of a &lt;shirt&gt;", "&lt;bag&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	for _, row := range coherence {
		for _, v := range row {
			want := Dash
			if !math.IsNaN(v) {
				want = fmt.Sprintf("%.2f", v)
			}
			if !strings.Contains(page, `<td class="num">`+want+`</td>`) {
				t.Errorf("coherence %v not shown as %q", v, want)
			}
		}
	}
	for _, want := range []string{
		"test ELBO", "-312.4", "Measured on 2000 test items.", "ELBO", "latent means (PCA)",
		"No finite value to plot.", "a photo of a shirt", "<audio controls", "Fraction of generated samples",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	// One picture per row of the all-image grid, one per image cell of the
	// mixed one, and the files the page shows are all there.
	for _, name := range []string{
		"matrix-01.png", "curve-01.png", "curve-02.png", "scatter-01.png",
		"grid-01-row-01.png", "grid-01-row-04.png", "grid-02-r01-c01.png", "grid-02-r02-c01.png",
		"clip-01.wav", "clip-01-spectrogram.png",
	} {
		if !strings.Contains(page, `src="`+name+`"`) {
			t.Errorf("index.html does not show %s", name)
		}
	}
	// A row strip is 4 images of 28×28 at scale 3 with 3 separators.
	f, err := os.Open(filepath.Join(dir, "grid-01-row-01.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Width != 4*84+3*Sep || cfg.Height != 84 {
		t.Errorf("grid row is %d×%d, want %d×84", cfg.Width, cfg.Height, 4*84+3*Sep)
	}
}

// siblings returns the names in dir's parent.
func siblings(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func titleOf(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`<h1>(.*?)</h1>`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no <h1> in index.html")
	}
	return string(m[1])
}

func TestWriteReplacesAtomically(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run-1")
	small := func(title string) *Report {
		return &Report{Title: title, Summary: []KV{{Name: "x", Value: "1"}},
			Matrices: []Matrix{{Title: "m", Rows: []string{"a"}, Cols: []string{"b", "c"}, Values: [][]float64{{0.5, 0.25}}}}}
	}
	if err := Write(dir, small("old")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stale.png"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, small("new")); err != nil {
		t.Fatal(err)
	}
	if got := titleOf(t, dir); got != "new" {
		t.Errorf("after a rewrite the title is %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "stale.png")); err == nil {
		t.Error("a file of the old report survived the rewrite")
	}
	if got := siblings(t, dir); !slices.Equal(got, []string{"run-1"}) {
		t.Errorf("beside the report: %q", got)
	}
	checkReport(t, dir)

	// An invalid report: an error naming the field, nothing written.
	bad := synthetic("bad")
	bad.Scatters[0].Labels = bad.Scatters[0].Labels[:99]
	err := Write(dir, bad)
	if err == nil || !strings.Contains(err.Error(), "Scatters[0].Labels") {
		t.Errorf("Write with 99 labels for 100 points: %v", err)
	}
	// A failure after the new report is drawn, just before it would replace
	// the old one.
	testHookBeforeRename = func(tmp string) error {
		if !strings.HasPrefix(filepath.Base(tmp), ".run-1.tmp-") {
			t.Errorf("temporary directory %s", tmp)
		}
		if _, err := os.Stat(filepath.Join(tmp, "index.html")); err != nil {
			t.Errorf("the new report is not complete before its rename: %v", err)
		}
		return errors.New("injected failure")
	}
	defer func() { testHookBeforeRename = nil }()
	if err := Write(dir, synthetic("newer")); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Errorf("Write with a failure before the rename: %v", err)
	}
	testHookBeforeRename = nil
	if got := titleOf(t, dir); got != "new" {
		t.Errorf("after failed writes the title is %q", got)
	}
	if got := siblings(t, dir); !slices.Equal(got, []string{"run-1"}) {
		t.Errorf("failed writes left %q", got)
	}
	checkReport(t, dir)
}

func TestWriteRefusesOtherDirectories(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	precious := filepath.Join(dir, "precious.txt")
	if err := os.WriteFile(precious, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, &Report{Title: "x"}); err == nil {
		t.Error("Write replaced a directory that holds no report")
	}
	if _, err := os.Stat(precious); err != nil {
		t.Errorf("the directory's file is gone: %v", err)
	}
	if got := siblings(t, dir); !slices.Equal(got, []string{"data"}) {
		t.Errorf("beside the directory: %q", got)
	}
	// An empty directory is fine.
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(empty, &Report{Title: "x", Notes: []string{"n"}}); err != nil {
		t.Errorf("Write into an empty directory: %v", err)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 28, 28))
	cases := []struct {
		field string
		edit  func(r *Report)
	}{
		{"Matrices[0].Values[1]", func(r *Report) { r.Matrices[0].Values[1] = []float64{1, 2} }},
		{"Matrices[0].Values", func(r *Report) { r.Matrices[0].Values = r.Matrices[0].Values[:2] }},
		{"Matrices[0]: colour scale", func(r *Report) { r.Matrices[0].Min, r.Matrices[0].Max = 1, 0 }},
		{"Matrices[0].Format", func(r *Report) { r.Matrices[0].Format = "%d %d" }},
		{`Curves[0].Series[1] ("test")`, func(r *Report) { r.Curves[0].Series[1].X = []float64{1} }},
		{"Curves[1]: no series", func(r *Report) { r.Curves[1].Series = nil }},
		{"Scatters[0].XY", func(r *Report) { r.Scatters[0].XY = r.Scatters[0].XY[:5] }},
		{"Scatters[0].Labels[7]", func(r *Report) { r.Scatters[0].Labels[7] = 3 }},
		{"Grids[0].RowLabels", func(r *Report) { r.Grids[0].RowLabels = r.Grids[0].RowLabels[:3] }},
		{"Grids[1].ColLabels", func(r *Report) { r.Grids[1].ColLabels = []string{"x"} }},
		{"Grids[1].Cells[0][0].Image", func(r *Report) { r.Grids[1].Cells[0][0].Image = img.SubImage(image.Rect(0, 0, 0, 0)) }},
		{"Audio[0].WAV", func(r *Report) { r.Audio[0].WAV = []byte("not a wav file") }},
		{"Audio[0]: neither", func(r *Report) { r.Audio[0].WAV, r.Audio[0].Spectrogram = nil, nil }},
		{"Tables[0].Rows[1]", func(r *Report) { r.Tables[0].Rows[1] = []string{"x"} }},
	}
	if err := synthetic("ok").Validate(); err != nil {
		t.Fatalf("the synthetic report is invalid: %v", err)
	}
	for _, c := range cases {
		r := synthetic("x")
		c.edit(r)
		err := r.Validate()
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: Validate gives %v", c.field, err)
		}
		dir := filepath.Join(t.TempDir(), "r")
		if err := Write(dir, r); err == nil {
			t.Errorf("%s: Write accepted it", c.field)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: Write of an invalid report created %s", c.field, dir)
		}
	}
}

func TestStandaloneFigures(t *testing.T) {
	dir := t.TempDir()
	m := &Matrix{Title: "all missing", Rows: []string{"a", "b"}, Cols: []string{"c"}, Values: [][]float64{{math.NaN()}, {math.Inf(1)}}}
	if err := HeatMap(m, filepath.Join(dir, "nan.png")); err != nil {
		t.Errorf("HeatMap of NaNs: %v", err)
	}
	wide := &Matrix{Title: "ELBO", Rows: []string{"x"}, Cols: []string{"y", "z"}, Values: [][]float64{{-350.25, -351}}, Format: "%.1f"}
	if err := HeatMap(wide, filepath.Join(dir, "wide.svg")); err != nil {
		t.Errorf("HeatMap outside [0, 1] to SVG: %v", err)
	}
	if err := HeatMap(&Matrix{Rows: []string{"a"}, Cols: []string{"b"}, Values: [][]float64{{1, 2}}}, filepath.Join(dir, "bad.png")); err == nil ||
		!strings.Contains(err.Error(), "Matrix.Values[0]") {
		t.Errorf("HeatMap with a row too long: %v", err)
	}
	c := Curve{Title: "t", Series: []Series{{Name: "s", Y: []float64{math.NaN()}}}}
	if err := LinePlot(c, filepath.Join(dir, "c.png")); !errors.Is(err, ErrNoData) {
		t.Errorf("LinePlot with no finite point: %v", err)
	}
	s := &Scatter{XY: []float64{0, 0, 1, 1}, Labels: []int{0, 1}, Classes: []string{"a"}}
	if err := ScatterPlot(s, filepath.Join(dir, "s.png")); err == nil || !strings.Contains(err.Error(), "Scatter.Labels[1]") {
		t.Errorf("ScatterPlot with a label out of range: %v", err)
	}
	// More classes than colours: still drawn.
	many := &Scatter{Title: "12 classes"}
	for k := range 12 {
		many.Classes = append(many.Classes, fmt.Sprintf("class %d", k))
		many.XY = append(many.XY, float64(k), float64(k*k))
		many.Labels = append(many.Labels, k)
	}
	if err := ScatterPlot(many, filepath.Join(dir, "many.png")); err != nil {
		t.Errorf("ScatterPlot of 12 classes: %v", err)
	}
	for _, name := range []string{"nan.png", "many.png"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestPCA2RecoversAPlane(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n, d = 60, 5
	// Two orthonormal directions in 5-D, a plane through an offset.
	u := []float64{1, 2, 0, -1, 3}
	v := []float64{2, -1, 1, 0, 0}
	normalize := func(a []float64) {
		var s float64
		for _, x := range a {
			s += x * x
		}
		for i := range a {
			a[i] /= math.Sqrt(s)
		}
	}
	normalize(u)
	var uv float64
	for i := range v {
		uv += u[i] * v[i]
	}
	for i := range v {
		v[i] -= uv * u[i]
	}
	normalize(v)
	offset := []float64{5, -3, 2, 7, 1}
	z := make([]float64, n*d)
	for i := range n {
		a, b := 4*rng.NormFloat64(), rng.NormFloat64()
		for j := range d {
			z[i*d+j] = offset[j] + a*u[j] + b*v[j]
		}
	}
	xy, frac, err := PCA2(z, n, d)
	if err != nil {
		t.Fatal(err)
	}
	if len(xy) != 2*n {
		t.Fatalf("%d coordinates for %d points", len(xy), n)
	}
	worst := 0.0
	for i := range n {
		for k := range i {
			var d5 float64
			for j := range d {
				d5 += (z[i*d+j] - z[k*d+j]) * (z[i*d+j] - z[k*d+j])
			}
			d2 := math.Hypot(xy[2*i]-xy[2*k], xy[2*i+1]-xy[2*k+1])
			worst = math.Max(worst, math.Abs(math.Sqrt(d5)-d2))
		}
	}
	if worst > 1e-4 {
		t.Errorf("pairwise distances change by up to %g", worst)
	}
	if frac[0] < frac[1] || math.Abs(frac[0]+frac[1]-1) > 1e-9 || frac[0] < 0.7 {
		t.Errorf("explained variance %v; want nearly all, most by the first", frac)
	}
	// Centred: the projections have mean 0.
	var mx, my float64
	for i := range n {
		mx += xy[2*i]
		my += xy[2*i+1]
	}
	if math.Abs(mx/n) > 1e-9 || math.Abs(my/n) > 1e-9 {
		t.Errorf("projection mean (%g, %g)", mx/n, my/n)
	}

	// Deterministic, signs included, and the same from float32.
	again, _, _ := PCA2(slices.Clone(z), n, d)
	if !slices.Equal(xy, again) {
		t.Error("two runs on the same points differ")
	}
	z32 := make([]float32, len(z))
	for i, x := range z {
		z32[i] = float32(x)
	}
	xy32, _, err := PCA2(z32, n, d)
	if err != nil {
		t.Fatal(err)
	}
	for i := range xy {
		if math.Abs(xy[i]-xy32[i]) > 1e-4 {
			t.Fatalf("float32 input: coordinate %d is %g, float64 gives %g (a sign flip?)", i, xy32[i], xy[i])
		}
	}
	// The signs follow the directions, not the data: negating every point
	// negates its picture.
	neg := make([]float64, len(z))
	for i := range z {
		neg[i] = -z[i]
	}
	xyNeg, _, _ := PCA2(neg, n, d)
	for i := range xy {
		if math.Abs(xyNeg[i]+xy[i]) > 1e-9 {
			t.Fatalf("negated points: coordinate %d is %g, want %g", i, xyNeg[i], -xy[i])
		}
	}

	for _, c := range []struct {
		z    []float64
		n, d int
	}{{z, n, d + 1}, {nil, 0, 2}, {[]float64{1, math.NaN()}, 1, 2}} {
		if _, _, err := PCA2(c.z, c.n, c.d); err == nil {
			t.Errorf("PCA2(%d values, %d, %d) gave no error", len(c.z), c.n, c.d)
		}
	}
	// One dimension: the second coordinate is 0.
	xy1, _, err := PCA2([]float64{1, 2, 4}, 3, 1)
	if err != nil || xy1[1] != 0 || math.Abs(xy1[4]-xy1[0]-3) > 1e-12 {
		t.Errorf("1-D PCA2: %v, %v", xy1, err)
	}
}

func TestImageGrid(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var cells [][]image.Image
	for _, n := range []int{4, 4, 2} {
		var row []image.Image
		for range n {
			row = append(row, randomImage(rng, 28, 28))
		}
		cells = append(cells, row)
	}
	g := ImageGrid(cells, 3)
	if w, h := g.Bounds().Dx(), g.Bounds().Dy(); w != 4*84+3*Sep || h != 3*84+2*Sep {
		t.Fatalf("grid is %d×%d, want %d×%d", w, h, 4*84+3*Sep, 3*84+2*Sep)
	}
	// Cell (1, 2): every source pixel is a 3×3 block.
	src := cells[1][2].(*image.Gray)
	x0, y0 := 2*(84+Sep), 1*(84+Sep)
	for _, p := range []image.Point{{0, 0}, {27, 27}, {13, 5}} {
		want := src.GrayAt(p.X, p.Y).Y
		for dy := range 3 {
			for dx := range 3 {
				got := g.RGBAAt(x0+3*p.X+dx, y0+3*p.Y+dy)
				if got.R != want || got.G != want || got.B != want || got.A != 0xff {
					t.Fatalf("pixel %v of cell (1,2), block (%d,%d): %v, want grey %d", p, dx, dy, got, want)
				}
			}
		}
	}
	// Separators and the missing cells of the short row are sepColor.
	sep := sepColor
	for _, p := range []image.Point{{84, 10}, {85, 200}, {10, 84}, {300, 2*(84+Sep) + 40}} {
		if got := g.RGBAAt(p.X, p.Y); got != sep {
			t.Errorf("pixel %v is %v, want the separator colour", p, got)
		}
	}
	if s := ImageGrid(cells[:1], 0).Bounds().Dy(); s != 28*AutoScale(28, 28) || AutoScale(28, 28) != 3 {
		t.Errorf("automatic scale: a row is %d high", s)
	}
	if b := ImageGrid(nil, 2).Bounds(); !b.Empty() {
		t.Errorf("empty grid: %v", b)
	}
	// A smaller image is centred in a larger cell.
	mixed := ImageGrid([][]image.Image{{image.NewGray(image.Rect(0, 0, 4, 4)), image.NewGray(image.Rect(0, 0, 2, 2))}}, 1)
	if w, h := mixed.Bounds().Dx(), mixed.Bounds().Dy(); w != 8+Sep || h != 4 {
		t.Errorf("mixed sizes: %d×%d", w, h)
	}
	if got := mixed.RGBAAt(4+Sep+1, 1); got != (color.RGBA{0, 0, 0, 0xff}) {
		t.Errorf("centre of the small image: %v", got)
	}
	if got := mixed.RGBAAt(4+Sep, 0); got != sep {
		t.Errorf("corner around the small image: %v", got)
	}
}

func TestImageHelpers(t *testing.T) {
	g, err := GrayImage([]float32{0, 0.5, 1, 2, -1, float32(math.NaN())}, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint8{0, 128, 255, 255, 0, 0}; !slices.Equal(g.Pix, want) {
		t.Errorf("GrayImage pixels %v, want %v", g.Pix, want)
	}
	if _, err := GrayImage(make([]float32, 5), 3, 2); err == nil {
		t.Error("GrayImage with 5 values for 3×2: no error")
	}
	// 3 frames × 2 mels, frame-major; the last frame's top band is the max.
	s, err := SpectrogramImage([]float32{0, 1, 2, 3, 4, 5}, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	if b := s.Bounds(); b.Dx() != 3 || b.Dy() != 2 {
		t.Fatalf("spectrogram %v", b)
	}
	lum := func(x, y int) float64 { return luminance(s.At(x, y)) }
	if !(lum(2, 0) > lum(2, 1) && lum(2, 1) > lum(0, 0) && lum(0, 1) < lum(0, 0)) {
		t.Errorf("spectrogram brightness does not follow the values (time →, mel ↑)")
	}
	if _, err := SpectrogramImage(make([]float32, 5), 3, 2); err == nil {
		t.Error("SpectrogramImage with 5 values: no error")
	}
	// The viridis controls are valid and run dark to light.
	cm := Viridis(0, 1)
	lo, _ := cm.At(0)
	hi, _ := cm.At(1)
	if luminance(lo) > 0.1 || luminance(hi) < 0.7 {
		t.Errorf("Viridis runs from luminance %g to %g", luminance(lo), luminance(hi))
	}
}
