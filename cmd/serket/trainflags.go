package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/aggregate"
	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/procenv"
)

// trainFlags are the training settings, shared by `serket train` and
// `serket integrator --train`.
type trainFlags struct {
	epochs     int
	batch      int
	seed       uint64
	plan       string
	subsets    int
	agg        string
	lambda     []string
	klFrom     float32
	klTo       float32
	anneal     float64 // epochs
	annealSet  bool    // by the command line or the file: a mixture keeps it
	deadline   time.Duration
	ckptDir    string
	ckptEvery  int
	ckptTime   time.Duration
	resume     bool
	metrics    string
	data       string
	limit      int
	evalItems  int
	modules    []string
	freeze     []string
	prior      string
	moduleWait time.Duration
	paired     float64
	pairSeed   uint64
	share      float64
	seenOnly   bool
	lr         float64
}

func (f *trainFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.IntVar(&f.epochs, "epochs", 1, "passes over the training items")
	fl.IntVar(&f.batch, "batch", 100, "items per step")
	fl.Uint64Var(&f.seed, "seed", 1, "seed of the batch order, the plan's subsets and the latent noise")
	fl.StringVar(&f.plan, "plan", "mvae", "fusion plan: mvae (joint + each module + --subsets random subsets), cross (the same, every term scoring every module) or joint")
	fl.IntVar(&f.subsets, "subsets", 1, "random subsets per step in the mvae plan")
	fl.StringVar(&f.agg, "aggregation", "poe", "joint posterior: poe (product of experts and the prior, MVAE's), moe (mixture of experts, MMVAE's stratified ELBO) mopoe (mixture of the products of every subset) or gpoe (a product whose per-module, per-dimension precision weights, given how many modules are fused, are learned by the integrator); the run keeps it, and serving and eval fuse as it was trained")
	fl.StringSliceVar(&f.lambda, "lambda", []string{"language=50"}, "weight of each module's log-likelihood, MODULE=W (others 1)")
	fl.Float32Var(&f.klFrom, "kl-from", 0, "KL weight at the start of annealing")
	fl.Float32Var(&f.klTo, "kl-to", 1, "KL weight after annealing")
	fl.Float64Var(&f.anneal, "kl-anneal", 1, "epochs over which the KL weight rises linearly (0: no annealing; the default for --aggregation moe)")
	fl.DurationVar(&f.deadline, "step-deadline", 30*time.Second, "how long a step waits for each module (a late module sits the step out)")
	fl.StringVar(&f.ckptDir, "checkpoint-dir", "runs/latest", "where the integrator's and the modules' checkpoints go")
	fl.IntVar(&f.ckptEvery, "checkpoint-every", 200, "take a checkpoint every N steps (and at the start and the end; 0: not by count)")
	fl.DurationVar(&f.ckptTime, "checkpoint-interval", time.Minute, "also take a checkpoint when this long has passed since the last (0: not by time); a module lost mid-run takes the run back to the last checkpoint")
	fl.BoolVar(&f.resume, "resume", false, "continue the run in --checkpoint-dir (an error if there is none)")
	fl.StringVar(&f.metrics, "metrics", "", "per-epoch metrics as JSON lines (default <checkpoint-dir>/metrics.jsonl)")
	fl.StringVar(&f.data, "data", dataset.DefaultDir(), "prepared dataset (the integrator reads only its ids and splits)")
	fl.IntVar(&f.limit, "limit", 0, "train on the first N training items only (0: all)")
	fl.IntVar(&f.evalItems, "eval-items", 1000, "after every epoch, the plain ELBO of the first N test items (0: none)")
	fl.StringSliceVar(&f.modules, "modules", nil, "modules that train (default: the pipeline's)")
	fl.StringSliceVar(&f.freeze, "freeze", nil, "trained modules that take part without learning, their checkpoints in --checkpoint-dir untouched, while the others (a new module) train against them: coordinated training")
	fl.StringVar(&f.prior, "prior", "", "a prior module for the shared latent (concept: SERKET's concept formation, a Bayesian Gaussian mixture whose categories become each item's prior; started as serket module NAME unless the pipeline file's prior: section says otherwise); needs --aggregation poe or gpoe")
	fl.Float64Var(&f.lr, "lr", 0, "every module's Adam learning rate, unless its args set one (0: the modules' default, 1e-3)")
	fl.Float64Var(&f.paired, "paired-fraction", 1, "fraction of training items with every modality, the rest with one each (passed to the modules)")
	fl.Uint64Var(&f.pairSeed, "pairing-seed", 1, "seed of the partial-pairing mask (passed to the modules)")
	fl.Float64Var(&f.share, "paired-share", 0.2, "the least share of every batch drawn from the paired items, which are revisited to fill it, when --paired-fraction is below it (0: batches always drawn uniformly from all items)")
	fl.BoolVar(&f.seenOnly, "seen-only", false, "a term scores no module on an item none of its subset's modules observed (MVAE's objective for unpaired items), instead of decoding a draw from the prior")
	fl.DurationVar(&f.moduleWait, "module-wait", 2*time.Minute, "how long to wait for the modules to come up, and for a module that is gone mid-run to come back before the run stops")
}

// fromFile takes the pipeline file's train section as the defaults of every
// flag the command line did not set; the checkpoint directory comes from
// the environment first (see checkpointDirOf).
func (f *trainFlags) fromFile(p *launch.Pipeline, cmd *cobra.Command) {
	f.ckptDir = checkpointDirOf(cmd, "checkpoint-dir", f.ckptDir, p, f.ckptDir)
	f.annealSet = cmd.Flags().Changed("kl-anneal")
	if p != nil && p.Prior != nil && !cmd.Flags().Changed("prior") {
		f.prior = p.Prior.Name // a file without a train section has one too
	}
	if p == nil || p.Train == nil {
		return
	}
	t, flags := p.Train, cmd.Flags()
	f.annealSet = f.annealSet || t.KLAnneal != nil
	set := func(name string, ok bool, apply func()) {
		if ok && !flags.Changed(name) {
			apply()
		}
	}
	set("epochs", t.Epochs > 0, func() { f.epochs = t.Epochs })
	set("batch", t.Batch > 0, func() { f.batch = t.Batch })
	set("seed", t.Seed > 0, func() { f.seed = t.Seed })
	set("plan", t.Plan != "", func() { f.plan = t.Plan })
	set("subsets", t.Subsets > 0, func() { f.subsets = t.Subsets })
	set("aggregation", t.Aggregation != "", func() { f.agg = t.Aggregation })
	set("freeze", len(t.Freeze) > 0, func() { f.freeze = t.Freeze })
	if len(t.Lambda) > 0 {
		f.lambda = mergeLambda(t.Lambda, f.lambda, flags.Changed("lambda"))
	}
	set("kl-from", t.KLFrom != nil, func() { f.klFrom = float32(*t.KLFrom) })
	set("kl-to", t.KLTo != nil, func() { f.klTo = float32(*t.KLTo) })
	set("kl-anneal", t.KLAnneal != nil, func() { f.anneal = *t.KLAnneal })
	set("step-deadline", t.StepDeadline > 0, func() { f.deadline = time.Duration(t.StepDeadline) })
	set("checkpoint-every", t.CheckpointEvery != nil, func() { f.ckptEvery = *t.CheckpointEvery })
	set("checkpoint-interval", t.CheckpointInterval != nil, func() { f.ckptTime = time.Duration(*t.CheckpointInterval) })
	set("limit", t.Limit > 0, func() { f.limit = t.Limit })
	set("eval-items", t.EvalItems != nil, func() { f.evalItems = *t.EvalItems })
	set("paired-fraction", t.PairedFraction != nil, func() { f.paired = *t.PairedFraction })
	set("lr", t.LR != nil, func() { f.lr = *t.LR })
	set("pairing-seed", t.PairingSeed > 0, func() { f.pairSeed = t.PairingSeed })
	set("paired-share", t.PairedShare != nil, func() { f.share = *t.PairedShare })
	set("seen-only", t.SeenOnly != nil, func() { f.seenOnly = *t.SeenOnly })
}

// mergeLambda weighs each module by the command line's --lambda (or, not
// given, the default language=50), else the file's lambda: the file adds to
// the default instead of replacing it, and a flag overrides one module's
// weight without dropping the file's others.
func mergeLambda(file map[string]float64, flag []string, given bool) []string {
	var out []string
	named := map[string]bool{}
	for _, it := range flag {
		name, _, _ := strings.Cut(it, "=")
		named[name] = true
		if _, inFile := file[name]; given || !inFile {
			out = append(out, it)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(file)) {
		if !given || !named[name] {
			out = append(out, fmt.Sprintf("%s=%g", name, file[name]))
		}
	}
	return out
}

// checked are the training settings read from the flags.
type checked struct {
	plan   integrator.PlanFunc
	agg    aggregate.Aggregation
	lambda map[string]float32
}

// check reads and checks the settings that need no data, so that a
// mistyped flag is refused before the dataset is prepared.
func (f *trainFlags) check() (checked, error) {
	var st checked
	if f.lr < 0 || f.lr != f.lr {
		return st, usagef("--lr %v: want a positive learning rate (or 0 for the modules' default)", f.lr)
	}
	if !(f.paired > 0 && f.paired <= 1) {
		return st, usagef("--paired-fraction %v: want a fraction in (0, 1]", f.paired)
	}
	if !(f.share >= 0 && f.share < 1) {
		return st, usagef("--paired-share %v: want a share in [0, 1)", f.share)
	}
	if terms := 1 + len(f.modules) + f.subsets; f.subsets < 0 || terms > bus.MaxTerms {
		return st, usagef("--subsets %d: a step of %d modules would have %d terms, at most %d", f.subsets, len(f.modules), terms, bus.MaxTerms)
	}
	var err error
	if st.plan, err = integrator.ParsePlan(f.plan, f.subsets); err != nil {
		return st, usagef("%v", err)
	}
	if st.agg, err = aggregate.Parse(f.agg); err != nil {
		return st, usagef("--aggregation: %v", err)
	}
	weights, err := parseAssignments("lambda", f.lambda)
	if err != nil {
		return st, err
	}
	st.lambda = map[string]float32{}
	for name, v := range weights {
		w, err := strconv.ParseFloat(v, 32)
		if err != nil || w < 0 {
			return st, usagef("--lambda %s=%s: want a non-negative number", name, v)
		}
		st.lambda[name] = float32(w)
	}
	if f.epochs < 1 || f.batch < 1 {
		return st, usagef("--epochs and --batch must be positive")
	}
	return st, nil
}

// checkFrozen refuses to freeze a module that is not in the run, or has
// no checkpoint to be frozen at, or every module.
func (f *trainFlags) checkFrozen() error {
	for _, m := range f.freeze {
		if len(f.modules) > 0 && !slices.Contains(f.modules, m) {
			return usagef("--freeze %s: not one of the run's modules (%s)", m, strings.Join(f.modules, ", "))
		}
		path := filepath.Join(f.ckptDir, m+".ckpt")
		if st, err := os.Stat(path); err != nil || st.Size() == 0 {
			return usagef("--freeze %s: it has no checkpoint in %s (%s): a module is frozen at its trained weights; train it first, or put its checkpoint there", m, f.ckptDir, m+".ckpt")
		}
	}
	if len(f.freeze) > 0 && len(f.modules) > 0 && !slices.ContainsFunc(f.modules, func(m string) bool { return !slices.Contains(f.freeze, m) }) {
		return usagef("--freeze: every module is frozen (%s): nothing would learn", strings.Join(f.freeze, ", "))
	}
	return nil
}

// config builds the integrator's TrainConfig; ids come from the manifest
// (ids and splits only: the integrator never looks at a class).
func (f *trainFlags) config() (integrator.TrainConfig, io.Closer, error) {
	var cfg integrator.TrainConfig
	st, err := f.check()
	if err != nil {
		return cfg, nil, err
	}
	cfg.Aggregation, cfg.Frozen, cfg.Prior = st.agg, f.freeze, f.prior
	man, err := dataset.ReadManifest(f.data)
	if err != nil {
		return cfg, nil, err
	}
	for _, it := range man.Items {
		switch {
		case it.Split == dataset.Train:
			cfg.IDs = append(cfg.IDs, it.ID)
		case len(cfg.EvalIDs) < f.evalItems:
			cfg.EvalIDs = append(cfg.EvalIDs, it.ID)
		}
	}
	if f.limit > 0 && f.limit < len(cfg.IDs) {
		cfg.IDs = cfg.IDs[:f.limit]
	}
	cfg.Modules, cfg.Epochs, cfg.Batch, cfg.Seed, cfg.Plan, cfg.Lambda = f.modules, f.epochs, f.batch, f.seed, st.plan, st.lambda
	cfg.KLFrom, cfg.KLTo = f.klFrom, f.klTo
	cfg.Pairing = f.pairing()
	// A product keeps the prior as an expert, so its latent stays bounded
	// while the KL weight is small; a mixture of the experts alone has
	// only the KL term holding them near the prior, and annealed from 0
	// they run off (MMVAE does not anneal).
	anneal := f.anneal
	if st.agg.Name() == aggregate.MoE().Name() && !f.annealSet {
		anneal = 0
	}
	cfg.AnnealSteps = int(anneal * float64((len(cfg.IDs)+f.batch-1)/f.batch))
	cfg.Deadline = f.deadline
	cfg.CheckpointDir, cfg.CheckpointEvery, cfg.CheckpointInterval, cfg.Resume = f.ckptDir, f.ckptEvery, f.ckptTime, f.resume
	cfg.ModuleWait = f.moduleWait
	if f.resume {
		if err := resumable(f.ckptDir); err != nil {
			return cfg, nil, err
		}
	}
	if f.metrics == "" && f.ckptDir != "" {
		f.metrics = filepath.Join(f.ckptDir, "metrics.jsonl")
	}
	var closer io.Closer = nopCloser{}
	if f.metrics != "" {
		if err := os.MkdirAll(filepath.Dir(f.metrics), 0o755); err != nil {
			return cfg, nil, err
		}
		flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
		if cfg.Resume { // not f.resume: a restarted integrator with nothing to resume starts the log afresh
			flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
		}
		mf, err := os.OpenFile(f.metrics, flags, 0o644)
		if err != nil {
			return cfg, nil, err
		}
		cfg.Metrics, closer = mf, mf
	}
	return cfg, closer, nil
}

// pairing is the run's integrator.Pairing: which items are paired is the
// mask the modules draw (dataset.Paired), known here from --paired-fraction
// and --pairing-seed alone.
func (f *trainFlags) pairing() integrator.Pairing {
	p := integrator.Pairing{SeenOnly: f.seenOnly}
	if f.paired < 1 {
		fraction, seed := f.paired, f.pairSeed
		p.Share = f.share
		p.Paired = func(id uint64) bool { return dataset.Paired(id, dataset.Train, fraction, seed) }
	}
	return p
}

// resumable says why dir holds no run to resume, if it does not.
func resumable(dir string) error {
	if dir == "" {
		return usagef("--resume needs a --checkpoint-dir")
	}
	if _, err := os.Stat(filepath.Join(dir, "integrator.json")); err == nil {
		return nil
	}
	found, _ := filepath.Glob(filepath.Join(dir, "*.ckpt"))
	for i, f := range found {
		found[i] = filepath.Base(f)
	}
	if len(found) > 0 {
		return usagef("--resume: %s holds module checkpoints (%s) but no integrator.json: no run serket can resume (start a new run in another --checkpoint-dir)", dir, strings.Join(found, ", "))
	}
	return usagef("--resume: nothing to resume in %s (no integrator.json); drop --resume to start a run", dir)
}

// checkFresh refuses to start a new run over an old one's checkpoints:
// modules restore whatever checkpoint they find.
func (f *trainFlags) checkFresh() error {
	if err := f.checkFrozen(); err != nil { // a frozen module's own checkpoint is the first thing to miss
		return err
	}
	if f.resume || f.ckptDir == "" {
		return nil
	}
	old, _ := filepath.Glob(filepath.Join(f.ckptDir, "*.ckpt"))
	// The frozen modules' checkpoints are what a coordinated run starts
	// from (and its integrator.json replaces the run that trained them,
	// kept as integrator.json.prev).
	old = slices.DeleteFunc(old, func(p string) bool { return slices.Contains(f.freeze, strings.TrimSuffix(filepath.Base(p), ".ckpt")) })
	if st, err := os.Stat(filepath.Join(f.ckptDir, "integrator.json")); err == nil && !st.IsDir() && len(f.freeze) == 0 {
		old = append(old, "integrator.json")
	}
	if len(old) > 0 {
		return usagef("%s holds another run's checkpoints (%s): pass --resume to continue it, or choose another --checkpoint-dir", f.ckptDir, strings.Join(old, ", "))
	}
	return nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// lrEnv passes --lr to the modules (as the default of their own --lr).
func (f *trainFlags) lrEnv() string {
	if f.lr > 0 {
		return fmt.Sprintf("%s=%g", procenv.EnvLR, f.lr)
	}
	return procenv.EnvLR + "="
}
