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
	"github.com/serket-go/serket/integrator"
	"github.com/serket-go/serket/launch"
)

// trainItems is how much the demo trains on: one epoch of this many items.
const trainItems = 10000

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
  3. train them together for one epoch of 10,000 items, by message passing;
  4. list them; say "a photo of a sneaker" to the pipeline and get images and
     a spectrogram back; show it a test image and get a caption back;
  5. SIGKILL the audio module: inference goes on without it; the supervisor
     restarts it from its checkpoint and it rejoins;
  6. stop everything.

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
		env: []string{"SERKET_DATA=" + data, "SERKET_CHECKPOINT_DIR=" + ckpt, "SERKET_NO_SAVE_ON_EXIT=1"},
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

	tf := trainFlags{epochs: 1, batch: 100, seed: 1, plan: "cross", subsets: 1, lambda: []string{"language=50", "audio=0.2"},
		klTo: 1, anneal: 1, deadline: 30 * time.Second, ckptDir: ckpt, ckptEvery: 0, data: data, limit: trainItems, modules: names}
	cfg, closer, err := tf.config()
	if err != nil {
		return err
	}
	defer closer.Close()
	say("serket train --limit %d --epochs 1 --plan cross   (every step is messages between the processes)", trainItems)
	start = time.Now()
	last, err := train(ctx, ig, c, cfg, timeout, log)
	if err != nil {
		return err
	}
	fmt.Printf("trained on %d items in %v: ELBO %.0f → %.0f, %.0f samples/s (checkpoints and metrics in %s)\n",
		len(cfg.IDs), time.Since(start).Round(time.Second), last.ELBOStart, last.ELBOEnd, last.SamplesPerSec, run)
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
	say("serket infer --from language=%q --to vision,audio --n 4", text)
	sneaker := &bus.InferRequest{Observations: map[string]bus.Payload{"language": {Type: "text/plain", Data: []byte(text)}}, Want: []string{"vision", "audio"}, Samples: 4, Seed: 1}
	if err := infer(sneaker, "say-sneaker"); err != nil {
		return err
	}

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
	say("stopping: SIGTERM to every process, SIGKILL after a grace period. Outputs are in %s.", out)
	fmt.Println("One epoch of training gives blurry shapes; `serket train --epochs 20` trains for real.")
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
