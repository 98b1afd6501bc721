package eval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/poe"
	"github.com/serket-go/serket/report"
)

// A pipeline with a prior module (role "prior", such as serket's concept
// module) is measured under its prior, as its integrator trains and
// serves: every joint posterior is the product of the experts and the
// prior module's prior for each item given their evidence, and
// unconditional generation draws from what it gives an item nothing was
// seen of (a category drawn from the mixture, for the concept module).

// fusedBatch is a batch's joint posterior and, when the pipeline has a prior
// module, the category it gave each item (−1 for none) and that prior.
type fusedBatch struct {
	aggregate.Posterior
	Concepts []int
	Prior    poe.Prior
}

// fuse is the joint posterior of the subset's experts for n items, as the
// run's aggregation fuses them, under the prior module's prior if the
// pipeline has one.
func (p *Pipeline) fuse(ctx context.Context, ps posteriors, subset []string, n int) (fusedBatch, error) {
	cond, ok := p.Aggregation.(aggregate.Conditioned)
	if p.Aggregation == nil {
		cond, ok = aggregate.PoE().(aggregate.Conditioned)
	}
	if p.Prior == "" || !ok {
		return fusedBatch{Posterior: p.plain(ps, subset, n)}, nil
	}
	experts := make([]poe.Expert, len(subset))
	for i, name := range subset {
		experts[i] = ps[name]
	}
	d := n * p.Latent
	prec, shift := make([]float32, d), make([]float32, d)
	cond.Evidence(prec, shift, experts, subset, n, p.Latent)
	prior, concepts, err := p.askPrior(ctx, prec, shift, n)
	if err != nil {
		return fusedBatch{}, err
	}
	return fusedBatch{Posterior: cond.PosteriorUnder(prior, experts, subset, n, p.Latent), Concepts: concepts, Prior: prior}, nil
}

// plain is the joint posterior of the subset's experts for n items under
// N(0, I), whatever prior module the pipeline has: the proposal of the
// importance-sampled likelihoods, whose weights take the prior as N(0, I)
// (a prior module's prior is of one item given its evidence, not a
// density of z the weights could use).
func (p *Pipeline) plain(ps posteriors, subset []string, n int) aggregate.Posterior {
	experts := make([]poe.Expert, len(subset))
	for i, name := range subset {
		experts[i] = ps[name]
	}
	agg := p.Aggregation
	if agg == nil {
		agg = aggregate.PoE()
	}
	return agg.Posterior(experts, subset, n, p.Latent)
}

// askPrior asks the prior module for the prior of n items given their
// evidence, in chunks; it changes nothing there (an inference request).
func (p *Pipeline) askPrior(ctx context.Context, prec, shift []float32, n int) (poe.Prior, []int, error) {
	d := p.Latent
	var out poe.Prior
	concepts := make([]int, 0, n)
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		p.priorAsked++
		in := &bus.PriorRequest{Step: p.priorAsked, Terms: []bus.Evidence{{Prec: bus.Matrix(hi-lo, d, prec[lo*d:hi*d]), Shift: bus.Matrix(hi-lo, d, shift[lo*d:hi*d])}}}
		var rep bus.PriorReply
		if err := p.request(ctx, p.subj.Prior(p.Prior), in, &rep, bus.Expect{Latent: d, Batch: hi - lo, Terms: 1}); err != nil {
			return out, nil, fmt.Errorf("eval: prior module %s: %w", p.Prior, err)
		}
		t := rep.Terms[0]
		out.Mu, out.LogVar = append(out.Mu, t.Mu.Data...), append(out.LogVar, t.LogVar.Data...)
		for r := range hi - lo {
			c := -1
			if len(t.Concept) > 0 {
				c = int(t.Concept[r])
			}
			concepts = append(concepts, c)
		}
	}
	return out, concepts, nil
}

// Concepts is how a prior module's categories match the classes (which
// training never saw), on the test items: from every modality's evidence
// and from each alone.
type Concepts struct {
	Module string `json:"module"`
	Items  int    `json:"items"`
	// Used is how many categories the items fall in, given every modality
	// (All, the subset of them all).
	Used int    `json:"used"`
	All  string `json:"all"`
	// Accuracy (Hungarian, one category per class) and ARI against the
	// classes, by the subset the categories were inferred from.
	Accuracy map[string]float64 `json:"accuracy"`
	ARI      map[string]float64 `json:"ari"`
	// Categories lists the categories given every modality, largest first.
	Categories []Category `json:"categories"`
}

// Category is one category as the test items show it.
type Category struct {
	ID     int       `json:"id"`
	Size   int       `json:"size"`   // test items in it
	Class  string    `json:"class"`  // the class most of them are
	Purity float64   `json:"purity"` // the share of them that are
	Mean   []float32 `json:"-"`      // its prior's mean: what modules generate from
}

// concepts measures the prior module's categories of the test items,
// given the posteriors of every modality (post) and their classes.
func (p *Pipeline) concepts(ctx context.Context, post posteriors, subsets [][]string, truth []int) (*Concepts, error) {
	n, classes := len(truth), len(p.Labels.Classes)
	c := &Concepts{Module: p.Prior, Items: n, Accuracy: map[string]float64{}, ARI: map[string]float64{}}
	for i, s := range subsets {
		f, err := p.fuse(ctx, post, s, n)
		if err != nil {
			return nil, err
		}
		k := slices.Max(f.Concepts) + 1
		name := SubsetName(s)
		c.Accuracy[name] = ClusterAccuracy(f.Concepts, truth, max(k, 1), classes)
		c.ARI[name] = AdjustedRandIndex(f.Concepts, truth)
		if i == 0 {
			c.Categories = p.categories(f, truth)
			c.Used, c.All = len(c.Categories), name
		}
	}
	return c, nil
}

// categories tabulates the categories of f's items, largest first.
func (p *Pipeline) categories(f fusedBatch, truth []int) []Category {
	d := p.Latent
	byID := map[int]*Category{}
	counts := map[int][]int{}
	for i, k := range f.Concepts {
		if k < 0 {
			continue
		}
		c := byID[k]
		if c == nil {
			c = &Category{ID: k, Mean: f.Prior.Mu[i*d : (i+1)*d]}
			byID[k], counts[k] = c, make([]int, len(p.Labels.Classes))
		}
		c.Size++
		if t := truth[i]; t >= 0 && t < len(counts[k]) {
			counts[k][t]++
		}
	}
	out := make([]Category, 0, len(byID))
	for k, c := range byID {
		best := 0
		for t, m := range counts[k] {
			if m > counts[k][best] {
				best = t
			}
		}
		c.Class, c.Purity = p.Labels.Classes[best], float64(counts[k][best])/float64(c.Size)
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Category) int {
		if a.Size != b.Size {
			return b.Size - a.Size
		}
		return a.ID - b.ID
	})
	return out
}

// Concepts measures the pipeline's prior module's categories of the first
// items test items (every modality that has items, and each alone), with
// the classes training never saw: what `serket concepts` shows. It is an
// error for a pipeline without a prior module.
func (p *Pipeline) Concepts(ctx context.Context, items int) (*Concepts, error) {
	if p.Prior == "" {
		return nil, fmt.Errorf("eval: pipeline of %v has no prior module (role %q) to have concepts", p.Names(), bus.RolePrior)
	}
	all := p.withItems()
	if len(all) == 0 {
		return nil, fmt.Errorf("eval: no module of %v has items of its own", p.Names())
	}
	subsets := [][]string{all}
	if len(all) > 1 {
		subsets = append(subsets, Subsets(all)[:len(all)]...)
	}
	ids, truth, err := p.Labels.Split("test", items)
	if err != nil {
		return nil, err
	}
	post, err := p.encodeAll(ctx, all, ids)
	if err != nil {
		return nil, err
	}
	return p.concepts(ctx, post, subsets, truth)
}

// ConceptReport is the report of c alone: how its categories match the
// classes, and what every module renders from each.
func (p *Pipeline) ConceptReport(ctx context.Context, c *Concepts, title, subtitle string) (*report.Report, error) {
	r := &report.Report{Title: title, Subtitle: subtitle, Summary: conceptSummary(&Result{Concepts: c})}
	if err := p.conceptsSection(ctx, r, &Result{Concepts: c}); err != nil {
		return nil, err
	}
	var rows [][]string
	for _, k := range c.Categories {
		rows = append(rows, []string{fmt.Sprint(k.ID), fmt.Sprint(k.Size), k.Class, fmt.Sprintf("%.3f", k.Purity)})
	}
	r.Tables = append(r.Tables, report.Table{Title: "Categories", Header: []string{"concept", "test items", "most are", "purity"}, Rows: rows,
		Caption: "Every category the test items fall in given every modality, largest first."})
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	r.Files = map[string][]byte{"concepts.json": b}
	return r, nil
}

// Render is what every module that renders makes of each category's
// mean, by module (a module that renders nothing is left out).
func (p *Pipeline) Render(ctx context.Context, cats []Category) (map[string][]bus.Payload, error) {
	z := make([]float32, 0, len(cats)*p.Latent)
	for _, c := range cats {
		z = append(z, c.Mean...)
	}
	out := map[string][]bus.Payload{}
	for _, m := range p.Modules {
		outs, err := m.Render(ctx, z, len(cats))
		if errors.Is(err, errCannot) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[m.Name] = outs
	}
	return out, nil
}
