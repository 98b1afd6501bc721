package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"log/slog"
	"mime"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/serket-go/serket/bus"
	"github.com/serket-go/serket/client"
	"github.com/serket-go/serket/dataset"
	"github.com/serket-go/serket/eval"
	"github.com/serket-go/serket/internal/atomicfile"
	"github.com/serket-go/serket/launch"
	"github.com/serket-go/serket/report"
)

func newGenerateCmd(g *globals) *cobra.Command {
	var (
		from      []string
		to        []string
		n         int
		seed      int64
		out, ckpt string
		data      string
		serve     bool
		latent    int
		hidden    int
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "generate --from MODULE=INPUT [--from …] --to MODULE[,…] --out DIR",
		Short: "give some modalities, get the others: images, captions, speech",
		Long: `Fuse what you give some modalities (one input each; several make a subset)
and generate --n samples of others from the shared latent.

INPUT is text (language="a pair of trousers"), or a file: a PNG or JPEG for
vision, a WAV for audio (vision=shoe.png, audio=say.wav; @FILE forces a
file). Outputs go to --out: vision.png (the images as a grid), language.txt
(one caption per sample), audio/NN.wav (speech from the decoded log-mel
features, by Griffin-Lim) and audio.png (the log-mel spectrograms of those
waveforms). With no --from the latent is the prior.

Against a running pipeline (serket up; its server from --nats, else the
file's), or, with --serve or --checkpoint DIR, from a trained run's
checkpoints: this command then starts the pipeline (-f FILE, else the
default one: vision, language, audio) as serket up would, every module its
own process serving the run's checkpoints, on a server of its own, and
stops it when done. The run is --checkpoint DIR, else
$SERKET_CHECKPOINT_DIR, the file's train.checkpoint_dir, runs/latest.
--out is written whole or not at all.`,
		Example: `  serket generate --serve --from language="a pair of trousers" --to vision,audio --n 16 --out out/trousers
  serket generate -f examples/custom-modality/pipeline.yaml --serve --from touch=@reading.txt --to vision
  serket generate --checkpoint runs/seed2 --to vision        # from the prior
  serket generate --from vision=shoe.png --to language --n 4 --out out/shoe      # on a running pipeline`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			obs, err := generateInputs(from)
			if err != nil {
				return err
			}
			if len(to) == 0 {
				return usagef("give the modules to generate with --to")
			}
			if n < 1 || n > 1024 {
				return usagef("--n %d: want 1 to 1024 samples", n)
			}
			req := &bus.InferRequest{Observations: obs, Want: to, Samples: n, Seed: seed}
			log := g.logger("generate")
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			var rep *bus.InferReply
			if serve || cmd.Flags().Changed("checkpoint") {
				p, at, perr := g.evalSetup(cmd, latent, hidden, data, "")
				if perr != nil {
					return perr
				}
				dir := g.checkpointDir(cmd, "checkpoint", ckpt, "runs/latest")
				rep, err = generateFromCheckpoint(ctx, g, log, p, dir, at.data, req)
			} else {
				rep, err = generateOnPipeline(ctx, g, log, req)
			}
			if err != nil {
				return err
			}
			for name := range obs {
				if !slices.Contains(rep.Contributors, name) {
					return fmt.Errorf("%s could not take its input: %s", name, rep.Missing[name])
				}
			}
			for _, name := range to {
				if len(rep.Outputs[name]) == 0 {
					return fmt.Errorf("%s generated nothing: %s", name, orText(rep.Missing[name], "no reply"))
				}
			}
			files, err := writeGenerated(out, rep)
			if err != nil {
				return err
			}
			fmt.Printf("from %s → %s, %d samples\n", orNone(rep.Contributors), strings.Join(to, ", "), n)
			if c := client.Concepts(rep); c != "" {
				fmt.Println(c)
			}
			for _, t := range rep.Outputs["language"] {
				if strings.HasPrefix(t.Type, "text/") {
					fmt.Printf("  %s\n", t.Data)
				}
			}
			for _, f := range files {
				fmt.Printf("wrote %s\n", filepath.Join(out, f))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&from, "from", nil, "MODULE=TEXT, MODULE=FILE or MODULE=@FILE (repeatable; none: the prior)")
	f.StringSliceVar(&to, "to", nil, "modules to generate (comma-separated or repeated)")
	f.IntVar(&n, "n", 16, "samples")
	f.Int64Var(&seed, "seed", 1, "noise seed of the samples")
	f.StringVar(&out, "out", "out/generate", "output directory (replaced)")
	f.BoolVar(&serve, "serve", false, "start the pipeline to serve a trained run's checkpoints instead of asking a running one")
	f.StringVar(&ckpt, "checkpoint", "runs/latest", "the run to serve (<module>.ckpt each); implies --serve")
	f.StringVar(&data, "data", dataset.DefaultDir(), "prepared dataset (with --checkpoint: the built-in modules' vocabulary and audio settings)")
	f.IntVar(&latent, "latent", 64, "with --serve and no -f: latent size of the checkpoints")
	f.IntVar(&hidden, "hidden", 512, "with --serve and no -f: hidden units per layer of the built-in modules")
	f.DurationVar(&timeout, "timeout", time.Minute, "how long to wait for the pipeline")
	return cmd
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// generateInputs reads --from: text, a file named with @, or a bare value
// that names an existing image or WAV file.
func generateInputs(from []string) (map[string]bus.Payload, error) {
	kv, err := parseAssignments("from", from)
	if err != nil {
		return nil, err
	}
	obs := map[string]bus.Payload{}
	for name, v := range kv {
		if !bus.ValidName(name) {
			return nil, usagef("--from %s: %q is not a module name", v, name)
		}
		path, explicit := strings.CutPrefix(v, "@")
		typ := client.MediaType(path)
		media := strings.HasPrefix(typ, "image/") || strings.HasPrefix(typ, "audio/")
		if !explicit && !media {
			obs[name] = bus.Payload{Type: "text/plain; charset=utf-8", Data: []byte(v)}
			continue
		}
		p, err := client.ReadObservation(path)
		if err != nil {
			if !explicit && errors.Is(err, os.ErrNotExist) {
				return nil, usagef("--from %s=%s: no such file (for text that looks like a file name, it cannot be told apart)", name, v)
			}
			return nil, usagef("--from %s=%s: %v", name, v, err)
		}
		obs[name] = p
	}
	// Before a --checkpoint pipeline is started for a request it cannot take.
	if err := client.CheckObservations(obs); err != nil {
		return nil, usagef("--from: %v", err)
	}
	return obs, nil
}

func generateOnPipeline(ctx context.Context, g *globals, log *slog.Logger, req *bus.InferRequest) (*bus.InferReply, error) {
	cc, err := g.clientConn("serket-generate", log)
	if err != nil {
		return nil, err
	}
	nc, err := bus.Connect(cc)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	c, err := client.New(nc, g.pipeline, "generate")
	if err != nil {
		return nil, err
	}
	if _, err := c.WaitFor(ctx, true, append(req.Want, sortedKeys(req.Observations)...)...); err != nil {
		return nil, fmt.Errorf("waiting for the pipeline's integrator and modules: %w", err)
	}
	return c.Infer(ctx, req)
}

// generateFromCheckpoint starts the pipeline p serving the checkpoints in
// dir (serveCheckpoints) and asks it, so generation from a checkpoint takes
// exactly the path it takes on a running pipeline.
func generateFromCheckpoint(ctx context.Context, g *globals, log *slog.Logger, p *launch.Pipeline, dir, data string, req *bus.InferRequest) (*bus.InferReply, error) {
	for _, name := range append(slices.Clone(req.Want), sortedKeys(req.Observations)...) {
		if !slices.ContainsFunc(p.Modules, func(m launch.Process) bool { return m.Name == name }) {
			return nil, usagef("%q: the pipeline %q has the modules %s", name, p.Name, strings.Join(moduleNames(p), ", "))
		}
	}
	s, err := serveCheckpoints(ctx, g, p, dir, data, serveUse{integrator: true}, log)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.client.Infer(ctx, req)
}

// writeGenerated writes the reply's outputs into dir, whole or not at all.
func writeGenerated(dir string, rep *bus.InferReply) ([]string, error) {
	files := map[string][]byte{}
	for _, name := range sortedKeys(rep.Outputs) {
		outs := rep.Outputs[name]
		var imgs, specs []image.Image
		var texts []string
		for i, o := range outs {
			typ := strings.TrimSpace(strings.Split(o.Type, ";")[0])
			switch {
			case strings.HasPrefix(typ, "image/"):
				img, _, err := image.Decode(bytes.NewReader(o.Data))
				if err != nil {
					return nil, fmt.Errorf("%s output %d: %w", name, i, err)
				}
				imgs = append(imgs, img)
			case strings.HasPrefix(typ, "text/"):
				texts = append(texts, string(o.Data))
			case typ == "audio/wav":
				files[fmt.Sprintf("%s/%02d.wav", name, i)] = o.Data
				spec, err := eval.Spectrogram(o.Data)
				if err != nil {
					return nil, fmt.Errorf("%s output %d: %w", name, i, err)
				}
				specs = append(specs, spec)
			default:
				exts, _ := mime.ExtensionsByType(typ)
				ext := ".bin"
				if len(exts) > 0 {
					ext = exts[0]
				}
				files[fmt.Sprintf("%s/%02d%s", name, i, ext)] = o.Data
			}
		}
		if len(texts) > 0 {
			files[name+".txt"] = []byte(strings.Join(texts, "\n") + "\n")
		}
		for _, grid := range []struct {
			file string
			imgs []image.Image
		}{{name + ".png", imgs}, {name + ".png", specs}} {
			if len(grid.imgs) == 0 {
				continue
			}
			b, err := pngGrid(grid.imgs)
			if err != nil {
				return nil, err
			}
			files[grid.file] = b
		}
	}
	if len(files) == 0 {
		return nil, errors.New("nothing was generated")
	}
	names := sortedKeys(files)
	err := atomicfile.WriteDir(dir, func(tmp string) error {
		for _, f := range names {
			path := filepath.Join(tmp, f)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(path, files[f], 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	return names, err
}

// pngGrid tiles images into rows of up to 8 and encodes the grid.
func pngGrid(imgs []image.Image) ([]byte, error) {
	const perRow = 8
	var rows [][]image.Image
	for i := 0; i < len(imgs); i += perRow {
		rows = append(rows, imgs[i:min(i+perRow, len(imgs))])
	}
	b := imgs[0].Bounds()
	grid := report.ImageGrid(rows, report.AutoScale(b.Dx(), b.Dy()))
	var buf bytes.Buffer
	err := png.Encode(&buf, grid)
	return buf.Bytes(), err
}
