package eval

import (
	"context"
	"fmt"
)

// latentFigures fits a linear probe to the posterior means given every
// module and given each alone, and clusters the joint means. The probes'
// L-BFGS is nearly all of the phase; they run at once.
func (p *Pipeline) latentFigures(ctx context.Context, r *Result, cfg Config, t *tracker) error {
	all := p.withItems()
	subsets := [][]string{all}
	if len(all) > 1 {
		subsets = append(subsets, Subsets(all)[:len(all)]...)
	}
	trainIDs, trainY, err := p.Labels.Split("train", cfg.ProbeTrain)
	if err != nil {
		return err
	}
	testIDs, testY, err := p.Labels.Split("test", cfg.Items)
	if err != nil {
		return err
	}
	classes := len(p.Labels.Classes)
	t.start(PhaseLatent, fmt.Sprintf("linear probes from %d training items, k-means", len(trainIDs)), "figures", len(subsets)+1)
	trainPost, err := p.encodeAll(ctx, all, trainIDs)
	if err != nil {
		return err
	}
	testPost, err := p.encodeAll(ctx, all, testIDs)
	if err != nil {
		return err
	}
	type probe struct {
		name string
		acc  float64
		err  error
	}
	done := make(chan probe, len(subsets))
	for i, s := range subsets {
		trainF, err := p.fuse(ctx, trainPost, s, len(trainIDs))
		if err != nil {
			return err
		}
		testF, err := p.fuse(ctx, testPost, s, len(testIDs))
		if err != nil {
			return err
		}
		trainZ, testZ := trainF.Mean(), testF.Mean()
		if i == 0 {
			r.LatentMeans, r.LatentClasses, r.ProbeTrain = testZ, testY, len(trainY)
		}
		go func() {
			acc, err := LinearProbe(trainZ, trainY, testZ, testY, p.Latent, classes, ProbeConfig{})
			done <- probe{SubsetName(s), acc, err}
		}()
	}
	if p.Prior != "" {
		if r.Concepts, err = p.concepts(ctx, testPost, subsets, testY); err != nil {
			return err
		}
	}
	assign, _ := KMeans(r.LatentMeans, len(r.LatentClasses), p.Latent, classes, cfg.Seed, 5)
	r.KMeansAcc = ClusterAccuracy(assign, r.LatentClasses, classes, classes)
	r.KMeansARI = AdjustedRandIndex(assign, r.LatentClasses)
	t.set(1)
	for i := range subsets {
		pr := <-done // the channel holds every result, so returning early strands no goroutine
		if pr.err != nil {
			return pr.err
		}
		r.Probe[pr.name] = pr.acc
		t.set(2 + i)
	}
	t.finish()
	return nil
}
