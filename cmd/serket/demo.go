package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/eval"
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/procenv"
)

// By default the demo trains for demoEpochs passes over the first
// trainItems items: a few minutes on two cores.
const (
	trainItems = 10000
	demoEpochs = 3
)

func newDemoCmd(g *globals) *cobra.Command {
	var (
		timeout time.Duration
		data    string
		out     string
		size    tourSize
		webAddr string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "prepare the data, start the default pipeline, generate across modalities, survive a killed module",
		Long: `A tour of serket on the embedded defaults:

  1. prepare Fashion-MNIST-3 if it is not there yet (a minute or two, once);
  2. start an embedded NATS server (random port) and the vision, language
     and audio modules, each its own process, with the integrator in this one;
  3. train them together for three epochs of 10,000 items, by message
     passing;
  4. list them; say "a photo of a sneaker" to the pipeline and get images and
     speech back; show it a test image and get a caption back;
  5. SIGKILL the audio module: inference goes on without it; the supervisor
     restarts it from its checkpoint and it rejoins;
  6. stop everything;
  7. evaluate the trained model (coherence, likelihoods, the latent) and
     write a report with pictures.

While it runs, a live view of the pipeline (its processes, the training
curve, an inference form) is served on --web; its URL is printed at the
start, and at the end the command that serves the trained pipeline's view
again. Outputs go to --out.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runDemo(g, data, out, timeout, size, webAddr)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "give up if the pipeline is not up by then")
	cmd.Flags().StringVar(&data, "data", dataset.DefaultDir(), "dataset directory (prepared if needed)")
	cmd.Flags().StringVar(&out, "out", "out/demo", "directory for the generated files")
	cmd.Flags().IntVar(&size.items, "items", trainItems, "train on the first N training items")
	cmd.Flags().IntVar(&size.epochs, "epochs", demoEpochs, "passes over them")
	cmd.Flags().StringVar(&webAddr, "web", demoWeb, `serve the live view here while the tour runs ("": none; another port if this one is taken)`)
	return cmd
}

// tour is the demo under way: the pipeline it started and a client of it.
type tour struct {
	g         *globals
	log       *slog.Logger
	data, out string
	run       string // the run's directory, absolute
	timeout   time.Duration
	p         *launch.Pipeline
	pipe      *running
	ig        *integrator.Integrator
	restarted chan string // names of processes the supervisor restarts
	c         *client.Client
	size      tourSize
	webAddr   string
	view      *view
}

// demoWeb is where the tour serves its live view by default.
const demoWeb = "localhost:8080"

// tourSize is how much the tour trains.
type tourSize struct{ items, epochs int }

func say(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func runDemo(g *globals, data, out string, timeout time.Duration, size tourSize, webAddr string) error {
	if size.items < 1 || size.epochs < 1 {
		return fmt.Errorf("--items %d --epochs %d: want at least one of each", size.items, size.epochs)
	}
	if g.logLevel == "info" {
		g.logLevel = "warn" // the tour's own lines tell the story
	}
	t := &tour{g: g, log: g.logger("demo"), out: out, timeout: timeout, restarted: make(chan string, 8), size: size, webAddr: webAddr}
	ctx, cancel := signalContext()
	defer cancel()
	if err := t.prepare(ctx, data); err != nil {
		return err
	}
	leave, err := t.start(ctx)
	if t.pipe != nil {
		defer func() { cancel(); t.pipe.wait() }()
	}
	if err != nil {
		return err
	}
	for _, step := range []func(context.Context) error{t.train, t.list, t.generate, t.see, t.killAndRejoin} {
		if err = step(ctx); err != nil {
			break
		}
	}
	// The client and the integrator leave before the server stops, so
	// that neither reports a lost connection.
	leave()
	if err != nil {
		return err
	}
	say("stopping the pipeline: SIGTERM to every process, SIGKILL after a grace period")
	cancel()
	t.pipe.wait()
	return t.evaluate()
}

// prepare makes the dataset if it is not there yet.
func (t *tour) prepare(ctx context.Context, data string) error {
	var err error
	if t.data, err = filepath.Abs(data); err != nil {
		return err
	}
	say("serket data prepare --dir %s   (skipped when it is up to date)", t.data)
	start := time.Now()
	if err := ensureData(ctx, t.data); err != nil {
		return err
	}
	man, err := dataset.ReadManifest(t.data)
	if err != nil {
		return err
	}
	fmt.Printf("%d items ready in %v\n", len(man.Items), time.Since(start).Round(time.Millisecond))
	return nil
}

// start launches the default pipeline's modules, learning, on an embedded
// server of a random port (never clashing with one already on 4222), runs
// the integrator in this process and connects a client. The function it
// returns closes the client and ends the integrator.
func (t *tour) start(ctx context.Context) (func() error, error) {
	var err error
	t.p = launch.Default()
	t.p.NATS.Port = 0
	for i := range t.p.Modules {
		t.p.Modules[i].Args = []string{"--lr", "0.003"}
	}
	t.g.natsURL = ""
	events := &viewEvents{}
	if t.run, err = filepath.Abs(filepath.Join(t.out, "run")); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(t.run); err != nil {
		return nil, err
	}
	t.pipe, err = launchPipeline(ctx, t.g, t.p, t.log, launchOptions{grace: 3 * time.Second, noIntegrator: true,
		env: []string{procenv.EnvData + "=" + t.data, procenv.EnvCheckpointDir + "=" + t.run, procenv.EnvTrain + "=1"},
		onEvent: func(ev launch.Event) {
			events.on(ev)
			if ev.Kind == launch.Restarting {
				t.restarted <- ev.Name
			}
		}})
	if err != nil {
		return nil, err
	}
	cc := t.g.conn("serket-integrator", t.log)
	cc.URL = t.pipe.URL
	var stop func() error
	t.ig, stop, err = startIntegrator(ctx, integrator.Config{Pipeline: t.p.Name, Latent: t.p.Latent, NATS: cc, Logger: t.log, Discovery: 500 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	nc, err := bus.Connect(bus.ConnConfig{URL: t.pipe.URL, Name: "serket-demo", Logger: t.log})
	if err == nil {
		t.c, err = client.New(nc, t.p.Name, "demo")
	}
	if err != nil {
		stop()
		return nil, err
	}
	say("serket up   (pipeline %q: NATS at %s; %s, each its own process; the integrator here)", t.p.Name, t.pipe.URL, strings.Join(moduleNames(t.p), ", "))
	if err := t.serveView(ctx, events); err != nil {
		nc.Close()
		stop()
		return nil, err
	}
	return func() error {
		if t.view != nil {
			t.view.Close()
		}
		nc.Close()
		return stop()
	}, nil
}

// serveView serves the live view while the tour runs, on another port if
// the default one is taken.
func (t *tour) serveView(ctx context.Context, events *viewEvents) error {
	if t.webAddr == "" {
		return nil
	}
	say("the live view: open it to watch the pipeline train, answer and recover")
	v, err := t.pipe.startView(ctx, t.g, t.p, t.webAddr, "", t.log)
	if err != nil && t.webAddr == demoWeb {
		fmt.Printf("(%v; serving it on another port)\n", err)
		v, err = t.pipe.startView(ctx, t.g, t.p, "localhost:0", "", t.log)
	}
	if err != nil {
		return err
	}
	t.view = v
	events.hub.Store(v.Hub)
	return nil
}

// train trains the modules together for the tour's epochs.
func (t *tour) train(ctx context.Context) error {
	tf := trainFlags{epochs: t.size.epochs, batch: 100, seed: 1, plan: "cross", subsets: 1, lambda: []string{"language=50", "audio=0.2"},
		klTo: 1, anneal: 1, deadline: 30 * time.Second, ckptDir: t.run, ckptEvery: 0, data: t.data, limit: t.size.items, modules: moduleNames(t.p), paired: 1, evalItems: 1000}
	cfg, closer, err := tf.config()
	if err != nil {
		return err
	}
	defer closer.Close()
	say("serket train --limit %d --epochs %d --plan cross   (every step is messages between the processes)", t.size.items, t.size.epochs)
	start := time.Now()
	last, _, err := train(ctx, t.ig, t.c, cfg, t.timeout, t.log)
	if err != nil {
		return err
	}
	fmt.Printf("trained %d epochs of %d items in %v: test ELBO %.0f, %.0f samples/s (checkpoints and metrics in %s)\n",
		t.size.epochs, len(cfg.IDs), time.Since(start).Round(time.Second), last.TestELBO, last.SamplesPerSec, filepath.Join(t.out, "run"))
	return nil
}

// list shows the live services, as serket ls does.
func (t *tour) list(ctx context.Context) error {
	svcs, err := t.c.Services(ctx, 300*time.Millisecond)
	if err != nil {
		return err
	}
	say("serket ls")
	printServices(os.Stdout, svcs)
	return nil
}

// sneaker asks for what the model imagines of a sneaker's caption.
func sneaker(samples int) *bus.InferRequest {
	return &bus.InferRequest{Observations: map[string]bus.Payload{"language": {Type: "text/plain", Data: []byte("a photo of a sneaker")}},
		Want: []string{"vision", "audio"}, Samples: samples, Seed: 1}
}

// generate writes images and speech of a caption.
func (t *tour) generate(ctx context.Context) error {
	dir := filepath.Join(t.out, "say-sneaker")
	say("serket generate --from language=%q --to vision,audio --n 8 --out %s", "a photo of a sneaker", dir)
	gctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rep, err := t.c.Infer(gctx, sneaker(8))
	if err != nil {
		return err
	}
	files, err := writeGenerated(dir, rep)
	if err != nil {
		return err
	}
	fmt.Printf("images, speech and spectrograms of what the model imagines: %s\n", strings.Join(files, ", "))
	return nil
}

// infer asks the pipeline and prints the reply, its files in dir.
func (t *tour) infer(ctx context.Context, req *bus.InferRequest, dir string) error {
	ictx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	rep, err := t.c.Infer(ictx, req)
	if err != nil {
		return err
	}
	fmt.Printf("(answered in %v)\n", time.Since(start).Round(100*time.Microsecond))
	return printReply(os.Stdout, rep, filepath.Join(t.out, dir))
}

// see captions a test image.
func (t *tour) see(ctx context.Context) error {
	testImage, err := firstTestImage(t.out)
	if err != nil {
		return err
	}
	say("serket infer --from vision=@%s --to language", testImage)
	img, err := os.ReadFile(testImage)
	if err != nil {
		return err
	}
	return t.infer(ctx, &bus.InferRequest{Observations: map[string]bus.Payload{"vision": {Type: "image/png", Data: img}}, Want: []string{"language"}}, "see-image")
}

// killAndRejoin kills the audio module: inference goes on without it, the
// supervisor restarts it from its checkpoint, and it rejoins.
func (t *tour) killAndRejoin(ctx context.Context) error {
	pid := t.pipe.sup.PIDs()["audio"]
	say("kill -9 %d   (the audio module)", pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill the audio module (pid %d): %w", pid, err)
	}
	say("the next inference still answers, without audio")
	if err := t.infer(ctx, sneaker(2), "say-sneaker-without-audio"); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	select {
	case name := <-t.restarted:
		say("the supervisor restarts %s; waiting for it to rejoin", name)
	case <-wctx.Done():
		return fmt.Errorf("the audio module was not restarted within %v", t.timeout)
	}
	for {
		rep, err := t.c.Infer(wctx, &bus.InferRequest{Want: []string{"audio"}})
		if err == nil && len(rep.Outputs["audio"]) == 1 {
			break
		}
		if wctx.Err() != nil {
			return fmt.Errorf("the audio module did not rejoin within %v", t.timeout)
		}
		time.Sleep(100 * time.Millisecond) // the restarted process is still loading its shard
	}
	say("audio is back")
	return t.infer(ctx, sneaker(2), "say-sneaker-again")
}

// evaluate measures the trained run and writes its report.
func (t *tour) evaluate() error {
	report := filepath.Join(t.out, "report")
	say("serket eval --checkpoint %s --out %s   (the first run also trains two small classifiers that judge generated images and speech, about a minute)", filepath.Join(t.out, "run"), report)
	ecfg := eval.Config{Items: 1000, Prior: 1000, IWAEItems: 100, IWAEK: 100, ProbeTrain: 2000}
	if err := runEval(t.g, t.g.logger("eval"), t.p, evalPaths{ckpt: t.run, data: t.data, out: report, labels: t.data}, ecfg); err != nil {
		return err
	}
	say("done: open %s", filepath.Join(report, "index.html"))
	fmt.Printf("A few minutes of training on %d items gives blurry shapes; `serket train --epochs 20 --plan cross` trains on all 60,000 for real (into runs/latest), then `serket eval`.\n", t.size.items)
	addr := t.webAddr
	if addr == "" {
		addr = demoWeb
	}
	say("to see the trained pipeline live: bin/serket up --checkpoint-dir %s --web %s", t.run, addr)
	fmt.Printf("then open its live view: http://%s/\n", addr)
	return nil
}

// firstTestImage writes the first Fashion-MNIST test image as a PNG, as a
// person would hand one in.
func firstTestImage(out string) (string, error) {
	fm, err := dataset.LoadFashionMNIST(dataset.FashionMNISTDir)
	if err != nil {
		return "", err
	}
	img := image.NewGray(image.Rect(0, 0, fm.Test.Cols, fm.Test.Rows))
	copy(img.Pix, fm.Test.Pixels[:fm.Test.Rows*fm.Test.Cols])
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return "", err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(out, "test-image-0.png")
	return path, os.WriteFile(path, b.Bytes(), 0o644)
}
