package integrator_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/module"
	"github.com/serket-go/serket/modules/toy"
)

// The pipeline of the cluster tests: three toy modules on paired synthetic
// data, trained for 3 epochs of 12 steps.
var (
	clusterModules = []string{"a", "b", "c"}
	clusterDims    = map[string]int{"a": 5, "b": 6, "c": 7}
)

const (
	clusterLatent = 4
	clusterItems  = 1000 // ids 0..599 train, 900.. are held out for inference
	clusterEpochs = 3
	clusterSteps  = 12 // per epoch: 600 items in batches of 50
)

// clusterLayout says which server URL each process of a pipeline connects to.
type clusterLayout struct {
	integrator string
	modules    map[string]string
	clients    []string // one inference through each

	deadline time.Duration                // of a step's phase; default 10 s
	onStep   func(s integrator.StepStats) // called after every training step
}

// clusterResult is what a run of the pipeline produced.
type clusterResult struct {
	elbos      []float64 // per step
	epochELBOs []float64
	missing    []string // "step N: module" for every module absent from a step
	replies    []*bus.InferReply
	train      time.Duration
}

// TestClusterPipeline runs the same toy pipeline twice with the same seeds:
// once on one server, once with its processes on different nodes of a
// 3-node cluster (the integrator on node 1; modules a, b and c on nodes 2,
// 3 and 1; inference through a client of every node). Across the cluster,
// every module must be in every step, the objective must rise, and an
// inference must get every module's contribution, from whichever node it
// is asked.
//
// A step is deterministic given the seeds: the integrator fuses experts and
// sums gradients in plan order (sorted module names), never in arrival
// order, draws its noise from (seed, step), and each module sees its
// messages in the order the integrator published them (one publisher, and
// between two nodes one route connection for the account's traffic, keep
// that order). So the cluster run must reproduce the single-server run bit
// for bit: the same ELBO at every step and the same fused posterior at the
// end.
func TestClusterPipeline(t *testing.T) {
	srv, err := bus.StartServer(bus.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stopServer := func() { once.Do(srv.Shutdown) }
	defer stopServer()
	one := srv.ClientURL()
	single := runClusterPipeline(t, "single", clusterLayout{
		integrator: one,
		modules:    map[string]string{"a": one, "b": one, "c": one},
		clients:    []string{one},
	})
	stopServer()

	start := time.Now()
	c, err := bus.StartCluster(3, bus.ClusterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	t.Logf("3-node cluster formed in %v", time.Since(start).Round(time.Millisecond))
	u := c.URLs()
	cluster := runClusterPipeline(t, "cluster", clusterLayout{
		integrator: u[0],
		modules:    map[string]string{"a": u[1], "b": u[2], "c": u[0]},
		clients:    u,
	})
	t.Logf("training %d steps: %v on one server, %v across the cluster", len(cluster.elbos), single.train.Round(time.Millisecond), cluster.train.Round(time.Millisecond))

	for name, r := range map[string]clusterResult{"one server": single, "the cluster": cluster} {
		if len(r.missing) > 0 {
			t.Errorf("on %s, modules missed steps with no fault injected: %v", name, r.missing)
		}
		if len(r.elbos) != clusterEpochs*clusterSteps {
			t.Fatalf("on %s, %d steps, want %d", name, len(r.elbos), clusterEpochs*clusterSteps)
		}
		for i := 1; i < len(r.epochELBOs); i++ {
			if !(r.epochELBOs[i] > r.epochELBOs[i-1]) {
				t.Errorf("on %s, ELBO by epoch %v: want it to rise", name, r.epochELBOs)
			}
		}
		first, last := clusterMean(r.elbos[:clusterSteps/2]), clusterMean(r.elbos[len(r.elbos)-clusterSteps/2:])
		if !(last > first) {
			t.Errorf("on %s, the ELBO of the last steps %.3f is not above that of the first %.3f", name, last, first)
		}
		for i, rep := range r.replies {
			if !slices.Equal(rep.Contributors, clusterModules) || len(rep.Missing) > 0 {
				t.Errorf("on %s, inference %d: contributors %v, missing %v; want every module", name, i, rep.Contributors, rep.Missing)
			}
			for _, m := range clusterModules {
				if len(rep.Outputs[m]) != 1 {
					t.Errorf("on %s, inference %d: %d outputs from %s, want 1", name, i, len(rep.Outputs[m]), m)
				}
			}
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("ELBO per step, first and last: %.4f → %.4f (epochs %.4f)", cluster.elbos[0], cluster.elbos[len(cluster.elbos)-1], cluster.epochELBOs)
	for i := range single.elbos {
		if single.elbos[i] != cluster.elbos[i] {
			t.Fatalf("step %d: ELBO %v on one server, %v across the cluster: want the same given the same seeds", i+1, single.elbos[i], cluster.elbos[i])
		}
	}
	want := single.replies[0]
	for i, rep := range cluster.replies {
		if !slices.Equal(rep.Mu.Data, want.Mu.Data) || !slices.Equal(rep.LogVar.Data, want.LogVar.Data) {
			t.Fatalf("inference through node %d: fused posterior %v/%v, on one server %v/%v", i+1, rep.Mu.Data, rep.LogVar.Data, want.Mu.Data, want.LogVar.Data)
		}
		for _, m := range clusterModules {
			if !bytes.Equal(rep.Outputs[m][0].Data, want.Outputs[m][0].Data) {
				t.Fatalf("inference through node %d: %s decodes %q, on one server %q", i+1, m, rep.Outputs[m][0].Data, want.Outputs[m][0].Data)
			}
		}
	}
}

// runClusterPipeline starts an integrator and the toy modules, each on its
// own connection to the URL layout gives it, trains them, asks one
// inference through a client of each of layout.clients, and stops them all.
func runClusterPipeline(t *testing.T, name string, layout clusterLayout) clusterResult {
	t.Helper()
	logs := &clusterLogBuffer{}
	r := &clusterRun{t: t, name: name, log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	defer func() {
		r.stopAll()
		if t.Failed() && logs.Len() > 0 {
			t.Logf("%s run, warnings and errors:\n%s", name, logs.String())
		}
	}()
	ig := r.startIntegrator(layout.integrator)
	r.startModules(layout.modules)
	r.awaitDiscovery(ig)
	res := r.train(ig, layout)
	res.replies = r.inferThrough(layout.clients, clusterInferRequest(t))
	return res
}

// clusterRun is one run of runClusterPipeline: the test, the run's name for
// messages, the logger of its processes and how to stop them.
type clusterRun struct {
	t     *testing.T
	name  string
	log   *slog.Logger
	stops []func() // in reverse order of starting
}

func (r *clusterRun) conn(url, who string) bus.ConnConfig {
	return bus.ConnConfig{URL: url, Name: who, Logger: r.log, Wait: 10 * time.Second}
}

// stopAll stops everything started, last first.
func (r *clusterRun) stopAll() {
	for i := len(r.stops) - 1; i >= 0; i-- {
		r.stops[i]()
	}
	r.stops = nil
}

// startIntegrator starts the integrator on a connection to url and returns
// it once it is ready.
func (r *clusterRun) startIntegrator(url string) *integrator.Integrator {
	t, name := r.t, r.name
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *integrator.Integrator, 1)
	done := make(chan error, 1)
	go func() {
		done <- integrator.Run(ctx, integrator.Config{
			NATS: r.conn(url, "serket-integrator"), Logger: r.log, Latent: clusterLatent,
			Discovery: 100 * time.Millisecond, Misses: 2, Deadline: 5 * time.Second,
			Ready: func(ig *integrator.Integrator) { ready <- ig },
		})
	}()
	r.stops = append(r.stops, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: integrator.Run: %v", name, err)
		}
	})
	select {
	case ig := <-ready:
		return ig
	case err := <-done:
		t.Fatalf("%s: integrator: %v", name, err)
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: the integrator did not start within 15 s", name)
	}
	return nil
}

// startModules starts the toy modules, each serving on its own connection
// to its own node (urls by module name), and waits until all have
// registered.
func (r *clusterRun) startModules(urls map[string]string) {
	t, name := r.t, r.name
	t.Helper()
	var wg sync.WaitGroup
	for i, m := range clusterModules {
		tm, err := toy.New(toy.Config{Name: m, Dim: clusterDims[m], Latent: clusterLatent, DataSeed: 7, Seed: uint64(i + 1), Items: clusterItems, LR: 1e-2})
		if err != nil {
			t.Fatal(err)
		}
		mctx, mcancel := context.WithCancel(context.Background())
		mdone := make(chan error, 1)
		wg.Add(1)
		var once sync.Once
		go func() {
			mdone <- module.Run(mctx, tm, module.Options{
				NATS: r.conn(urls[m], "serket-"+m), Logger: r.log, Train: true,
				Ready: func(micro.Service) { once.Do(wg.Done) },
			})
		}()
		r.stops = append(r.stops, func() {
			mcancel()
			if err := <-mdone; err != nil {
				t.Errorf("%s: module %s: %v", name, m, err)
			}
		})
	}
	clusterWaitGroup(t, &wg, 15*time.Second, name+": modules registering")
}

// awaitDiscovery waits until ig has discovered every module in a poll that
// began after they were all ready, i.e. after their training subscriptions:
// the modules' answers to that poll travelled behind those subscriptions
// over the same routes, so the integrator's node knows of them before the
// first step is published.
func (r *clusterRun) awaitDiscovery(ig *integrator.Integrator) {
	r.t.Helper()
	deadline := time.After(15 * time.Second)
	for polls := 0; polls < 2 || !slices.Equal(ig.Live(), clusterModules); polls++ {
		select {
		case <-ig.Polled():
		case <-deadline:
			r.t.Fatalf("%s: live modules %v, want %v", r.name, ig.Live(), clusterModules)
		}
	}
}

// train trains the pipeline, calling layout.onStep after every step, and
// returns the ELBOs, the missing modules and the time it took.
func (r *clusterRun) train(ig *integrator.Integrator, layout clusterLayout) clusterResult {
	t := r.t
	t.Helper()
	var res clusterResult
	start := time.Now()
	_, err := ig.Train(context.Background(), integrator.TrainConfig{
		Modules: clusterModules, IDs: clusterIDs(clusterSteps * 50), Epochs: clusterEpochs, Batch: 50, Subsets: 1, Seed: 3,
		Deadline: cmp.Or(layout.deadline, 10*time.Second),
		OnStep: func(s integrator.StepStats) {
			if layout.onStep != nil {
				layout.onStep(s)
			}
			res.elbos = append(res.elbos, s.ELBO)
			for _, m := range s.Missing {
				res.missing = append(res.missing, "step "+strconv.FormatUint(s.Step, 10)+": "+m)
			}
		},
		Metrics: clusterLines(func(line []byte) {
			var es integrator.EpochStats
			if err := json.Unmarshal(line, &es); err != nil {
				t.Error(err)
			}
			res.epochELBOs = append(res.epochELBOs, es.ELBO)
		}),
	})
	res.train = time.Since(start)
	if err != nil {
		t.Fatalf("%s: Train: %v", r.name, err)
	}
	return res
}

// clusterInferRequest asks for an inference of a held-out item from every
// module's observation.
func clusterInferRequest(t *testing.T) *bus.InferRequest {
	t.Helper()
	item := uint64(900)
	req := &bus.InferRequest{Observations: map[string]bus.Payload{}, Want: clusterModules}
	for _, m := range clusterModules {
		tm, _ := toy.New(toy.Config{Name: m, Dim: clusterDims[m], Latent: clusterLatent, DataSeed: 7, Items: clusterItems})
		x, _, err := tm.LoadBatch([]uint64{item})
		if err != nil {
			t.Fatal(err)
		}
		var text []string
		for _, v := range x.(*toy.Obs).Data {
			text = append(text, strconv.FormatFloat(float64(v), 'g', -1, 32))
		}
		req.Observations[m] = bus.Payload{Type: "text/plain", Data: []byte(strings.Join(text, " "))}
	}
	return req
}

// inferThrough asks req through a client of each of urls and returns the
// replies in that order.
func (r *clusterRun) inferThrough(urls []string, req *bus.InferRequest) []*bus.InferReply {
	t, name := r.t, r.name
	t.Helper()
	var replies []*bus.InferReply
	for i, url := range urls {
		nc, err := bus.Connect(r.conn(url, "serket-client"))
		if err != nil {
			t.Fatal(err)
		}
		r.stops = append(r.stops, nc.Close)
		cl, err := client.New(nc, "", "test")
		if err != nil {
			t.Fatal(err)
		}
		ictx, icancel := context.WithTimeout(context.Background(), 15*time.Second)
		// Discovery from the client's node: its answers come over the same
		// routes as the integrator's subscription to the infer subject.
		if _, err := cl.WaitFor(ictx, true, clusterModules...); err != nil {
			icancel()
			t.Fatalf("%s: client %d: %v", name, i, err)
		}
		start := time.Now()
		rep, err := cl.Infer(ictx, req)
		icancel()
		if err != nil {
			t.Fatalf("%s: inference through %s: %v", name, url, err)
		}
		t.Logf("%s: inference through client %d took %v", name, i, time.Since(start).Round(time.Microsecond))
		replies = append(replies, rep)
	}
	return replies
}

func clusterMean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func clusterIDs(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i)
	}
	return out
}

// clusterLines is an io.Writer that hands each line it is given to itself.
type clusterLines func(line []byte)

func (f clusterLines) Write(p []byte) (int, error) {
	f(p)
	return len(p), nil
}

// clusterWaitGroup waits for wg, failing the test after within.
func clusterWaitGroup(t *testing.T, wg *sync.WaitGroup, within time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(within):
		t.Fatalf("%s: not within %v", what, within)
	}
}

// clusterLogBuffer is a bytes.Buffer safe for the concurrent writes of loggers.
type clusterLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *clusterLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *clusterLogBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Len()
}

func (b *clusterLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestClusterPipelineOutlivesANode: the node that module b is connected to
// stops in the middle of training. b's connection moves to another node
// (the cluster told it of the others), b sits out the steps it misses
// meanwhile, rejoins, and training ends with every module; an inference
// afterwards gets every module's contribution.
func TestClusterPipelineOutlivesANode(t *testing.T) {
	c, err := bus.StartCluster(3, bus.ClusterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	u := c.URLs()
	var stoppedAt time.Time
	var rejoined time.Duration
	r := runClusterPipeline(t, "node loss", clusterLayout{
		integrator: u[0],
		modules:    map[string]string{"a": u[1], "b": u[2], "c": u[1]},
		clients:    []string{u[1]},
		deadline:   time.Second,
		onStep: func(s integrator.StepStats) {
			switch {
			case s.Step == 5:
				if err := c.Stop(2); err != nil {
					t.Error(err)
				}
				stoppedAt = time.Now()
			case s.Step > 5 && rejoined == 0 && !slices.Contains(s.Missing, "b"):
				rejoined = time.Since(stoppedAt)
			}
		},
	})
	t.Logf("node 3 stopped after step 5; b back after %v; steps missed: %v", rejoined.Round(time.Millisecond), r.missing)
	for _, m := range r.missing {
		if !strings.HasSuffix(m, ": b") {
			t.Errorf("%s missed a step; only b's node stopped", m)
		}
	}
	if rejoined == 0 {
		t.Fatalf("b never came back after its node stopped (missed %v)", r.missing)
	}
	if len(r.missing) > 6 {
		t.Errorf("b missed %d steps (%v): want it back within a few", len(r.missing), r.missing)
	}
	if len(r.elbos) != clusterEpochs*clusterSteps {
		t.Fatalf("%d steps, want %d", len(r.elbos), clusterEpochs*clusterSteps)
	}
	rep := r.replies[0]
	if !slices.Equal(rep.Contributors, clusterModules) || len(rep.Missing) > 0 {
		t.Fatalf("inference after the node loss: contributors %v, missing %v; want every module", rep.Contributors, rep.Missing)
	}
}
