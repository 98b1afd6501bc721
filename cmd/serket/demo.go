package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
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

// The demo trains for demoEpochs passes over the first trainItems items.
const (
	trainItems = 10000
	demoEpochs = 3
)

func newDemoCmd(g *globals) *cobra.Command {
	var (
		timeout time.Duration
		data    string
		out     string
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

Outputs go to --out.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runDemo(g, data, out, timeout)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "give up if the pipeline is not up by then")
	cmd.Flags().StringVar(&data, "data", dataset.DefaultDir(), "dataset directory (prepared if needed)")
	cmd.Flags().StringVar(&out, "out", "out/demo", "directory for the generated files")
	return cmd
}

func runDemo(g *globals, data, out string, timeout time.Duration) error {
	if g.logLevel == "info" {
		g.logLevel = "warn" // the tour's own lines tell the story
	}
	log := g.logger("demo")
	say := func(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }
	ctx, cancel := signalContext()
	defer cancel()

	data, err := filepath.Abs(data)
	if err != nil {
		return err
	}
	say("serket data prepare --dir %s   (skipped when it is up to date)", data)
	start := time.Now()
	if err := ensureData(ctx, data); err != nil {
		return err
	}
	man, err := dataset.ReadManifest(data)
	if err != nil {
		return err
	}
	fmt.Printf("%d items ready in %v\n", len(man.Items), time.Since(start).Round(time.Millisecond))

	p := launch.Default()
	p.NATS.Port = 0 // random: never clash with a server already on 4222
	for i := range p.Modules {
		p.Modules[i].Args = []string{"--lr", "0.003"}
	}
	g.natsURL = ""
	run, ckpt := filepath.Join(out, "run"), ""
	if err := os.RemoveAll(run); err != nil {
		return err
	}
	if ckpt, err = filepath.Abs(run); err != nil {
		return err
	}
	restarted := make(chan string, 8)
	pipe, err := launchPipeline(ctx, g, p, log, launchOptions{grace: 3 * time.Second, noIntegrator: true,
		env: []string{procenv.EnvData + "=" + data, procenv.EnvCheckpointDir + "=" + ckpt, procenv.EnvTrain + "=1"},
		onEvent: func(ev launch.Event) {
			if ev.Kind == launch.Restarting {
				restarted <- ev.Name
			}
		}})
	if err != nil {
		return err
	}
	defer func() { cancel(); pipe.wait() }()
	cc := g.conn("serket-integrator", log)
	cc.URL = pipe.URL
	ig, stop, err := startIntegrator(ctx, integrator.Config{Pipeline: p.Name, Latent: p.Latent, NATS: cc, Logger: log, Discovery: 500 * time.Millisecond})
	if err != nil {
		return err
	}
	defer stop()

	nc, err := bus.Connect(bus.ConnConfig{URL: pipe.URL, Name: "serket-demo", Logger: log})
	if err != nil {
		return err
	}
	defer nc.Close()
	c, err := client.New(nc, p.Name, "demo")
	if err != nil {
		return err
	}
	names := make([]string, len(p.Modules))
	for i, m := range p.Modules {
		names[i] = m.Name
	}
	say("serket up   (pipeline %q: NATS at %s; %s, each its own process; the integrator here)", p.Name, pipe.URL, strings.Join(names, ", "))

	tf := trainFlags{epochs: demoEpochs, batch: 100, seed: 1, plan: "cross", subsets: 1, lambda: []string{"language=50", "audio=0.2"},
		klTo: 1, anneal: 1, deadline: 30 * time.Second, ckptDir: ckpt, ckptEvery: 0, data: data, limit: trainItems, modules: names, paired: 1, evalItems: 1000}
	cfg, closer, err := tf.config()
	if err != nil {
		return err
	}
	defer closer.Close()
	say("serket train --limit %d --epochs %d --plan cross   (every step is messages between the processes)", trainItems, demoEpochs)
	start = time.Now()
	last, _, err := train(ctx, ig, c, cfg, timeout, log)
	if err != nil {
		return err
	}
	fmt.Printf("trained %d epochs of %d items in %v: test ELBO %.0f, %.0f samples/s (checkpoints and metrics in %s)\n",
		demoEpochs, len(cfg.IDs), time.Since(start).Round(time.Second), last.TestELBO, last.SamplesPerSec, run)
	wctx, wcancel := context.WithTimeout(ctx, timeout)
	defer wcancel()
	svcs, err := c.Services(ctx, 300*time.Millisecond)
	if err != nil {
		return err
	}
	say("serket ls")
	printServices(os.Stdout, svcs)

	infer := func(req *bus.InferRequest, dir string) error {
		ictx, icancel := context.WithTimeout(ctx, 20*time.Second)
		defer icancel()
		start := time.Now()
		rep, err := c.Infer(ictx, req)
		if err != nil {
			return err
		}
		fmt.Printf("(answered in %v)\n", time.Since(start).Round(100*time.Microsecond))
		return printReply(os.Stdout, rep, filepath.Join(out, dir))
	}
	text := "a photo of a sneaker"
	say("serket generate --from language=%q --to vision,audio --n 8 --out %s", text, filepath.Join(out, "say-sneaker"))
	sneaker := &bus.InferRequest{Observations: map[string]bus.Payload{"language": {Type: "text/plain", Data: []byte(text)}}, Want: []string{"vision", "audio"}, Samples: 8, Seed: 1}
	{
		gctx, gcancel := context.WithTimeout(ctx, time.Minute)
		rep, err := c.Infer(gctx, sneaker)
		gcancel()
		if err != nil {
			return err
		}
		files, err := writeGenerated(filepath.Join(out, "say-sneaker"), rep)
		if err != nil {
			return err
		}
		fmt.Printf("images, speech and spectrograms of what the model imagines: %s\n", strings.Join(files, ", "))
	}
	sneaker.Samples = 2

	testImage, err := firstTestImage(out)
	if err != nil {
		return err
	}
	say("serket infer --from vision=@%s --to language", testImage)
	img, _ := os.ReadFile(testImage)
	if err := infer(&bus.InferRequest{Observations: map[string]bus.Payload{"vision": {Type: "image/png", Data: img}}, Want: []string{"language"}}, "see-image"); err != nil {
		return err
	}

	pid := pipe.sup.PIDs()["audio"]
	say("kill -9 %d   (the audio module)", pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill the audio module (pid %d): %w", pid, err)
	}
	say("the next inference still answers, without audio")
	if err := infer(sneaker, "say-sneaker-without-audio"); err != nil {
		return err
	}
	select {
	case name := <-restarted:
		say("the supervisor restarts %s; waiting for it to rejoin", name)
	case <-wctx.Done():
		return fmt.Errorf("the audio module was not restarted within %v", timeout)
	}
	for {
		rep, err := c.Infer(wctx, &bus.InferRequest{Want: []string{"audio"}})
		if err == nil && len(rep.Outputs["audio"]) == 1 {
			break
		}
		if wctx.Err() != nil {
			return fmt.Errorf("the audio module did not rejoin within %v", timeout)
		}
		time.Sleep(100 * time.Millisecond) // the restarted process is still loading its shard
	}
	say("audio is back")
	if err := infer(sneaker, "say-sneaker-again"); err != nil {
		return err
	}
	say("stopping the pipeline: SIGTERM to every process, SIGKILL after a grace period")
	cancel()
	pipe.wait()

	report := filepath.Join(out, "report")
	say("serket eval --checkpoint %s --out %s   (the first run also trains two small classifiers that judge generated images and speech, about a minute)", run, report)
	ecfg := eval.Config{Items: 1000, Prior: 1000, IWAEItems: 100, IWAEK: 100, ProbeTrain: 2000}
	if err := runEval(g, g.logger("eval"), p, evalPaths{ckpt: run, data: data, out: report, labels: data}, ecfg); err != nil {
		return err
	}
	say("done: open %s", filepath.Join(report, "index.html"))
	fmt.Println("A few minutes of training on 10,000 items gives blurry shapes; `serket train --epochs 20 --plan cross` trains on all 60,000 for real, then `serket eval --checkpoint runs/latest`.")
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
