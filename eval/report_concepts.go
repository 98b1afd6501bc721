package eval

import (
	"context"
	"fmt"
	"slices"

	"github.com/serket-go/serket/report"
)

// maxShownConcepts bounds the categories the report draws.
const maxShownConcepts = 16

// conceptsSection adds to r what res says of the prior module's
// categories: how they match the classes from each subset, and what every
// module renders from the mean of each (largest first).
func (p *Pipeline) conceptsSection(ctx context.Context, r *report.Report, res *Result) error {
	c := res.Concepts
	if c == nil {
		return nil
	}
	var rows [][]string
	for _, name := range slices.Sorted(mapKeys(c.Accuracy)) {
		rows = append(rows, []string{name, fmt.Sprintf("%.3f", c.Accuracy[name]), fmt.Sprintf("%.3f", c.ARI[name])})
	}
	r.Tables = append(r.Tables, report.Table{Title: "Concepts", Header: []string{"categories given", "accuracy", "ARI"}, Rows: rows,
		Caption: fmt.Sprintf("How the %d categories %s gives %d test items match their classes, which training never saw: accuracy once each category is matched to one class (Hungarian), and the adjusted Rand index.",
			c.Used, c.Module, c.Items)})
	shown := c.Categories[:min(len(c.Categories), maxShownConcepts)]
	if len(shown) == 0 {
		return nil
	}
	g, err := p.conceptGrid(ctx, shown)
	if err != nil {
		return err
	}
	g.Title = "The concepts"
	g.Caption = fmt.Sprintf("What every module renders from the mean of each of %s's largest categories: its size among the %d test items, and the class most of them are.", c.Module, c.Items)
	r.Grids = append(r.Grids, g)
	return nil
}

// conceptGrid renders every module's rendering of each category's mean,
// a row per category and a column per module that renders.
func (p *Pipeline) conceptGrid(ctx context.Context, cats []Category) (report.Grid, error) {
	var g report.Grid
	for _, c := range cats {
		g.RowLabels = append(g.RowLabels, fmt.Sprintf("concept %d: %d items, %.0f%% %s", c.ID, c.Size, 100*c.Purity, c.Class))
	}
	g.Cells = make([][]report.Cell, len(cats))
	rendered, err := p.Render(ctx, cats)
	if err != nil {
		return g, err
	}
	for _, name := range slices.Sorted(mapKeys(rendered)) {
		g.ColLabels = append(g.ColLabels, name)
		for i, o := range rendered[name] {
			cell, _, err := show(o)
			if err != nil {
				return g, fmt.Errorf("eval: %s's rendering of concept %d: %w", name, cats[i].ID, err)
			}
			g.Cells[i] = append(g.Cells[i], cell)
		}
	}
	return g, nil
}

// conceptSummary are the summary's lines of a pipeline with a prior module.
func conceptSummary(res *Result) []report.KV {
	var kv []report.KV
	if c := res.Coherence; c != nil && c.UnconditionalPlain != nil {
		kv = append(kv, report.KV{Name: "unconditional coherence from N(0, I)", Value: fmt.Sprintf("%.3f", *c.UnconditionalPlain),
			Note: "the same, drawn from the standard normal instead of the prior module"})
	}
	if c := res.Concepts; c != nil {
		kv = append(kv, report.KV{Name: "concepts", Value: fmt.Sprintf("%d; accuracy %.3f, ARI %.3f", c.Used, c.Accuracy[c.All], c.ARI[c.All]),
			Note: fmt.Sprintf("categories of %s given every module, against the classes", c.Module)})
	}
	return kv
}
